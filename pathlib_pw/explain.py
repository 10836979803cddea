"""PathwayGrad on your own image: ``python -m pathlib_pw explain IMAGE -o OUT.png``.

:func:`explain` reads an image file, preprocesses it as ImageNet models expect (shorter side to 256,
centre crop 224), extracts the critical pathway of the explained class with a criterion, computes
PathwayGrad through it and the baseline maps for the same class, and draws them side by side in the
book's style (the image as the model sees it first, the class name in the title).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from pathlib_pw import imagenet, models, plotting
from pathlib_pw.architectures import GRADCAM_LAYERS
from pathlib_pw.attribution.baselines import SALIENCY_METHODS, SaliencyMethod, saliency
from pathlib_pw.attribution.pathway_grad import pathway_grad
from pathlib_pw.criteria import SPECS, extract_pathway
from pathlib_pw.criteria.checks import EmptyPathwayError
from pathlib_pw.criteria.spec import Method

__all__ = ["DEFAULT_METHODS", "ExplainError", "check_device", "explain", "read_image", "usable_models"]

DEFAULT_METHODS: tuple[str, ...] = ("gradients", "input_intgrad", "guided_backprop", "gradcam")
MIN_FONT_PT = 11.0  # every text of the figure, at its saved size
PATHWAY_KEY = "pathway_grad"
_CRITERION_LABELS = {
    "neuron_mct": "NeuronMCT",
    "neuron_intgrad": "NeuronIntGrad",
    "greedy": "Greedy",
    "random": "Random",
    "dgr": "DGR",
    "active_subnet": "Active subnet",
    "dead_first_random": "Random (dead first)",
    "dead_first_activation": "Activation (dead first)",
}
_METHOD_LABELS = {
    "gradients": "Gradients",
    "input_mct": "InputMCT",
    "input_intgrad": "InputIntGrad",
    "guided_backprop": "Guided Backprop",
    "gradcam": "Grad-CAM",
}
CLI_DESCRIPTION = """Explain your own image file: PathwayGrad through the critical pathway of the explained class
beside the baseline maps, drawn in the book's style and saved to OUT.

example: python -m pathlib_pw explain cat.jpg --sparsity 75 --method gradients --method gradcam -o cat.png

