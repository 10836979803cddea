"""Pathway decoding (book/methods.md, the paper's experiments: "Pathway decoding"): what a path encodes, by maximizing the
explained logit through the network restricted to the path, with torch-lucent (:mod:`pathlib_pw.decoding`).

For one image and each path (the original network, the active subnet, NeuronIntGrad, NeuronMCT,
DGR(init=1), DGR(init=r), Greedy and the authors' Greedy loop), at each sparsity, and with several
seeds: the authors' decoding (a 128 px pixel image, no FFT, no decorrelation, no transforms, Adam lr
0.05, 512 steps, bilinear upsampling to the input size, ImageNet normalization). The target is the
unmasked network's prediction (the authors' script computed it while the previous method's mask was
still applied; Notes page). Beyond the authors, every decoding is measured: the target's logit
through its own path and through the full network, the full network's probability of the target,
the full network's penultimate features (their cosine to the photo's, and between decodings), SSIM
between decodings, and how much of the image the optimization changed.

Also, at the first sparsity: the highest-scored neuron of the last convolutional site of each path,
rendered on the unmasked network with lucent's defaults (``channel("features", c)``, as the authors).

Verification (``verify``): the path of ``check_path`` is extracted again (its threshold decisions
replayed against the cache's records, so another machine uses the same masks) and the first
``check_steps`` steps of its seed-0 render are recomputed and compared with the image the cache
stores for that step. A few steps of Adam stay within float rounding of each other; the 512-step
images do not (the optimization is chaotic), and are not compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pathlib_pw import decisions
from pathlib_pw import decoding as dec
from pathlib_pw.criteria import extract_pathways, spec
from pathlib_pw.criteria.seeds import per_image_seeds
from pathlib_pw.data import list_imagenet_val, register_image_source
from pathlib_pw.decoding import cosine_matrix, greedy_scores, input_gradient_sum, penultimate, ssim_matrix, top_neuron
from pathlib_pw.experiments.paths import Criterion, paper_criteria
from pathlib_pw.imagenet import preprocess
from pathlib_pw.metrics import map_concentration
from pathlib_pw.pathway import Pathway
from pathlib_pw.runner.inputs import PAPER_ALPHA_CHUNK, Inputs, pinned_options
from pathlib_pw.runner.verification import Tolerance
from pathlib_pw.sites import record_activations

ORIGINAL = "Original network"
ACTIVE = "Active subnet"
# the paper's decoding figure, in its order, and the intended Greedy beside the authors' loop
PAPER_PATHS = (ORIGINAL, ACTIVE, "NeuronIntGrad", "NeuronMCT", "DGR(init=1)", "DGR(init=r)", "Greedy (original code)")
BOOK_PATHS = PAPER_PATHS + ("Greedy",)
TOP_PATHS = ("NeuronIntGrad", "NeuronMCT", "DGR(init=1)", "DGR(init=r)", "Greedy", "Greedy (original code)")
GREEDY = "greedy"


def decoding_criteria(dgr_iterations: int = 1000, dgr_retries: int = 100, greedy_rounds: int = 98) -> tuple[Criterion, ...]:
    """The criteria of the decoding figure, as the paths experiment defines them (the authors' Greedy
    loop ran 98 rounds for decoding), plus the active subnet."""
    known = paper_criteria(dgr_iterations=dgr_iterations, greedy_rounds=greedy_rounds, dgr_retries=dgr_retries)
    wanted = ("NeuronIntGrad", "NeuronMCT", "DGR(init=1)", "DGR(init=r)", "Greedy", "Greedy (original code)")
    # the decoding cache was recorded before Greedy's ties were taken at random: until the redesigned
    # decoding experiment is recorded, its Greedy keeps the position ties it was computed with
    position = {c.label: c for c in known}["Greedy (ties by position)"]
    chosen = [dataclasses.replace(position, label="Greedy") if c.label == "Greedy" else c for c in known if c.label in wanted]
    return (Criterion(ACTIVE, "active_subnet"),) + tuple(chosen)


@dataclasses.dataclass(frozen=True)
class Config:
    """One image; ``paths`` (labels of ``criteria``, or ``ORIGINAL``) at each of ``sparsities`` (the
    first is the main one: top neurons, the verification), ``seeds`` renders each. Every field enters
    the cache's configuration hash."""

    inputs: Inputs = Inputs(images=("chelsea",))
    """The image whose paths are decoded (chelsea at 64 px in smoke, the authors' VGG16 validation image in paper)."""
    sparsities: tuple[float, ...] = (90.0, 98.0)
    """Path sparsities in percent (0-100); the first is the main one (98 only in the paper profile)."""
    paths: tuple[str, ...] = BOOK_PATHS
    """The paths rendered, in the figure's order, as criterion labels or ``ORIGINAL`` (the whole network)."""
    criteria: tuple[Criterion, ...] = decoding_criteria(dgr_iterations=300, dgr_retries=2)
    """The criteria the path labels name (in book, DGR with 300 iterations and at most 2 init=r retries)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Render seeds per path; must include 0, the render the verification recomputes."""
    param_size: int = 128
    """Side in pixels of lucent's image parameterization (the rendered image)."""
    steps: int = 512
    """Adam steps per render."""
    lr: float = 0.05
    """Adam's learning rate."""
    top_paths: tuple[str, ...] = TOP_PATHS
    """The paths whose top neuron is found and rendered (criteria among ``paths``)."""
    top_layer: str = "features"
    """Lucent's name of the layer whose channel is rendered (the authors rendered VGG16's features)."""
    top_steps: int = 512
    """Adam steps per top-neuron render."""
    top_inputs: Inputs | None = None
    """The image the top neurons are scored on (None means ``inputs``)."""
    path_seed: int = 0
    """Seed of the random draws of the paths (DGR init=r)."""
    check_path: str = "NeuronMCT"
    """The path whose render ``verify`` recomputes (never a chaotic criterion, whose masks are not restored)."""
    check_steps: int = 8
    """Steps of the check render that ``verify`` recomputes."""
    check_only: bool = False
    """Whether this run is what ``verify`` recomputes, the check path and its first steps only."""

    def __post_init__(self) -> None:
        check_paths(self)
        known = [ORIGINAL] + [c.label for c in self.criteria]
        unknown = [p for p in self.top_paths if p not in known]
        if unknown:
            raise ValueError(f"top_paths: unknown path name(s) {unknown}; known: {known}")
        if ORIGINAL in self.top_paths or not set(self.top_paths) <= set(self.paths):
            raise ValueError(f"top_paths must be criteria among paths {list(self.paths)}, got {list(self.top_paths)}")
        if not self.seeds or 0 not in self.seeds:
            raise ValueError("seeds must include 0 (the check render)")

    def criterion(self, label: str) -> Criterion:
        return next(c for c in self.criteria if c.label == label)