Only ImageNet models whose weights are installed locally can be used (nothing downloads); Grad-CAM
is left out, with a note, for a model without a known Grad-CAM layer."""


class ExplainError(ValueError):
    """A bad argument of :func:`explain`, said in one line that names it: ``argument`` (the keyword)
    and ``detail`` (what is wrong with it, and what is accepted)."""

    def __init__(self, argument: str, detail: str) -> None:
        super().__init__(f"{argument} {detail}")
        self.argument = argument
        self.detail = detail


_FLAGS = {"image_path": "IMAGE", "model": "--model", "criterion": "--criterion", "methods": "--method", "target": "--target"}


def read_image(path: str | Path) -> np.ndarray:
    """The RGB pixels (H, W, 3 uint8) of the image file at ``path`` (:func:`pathlib_pw.imagenet.read_image`);
    ExplainError naming the path when it does not exist, is a folder, or is not an image PIL can read."""
    try:
        return imagenet.read_image(path)
    except (FileNotFoundError, ValueError) as error:
        raise ExplainError("image_path", str(error)) from None


def usable_models() -> tuple[str, ...]:
    """The ImageNet models ``explain`` can run here: built in, with their weights installed locally."""
    present = set(models.available_pretrained())
    return tuple(name for name in models.MODEL_NAMES if name in present)


def _load(name: str, device: str) -> torch.nn.Module:
    if name not in models.MODEL_NAMES:
        raise ExplainError("model", f"must be one of the ImageNet models {', '.join(models.MODEL_NAMES)}; got {name!r}")
    if name not in models.available_pretrained():
        where, how = models.weights_hint(name)
        raise ExplainError(
            "model",
            f"{name!r}: its ImageNet weights are not installed ({where}); {how}. "
            f"Usable here: {', '.join(usable_models()) or 'none'}",
        )
    return models.load_model(name, device=device)


def _target(target: int | str | None, names: Sequence[str]) -> int | None:
    """A class index from an index or an ImageNet class name (case-insensitive), or None."""
    if target is None:
        return None
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        lowered = [n.lower() for n in names]
        if target.strip().lower() not in lowered:
            raise ExplainError("target", f"must be a class index 0-{len(names) - 1} or an ImageNet class name, got {target!r}")
        return lowered.index(target.strip().lower())
    index = int(target)
    if not 0 <= index < len(names):
        raise ExplainError("target", f"must be a class index 0-{len(names) - 1} or an ImageNet class name, got {target!r}")
    return index


def _has_gradcam_layer(net: torch.nn.Module) -> bool:
    return any(cls.__name__ in GRADCAM_LAYERS for cls in type(net).__mro__)


def _pathway_label(criterion: str, sparsity: float | None) -> str:
    label = _CRITERION_LABELS.get(criterion, criterion)
    return f"PathwayGrad, {label}" + ("" if sparsity is None else f", {sparsity:g} %")


def explain(
    image_path: str | Path,
    *,
    model: str = "mobilenet_v2",
    criterion: str = "neuron_mct",
    sparsity: float = 75.0,
    methods: Sequence[str] = DEFAULT_METHODS,
    target: int | str | None = None,
    device: str = "cpu",
) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """PathwayGrad of the image file at ``image_path`` beside baseline maps, as a figure.

    ``image_path`` is any image file PIL reads (converted to RGB, resized and centre-cropped to
    224 px); ``model`` a built-in ImageNet model whose weights are installed (:func:`usable_models`);
    ``criterion`` the pathway criterion (``neuron_mct``, ``neuron_intgrad``, ``greedy``, ...) and
    ``sparsity`` the percent of neurons removed (0-100; a value in (0, 1) runs but warns). ``methods``
    are the baselines drawn beside PathwayGrad (``gradients``, ``input_mct``, ``input_intgrad``,
    ``guided_backprop``, ``gradcam``); ``gradcam`` is skipped, with a note in ``info``, for a model
    without a known Grad-CAM layer. ``target`` is the class explained, an index or an ImageNet class
    name (default the prediction); ``device`` where the model runs.

    Returns ``(figure, maps, info)``: the matplotlib figure; the (224, 224) maps in [-1, 1] keyed by
    ``"pathway_grad"`` and each baseline's name; ``info`` with the explained ``target`` and its
    ``class_name``, the ``predicted`` class, its ``class_name`` and probability, the pathway's
    ``realized_sparsity``, the ``image`` as the model sees it (H, W, 3 in [0, 1]) and the ``skipped``
    methods with the reason.
    """
    unknown = [m for m in methods if m not in SALIENCY_METHODS]
    if unknown:
        raise ExplainError("methods", f"must be among {', '.join(SALIENCY_METHODS)}; got {', '.join(map(repr, unknown))}")
    if criterion not in SPECS:
        raise ExplainError("criterion", f"must be one of {', '.join(SPECS)}; got {criterion!r}")
    pixels = read_image(image_path)
    names = imagenet.imagenet_class_names()
    wanted = _target(target, names)
    net = _load(model, device)
    x = imagenet.preprocess(pixels).to(device)
    with torch.no_grad():
        probabilities = torch.softmax(net(x), dim=1)[0]
    predicted = int(probabilities.argmax())
    explained = predicted if wanted is None else wanted
    level = float(sparsity) if SPECS[criterion].needs_sparsity else None
    path = extract_pathway(net, x, cast(Method, criterion), level, target=explained)
    maps: dict[str, np.ndarray] = {PATHWAY_KEY: pathway_grad(net, x, path, target=explained)[0].detach().cpu().numpy()}
    skipped: dict[str, str] = {}
    for method in dict.fromkeys(methods):
        if method == "gradcam" and not _has_gradcam_layer(net):
            skipped[method] = f"no known Grad-CAM layer for {type(net).__name__} (known: {', '.join(sorted(GRADCAM_LAYERS))})"
            continue
        maps[method] = saliency(net, x, cast(SaliencyMethod, method), target=explained)[0].detach().cpu().numpy()
    info: dict[str, Any] = {
        "model": model,
        "criterion": criterion,
        "sparsity": level,
        "realized_sparsity": float(path.sparsity[0]),
        "target": explained,
        "class_name": names[explained],
        "predicted": predicted,
        "predicted_name": names[predicted],
        "predicted_probability": float(probabilities[predicted]),
        "target_probability": float(probabilities[explained]),
        "image": imagenet.denormalize(x[0]).permute(1, 2, 0).cpu().numpy(),
        "skipped": skipped,
    }
    figure = draw(maps, info)
    return figure, maps, info


def draw(maps: dict[str, np.ndarray], info: dict[str, Any]) -> Any:
    """The figure of :func:`explain`: the image as the model sees it, then PathwayGrad and the
    baselines in the book's diverging colour map, every text at least :data:`MIN_FONT_PT` pt."""
    import matplotlib.text

    plotting.set_theme()
    labels = [_pathway_label(info["criterion"], info["sparsity"])] + [_METHOD_LABELS[m] for m in maps if m != PATHWAY_KEY]
    shown = [maps[PATHWAY_KEY]] + [m for k, m in maps.items() if k != PATHWAY_KEY]
    figure = plotting.map_grid(
        info["image"],
        [shown],
        row_labels=[""],
        col_labels=[_wrapped(label) for label in labels],
        panel=2.6,
        colorbar_label="map / its 99th\npercentile of |map|",
    )
    axes = figure.axes
    axes[0].set_title("the model's input", fontsize=MIN_FONT_PT)
    for ax, label in zip(axes[1 : 1 + len(labels)], labels, strict=True):
        if plotting.is_method(label):
            ax.title.set_color(plotting.method_colour(label))
    if info["target"] == info["predicted"]:
        why = f"the prediction, p = {info['predicted_probability']:.2f}"
    else:
        why = (
            f"p = {info['target_probability']:.2f}; predicted: {info['predicted_name']}, "
            f"p = {info['predicted_probability']:.2f}"
        )
    # above the column titles (two lines for PathwayGrad's): bbox_inches="tight" keeps it in the saved file
    figure.suptitle(f"{info['model']}: why '{info['class_name']}' (class {info['target']}, {why})", fontsize=13, y=1.13)
    for text in figure.findobj(matplotlib.text.Text):
        if text.get_text() and float(text.get_fontsize()) < MIN_FONT_PT:
            text.set_fontsize(MIN_FONT_PT)
    for ax in axes:
        ax.tick_params(labelsize=MIN_FONT_PT)
    return figure