def render_logit(
    model: nn.Module, target: int, path: Pathway | None, size: int, config: Any, seed: int, thresholds: tuple[int, ...] | None
) -> np.ndarray:
    """The authors' decoding of class ``target`` through ``path`` with ``config``'s pixel size, steps and
    learning rate (the images after each of ``thresholds``, default the last step)."""
    return dec.render(
        model,
        dec.logit(target),
        path,
        input_size=size,
        parameterization=dec.Parameterization(size=config.param_size),
        steps=config.steps if thresholds is None else max(thresholds),
        lr=config.lr,
        seed=seed,
        thresholds=thresholds,
        progress=False,
    )


def check_paths(config: Any) -> None:
    """The checks a decoding configuration shares: ``paths`` name the original network or a label
    of ``criteria``; ``check_path`` (what ``verify`` recomputes) is a non-chaotic criterion among
    them; ``sparsities`` is not empty; ``check_steps`` is within ``steps``. ValueError naming the field."""
    labels = [c.label for c in config.criteria]
    known = [ORIGINAL] + labels
    unknown = [p for p in config.paths if p not in known]
    if unknown:
        raise ValueError(f"paths: unknown path name(s) {unknown}; known: {known}")
    if config.check_path not in config.paths or config.check_path == ORIGINAL:
        raise ValueError(f"check_path must be a criterion among paths {list(config.paths)}, got {config.check_path!r}")
    check = config.criteria[labels.index(config.check_path)]
    if spec(check.method).rounding_for(dict(check.options)).kind == "chaotic":
        raise ValueError(f"check_path {config.check_path!r} is chaotic: its masks are not restored on replay")
    if not config.sparsities:
        raise ValueError("sparsities must not be empty")
    if not 1 <= config.check_steps <= config.steps:
        raise ValueError(f"check_steps must be in [1, steps={config.steps}], got {config.check_steps}")


def config(profile: str) -> Config:
    if profile == "smoke":
        return Config(
            inputs=Inputs(images=("chelsea",), size=64),
            paths=(ORIGINAL, ACTIVE, "NeuronMCT", "DGR(init=1)", "Greedy (original code)"),
            criteria=decoding_criteria(dgr_iterations=5, dgr_retries=1, greedy_rounds=5),
            seeds=(0, 1),
            param_size=32,
            steps=16,
            top_paths=("NeuronMCT", "DGR(init=1)"),
            top_steps=8,
        )
    if profile == "book":
        # DGR with 300 iterations and at most 2 init=r retries, as the paths experiment's book profile
        return Config()
    # the authors' script: VGG16, one validation image, 98 %, the top neurons on another image
    return Config(
        inputs=Inputs(model="vgg16", source="imagenet_val_named", images=("val_00048339",), alpha_chunk=PAPER_ALPHA_CHUNK),
        sparsities=(98.0,),
        paths=BOOK_PATHS,
        criteria=decoding_criteria(),
        top_inputs=Inputs(model="vgg16", source="imagenet_val_named", images=("val_00048265",)),
    )


@register_image_source("imagenet_val_named", imagenet_val=True)
def _imagenet_val_named(
    images: tuple[str, ...], n_images: int, size: int, seed: int, first: int | None
) -> tuple[torch.Tensor, list[str]]:
    """Named images of the local ImageNet val folder (``PATHLIB_PW_IMAGENET_VAL``): each name must
    end exactly one file's stem (``val_00048339`` -> ``ILSVRC2012_val_00048339.JPEG``)."""
    from PIL import Image

    root, files = list_imagenet_val()
    chosen = []
    for name in images[:first]:
        hits = [f for f in files if Path(f).stem.endswith(name)]
        if len(hits) != 1:
            raise FileNotFoundError(f"{len(hits)} files in {root} end in {name!r} (exactly one is needed)")
        chosen.append(hits[0])
    arrays = []
    for f in chosen:
        with Image.open(root / f) as im:
            arrays.append(np.asarray(im.convert("RGB")))
    return preprocess(arrays, size=size), chosen


PER_IMAGE = {"names"}
# The check image after a few Adam steps (MobileNetV2, 224 px, the 90 % NeuronMCT path, 8 steps).
# Rounding moved it by at most 4.5e-6 (2 threads instead of 1) and 1.6e-6 (no SIMD, after 34
# threshold neurons were restored); a 1 % larger learning rate moves it by up to 0.035 (73 % of the
# values by more than 1e-4), another path or seed by 0.1 to 0.2. Adam's first step moves every pixel
# by +-lr whatever the size of its gradient, so a gradient within rounding of zero could turn a
# pixel (up to 0.025 in the image): a few values (0.1 %) may differ by up to 0.03. None did.
CHECK_IMAGE = Tolerance(
    atol=1e-4,
    share=0.001,
    limit=0.03,
    reason="a few Adam steps from the same start: float rounding only; a pixel whose gradient sits at 0 may turn",
)
TOLERANCES = {"check_image": CHECK_IMAGE, "check_logits": Tolerance(rtol=1e-3, atol=1e-3, reason="logits of the check image")}
CHECK_KEYS = ("names", "target", "check_image", "check_logits", "check_realized")