def _wrapped(label: str) -> str:
    """A long column title on two lines (``PathwayGrad, NeuronMCT, 75 %`` -> ``PathwayGrad,\\nNeuronMCT, 75 %``)."""
    return label.replace("PathwayGrad, ", "PathwayGrad,\n", 1) if len(label) > 20 else label


def check_device(device: str | None) -> str | None:
    """The reason ``device`` cannot be used here (None when it can): a torch device string, and a
    visible GPU for cuda."""
    if device is None:
        return None
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    accepted = f"cpu, cuda or cuda:N (GPUs visible here: {gpus})"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        return f"--device must be {accepted}, got {device!r}"
    if parsed.type == "cpu":
        return None
    if parsed.type == "cuda":
        if gpus == 0:
            return f"--device {device}: no CUDA GPU is visible here (torch.cuda.is_available() is False); use --device cpu"
        if parsed.index is not None and parsed.index >= gpus:
            return f"--device {device}: only {gpus} GPU(s) visible here (cuda:0 to cuda:{gpus - 1})"
        return None
    if parsed.type == "mps" and torch.backends.mps.is_available():
        return None
    return f"--device must be {accepted}, got {device!r}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m pathlib_pw explain``."""
    usable = ", ".join(usable_models()) or "none"
    parser.add_argument("image", metavar="IMAGE", help="an image file (JPEG, PNG, ...), read with PIL and converted to RGB")
    parser.add_argument(
        "-o", "--output", metavar="OUT.png", required=True, help="where to save the figure (its suffix picks the format)"
    )
    parser.add_argument(
        "--model", default="mobilenet_v2", choices=models.MODEL_NAMES, help=f"ImageNet model (weights installed here: {usable})"
    )
    parser.add_argument("--criterion", default="neuron_mct", choices=tuple(SPECS), help="pathway criterion")
    parser.add_argument("--sparsity", type=float, default=75.0, help="percent of neurons removed from the pathway (0-100)")
    parser.add_argument(
        "--method",
        dest="methods",
        action="append",
        choices=SALIENCY_METHODS,
        metavar="METHOD",
        help=f"a baseline beside PathwayGrad, repeatable; one of {', '.join(SALIENCY_METHODS)} "
        f"(when not given: {', '.join(DEFAULT_METHODS)})",
    )
    parser.add_argument(
        "--target",
        metavar="CLASS",
        default=None,
        help="class explained: index or ImageNet class name (when not given: the prediction)",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``python -m pathlib_pw explain``: bad arguments are one-line usage errors (exit status 2)."""
    problem = check_device(args.device)
    if problem:
        parser.error(problem)
    if not 0 <= args.sparsity < 100:
        parser.error(f"--sparsity must be a percent in [0, 100), got {args.sparsity:g}")
    output = Path(args.output)
    if output.parent != Path() and not output.parent.is_dir():
        parser.error(f"-o {args.output}: folder {str(output.parent)!r} does not exist")
    try:
        figure, _, info = explain(
            args.image,
            model=args.model,
            criterion=args.criterion,
            sparsity=args.sparsity,
            methods=tuple(args.methods or DEFAULT_METHODS),
            target=args.target,
            device=args.device,
        )
    except ExplainError as error:
        parser.error(f"{_FLAGS.get(error.argument, error.argument)} {error.detail}")
    except EmptyPathwayError:
        parser.error(f"--sparsity {args.sparsity:g}: the {args.criterion} pathway keeps no neuron at all; use a lower sparsity")
    for method, reason in info["skipped"].items():
        print(f"note: {method} skipped: {reason}", file=sys.stderr)
    try:
        figure.savefig(output, bbox_inches="tight")
    except (OSError, ValueError) as error:
        parser.error(f"-o {args.output}: cannot be written ({str(error).splitlines()[0]})")
    print(f"{args.output}: {info['class_name']} (class {info['target']}) explained with {args.model}, {args.criterion}")
    return 0