def verify_subset(config: Config, n: int) -> Config:
    """What ``verify`` recomputes: the check path (its decisions replayed) and the first
    ``check_steps`` steps of its seed-0 render."""
    return dataclasses.replace(config, check_only=True)


def cached_part(cached: Mapping[str, np.ndarray], part: Config) -> dict[str, np.ndarray]:
    if part.check_only:
        return {k: cached[k] for k in CHECK_KEYS}
    return dict(cached)


# ---- paths and their scores ----------------------------------------------------------------------


def decoding_paths(
    model: nn.Module, x: torch.Tensor, config: Any, labels: tuple[str, ...], image: int = 0
) -> dict[str, list[Pathway | None]]:
    """Each path of ``labels`` for the one image ``x`` at each of ``config.sparsities`` (None: the
    original network); ``image`` numbers the image in its run (its seeds and recorded decisions)."""
    return _paths(model, x, config, labels, set(), image)[0]


def _paths(
    model: nn.Module, x: torch.Tensor, config: Any, labels: tuple[str, ...], want_scores: set[str], image: int = 0
) -> tuple[dict[str, list[Pathway | None]], dict[str, list[torch.Tensor]]]:
    """Each path at each sparsity (None: the original network), and the criterion's scores of those
    in ``want_scores`` (see :func:`~pathlib_pw.decoding.top_neuron`): the scores the criterion
    thresholded (``return_scores``), Greedy's :func:`~pathlib_pw.decoding.greedy_scores`."""
    levels = list(config.sparsities)
    out: dict[str, list[Pathway | None]] = {}
    scores: dict[str, list[torch.Tensor]] = {}
    for label in labels:
        if label == ORIGINAL:
            out[label] = [None] * len(levels)
            continue
        criterion = config.criterion(label)
        options = {**pinned_options(criterion.method, config.inputs), **dict(criterion.options)}
        if spec(criterion.method).seeded:
            options["seed"] = per_image_seeds(config.path_seed, len(x), image)
        capture = label in want_scores and criterion.method != GREEDY
        asked = levels if spec(criterion.method).needs_sparsity else None
        with decisions.images([image]), decisions.scope(label):
            if capture:
                found, scores[label] = extract_pathways(
                    model, x, criterion.method, asked, variant=criterion.variant, return_scores=True, **options
                )
            else:
                found = extract_pathways(model, x, criterion.method, asked, variant=criterion.variant, **options)
        # a criterion that takes no sparsity (the active subnet) has one path for every sparsity
        out[label] = list(found) if asked is not None else [found[0]] * len(levels)
        if label in want_scores and not capture:
            scores[label] = greedy_scores(model, x, found[0])
    return out, scores


# ---- the run ----------------------------------------------------------------------------------------


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    model = config.inputs.load_model(device)
    x, names = config.inputs.load_images()
    if len(x) != 1:
        raise ValueError(f"the decoding experiment takes one image, got {len(x)} ({names})")
    x = x.to(device)
    logits, _, _ = record_activations(model, x)
    target = int(logits.argmax(1)[0])
    size = int(x.shape[-1])

    def decode(path: Pathway | None, seed: int, thresholds: tuple[int, ...] | None = None) -> np.ndarray:
        return render_logit(model, target, path, size, config, seed, thresholds)

    def check_arrays(image: np.ndarray, path: Pathway | None) -> dict[str, np.ndarray]:
        xi = dec.model_input(image[None], size, device)
        own, full = dec.outputs(model, xi, path), dec.outputs(model, xi)
        return {
            "names": np.array(names),
            "target": np.array(target),
            "check_image": image,
            "check_logits": np.array([float(own[0, target]), float(full[0, target])], dtype=np.float32),
            "check_realized": np.array(0.0 if path is None else float(path.sparsity[0]), dtype=np.float32),
        }

    if config.check_only:
        found, _ = _paths(model, x, config, (config.check_path,), set())
        path = found[config.check_path][0]
        return check_arrays(decode(path, 0, (config.check_steps,))[0], path)

    labels, levels, seeds = config.paths, config.sparsities, config.seeds
    found, scores = _paths(model, x, config, labels, set(config.top_paths))
    top, channels = _top_rows(model, config, device, found, scores)
    # a path that is the same at every sparsity (the original network, the active subnet, the
    # authors' Greedy loop) is rendered once
    rendered_at = {(j, p): j for j in range(len(levels)) for p in range(len(labels))}
    for p, label in enumerate(labels):
        for j in range(1, len(levels)):
            a, b = found[label][0], found[label][j]
            if a is b or (a is not None and b is not None and all(torch.equal(u, v) for u, v in zip(a.masks, b.masks))):
                rendered_at[j, p] = 0
    renders = sum(1 for (j, _), k in rendered_at.items() if j == k) * len(seeds) + len(channels)
    bar = tqdm(total=renders, desc="decoding renders", disable=not progress)

    shape = (len(levels), len(labels), len(seeds))
    images = np.zeros(shape + (config.param_size, config.param_size, 3), dtype=np.float32)
    check: dict[str, np.ndarray] = {}
    for j in range(len(levels)):
        for p, label in enumerate(labels):
            if rendered_at[j, p] != j:
                images[j, p] = images[rendered_at[j, p], p]
                continue
            for s, seed in enumerate(seeds):
                is_check = label == config.check_path and j == 0 and seed == 0
                out = decode(found[label][j], seed, (config.check_steps, config.steps) if is_check else None)
                if is_check:
                    check = check_arrays(out[0], found[label][j])
                images[j, p, s] = out[-1]
                bar.update()
    pictures = np.zeros((len(channels), dec.LUCENT_DEFAULT.size, dec.LUCENT_DEFAULT.size, 3), dtype=np.float32)
    for c, channel in enumerate(channels):
        pictures[c] = dec.render(
            model,
            dec.channel(config.top_layer, channel),
            None,
            input_size=size,
            parameterization=dec.LUCENT_DEFAULT,
            steps=config.top_steps,
            seed=0,
            progress=False,
        )[0]
        bar.update()
    bar.close()
    return {
        **check,
        "photo_probability": np.array(float(logits.softmax(1)[0, target]), dtype=np.float32),
        "photo_logit": np.array(float(logits[0, target]), dtype=np.float32),
        "paths": np.array(labels),
        "sparsities": np.array(levels, dtype=np.float32),
        "seeds": np.array(seeds),
        "images": images.astype(np.float16),
        **_measure(model, x, target, images, [[found[label][j] for label in labels] for j in range(len(levels))], device),
        **top,
        "top_channels": np.array(channels, dtype=np.int64),
        "top_images": pictures.astype(np.float16),
    }


def _measure(
    model: nn.Module, x: torch.Tensor, target: int, images: np.ndarray, paths: list[list[Pathway | None]], device: str
) -> dict[str, np.ndarray]:
    """Every decoding through its own path and the full network, their similarities, and each path
    on the photo. ``images``: (levels, paths, seeds, size, size, 3); ``paths[j][p]``."""
    levels, n_paths, n_seeds = images.shape[:3]
    side = images.shape[3]
    size = int(x.shape[-1])
    shape = (levels, n_paths, n_seeds)
    logit_own, logit_full, prob_full = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    top1_full = np.zeros(shape, dtype=np.int64)
    photo_cosine = np.zeros(shape)
    n = n_paths * n_seeds
    cosine, ssim = np.zeros((levels, n, n)), np.zeros((levels, n, n))
    photo_features = penultimate(model, x)
    for j in range(levels):
        flat = images[j].reshape(n, side, side, 3)
        xi = dec.model_input(flat, size, device)
        full = dec.outputs(model, xi)
        features = penultimate(model, xi)
        for p in range(n_paths):
            own = dec.outputs(model, xi[p * n_seeds : (p + 1) * n_seeds], paths[j][p])
            logit_own[j, p] = own[:, target].cpu().numpy()
        logit_full[j] = full[:, target].cpu().numpy().reshape(n_paths, n_seeds)
        prob_full[j] = full.softmax(1)[:, target].cpu().numpy().reshape(n_paths, n_seeds)
        top1_full[j] = full.argmax(1).cpu().numpy().reshape(n_paths, n_seeds)
        photo_cosine[j] = cosine_matrix(features, photo_features)[:, 0].reshape(n_paths, n_seeds)
        cosine[j] = cosine_matrix(features, features)
        ssim[j] = ssim_matrix(flat)
    # the share of the image's change |image - 0.5| (colours summed) held by its top 5 % of pixels:
    # 0.05 for a uniform change, 1 when it all sits in those pixels (the start is grey noise near 0.5)
    concentration = map_concentration(np.abs(images.astype(np.float64) - 0.5).sum(-1), 0.05)
    change = np.abs(images.astype(np.float64) - 0.5).mean(axis=(-3, -2, -1))

    path_shape = (levels, n_paths)
    photo_logit_own, photo_prob_own = np.zeros(path_shape), np.zeros(path_shape)
    realized, last_kept, gradient = np.zeros(path_shape), np.zeros(path_shape), np.zeros(path_shape)
    for j in range(levels):
        for p in range(n_paths):
            path = paths[j][p]
            out = dec.outputs(model, x, path)
            photo_logit_own[j, p] = float(out[0, target])
            photo_prob_own[j, p] = float(out.softmax(1)[0, target])
            realized[j, p] = 0.0 if path is None else float(path.sparsity[0])
            last_kept[j, p] = 1.0 if path is None else float(path.kept_per_site()[0, -1])
            gradient[j, p] = input_gradient_sum(model, x, path, target=target)
    return {
        "logit_own": logit_own.astype(np.float32),
        "logit_full": logit_full.astype(np.float32),
        "prob_full": prob_full.astype(np.float32),
        "top1_full": top1_full,
        "photo_cosine": photo_cosine.astype(np.float32),
        "cosine": cosine.astype(np.float32),
        "ssim": ssim.astype(np.float32),
        "concentration": concentration.astype(np.float32),
        "change": change.astype(np.float32),
        "photo_logit_own": photo_logit_own.astype(np.float32),
        "photo_prob_own": photo_prob_own.astype(np.float32),
        "realized": realized.astype(np.float32),
        "last_site_kept": last_kept.astype(np.float32),
        "input_gradient": gradient.astype(np.float32),
    }


def _top_rows(
    model: nn.Module,
    config: Config,
    device: str,
    found: dict[str, list[Pathway | None]],
    scores: dict[str, list[torch.Tensor]],
) -> tuple[dict[str, np.ndarray], list[int]]:
    """The top neuron of each of ``config.top_paths`` at the first sparsity (on ``top_inputs`` when
    set, whose paths are extracted here), and the distinct channels to render."""
    top_name = ""
    if config.top_inputs is not None:
        xt, top_names = config.top_inputs.load_images()
        top_name = top_names[0]
        with decisions.scope("top image"):
            found, scores = _paths(
                model,
                xt[:1].to(device),
                dataclasses.replace(config, sparsities=config.sparsities[:1]),
                config.top_paths,
                set(config.top_paths),
            )
    rows = []
    for label in config.top_paths:
        path = found[label][0]
        assert path is not None
        rows.append(top_neuron(path, scores[label]))
    channels = sorted({int(r["channel"]) for r in rows if r["channel"] >= 0})
    return {
        "top_paths": np.array(config.top_paths),
        "top_image": np.array(top_name),
        "top_site": np.array([r["site"] for r in rows]),
        "top_index": np.array([r["index"] for r in rows]),
        "top_channel": np.array([r["channel"] for r in rows]),
        "top_share": np.array([r["share"] for r in rows], dtype=np.float32),
        "top_channel_share": np.array([r["channel_share"] for r in rows], dtype=np.float32),
    }, channels


__all__ = [
    "CHECK_IMAGE",
    "Config",
    "config",
    "decoding_criteria",
    "decoding_paths",
    "greedy_scores",
    "penultimate",
    "run",
    "top_neuron",
    "verify_subset",
]
