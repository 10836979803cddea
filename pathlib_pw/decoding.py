"""Pathway decoding: feature visualization through a network restricted to a pathway, with torch-lucent.

The paper asks what a critical pathway encodes by maximizing the explained logit with the network
restricted to the path (book/methods.md, the paper's experiments: "Pathway decoding"); the authors used Lucent. Here:

- :func:`render` runs lucent's own ``render_vis`` (its parameterizations, transforms, objectives and
  optimization loop) inside :func:`rendering`, with the pathway applied
  (:meth:`pathlib_pw.pathway.Pathway.applied`) for the whole optimization.
- :func:`rendering` is the context manager for everything a render changes, all restored on exit, also
  after an error: the model in eval mode and its parameters frozen (so ``.grad`` and the weights stay
  as they were; only the image is optimized), torch's and numpy's random generators seeded (lucent
  draws its initial image from torch's global generator and its transforms from numpy's) and then
  put back, lucent's module-level device (it picks ``cuda:0`` whenever CUDA exists) pointed at the
  model's device, cuDNN deterministic, and every hook added during the block removed
  (:func:`no_leaked_hooks`): torch-lucent 0.1.8's ``render_vis`` registers a forward hook on every
  module of the model per call and never removes it.
- Importing lucent prints a ``torch.jit`` FutureWarning (through kornia); :func:`lucent_modules`
  silences exactly that one, only during the import.

**Why render_vis and not a loop of our own.** Its two defects can be repaired from outside (the
leaked hooks by a snapshot of each module's hook dictionaries, the randomness by seeding both global
generators around the call), so the images are lucent's own and the authors' setting needs no
re-implementation. Two more of its habits are handled in :func:`render`: it catches
``KeyboardInterrupt`` and returns the unfinished image (re-raised here, so that a partial render is
never taken for a finished one), and it opens a viewer unless ``show_image=False`` (always passed).

**Sizes.** A pathway's masks are per neuron for one input size, so the network must see exactly
that size at every step. ``render_vis`` upsamples (bilinear, ``align_corners=True``) to 224 px only
when the *parameterized* image is smaller than 224 px, after the transforms; lucent's standard
transforms pad by 12 px and rescale by up to 10 %, so from an image of the model's own size they
would feed 248 to 273 px and no mask would fit. :func:`render` therefore always passes the model's
input size as ``fixed_image_size``: the final upsampling makes every step's input exactly that size,
whatever the parameterization and transforms, and a pathway extracted at another size is refused
before the first step with a clear error (:func:`check_size`). The decoding setting is the authors':
a pixel image of 128 px (no FFT, no colour decorrelation), no transforms (``transforms=[]``: each
optimized pixel stays at one place relative to the masked neurons), ImageNet normalization,
bilinear upsampling to the input size, Adam with lr 0.05 (:data:`DECODING`). Lucent's defaults
(FFT, decorrelated colours, the standard transforms; :data:`LUCENT_DEFAULT`) serve the
visualizations of single neurons on the unmasked network.

**Measuring a decoding.** :func:`penultimate` (the full network's features of an image, to compare a
decoding with the photo: :func:`cosine_matrix`; decodings with each other: also :func:`ssim_matrix`),
:func:`input_gradient_sum` (does the path still connect input and output?), and which neuron of a
path scores highest (:func:`top_neuron`, from the scores the criterion thresholded:
``extract_pathways(..., return_scores=True)``, or for Greedy :func:`greedy_scores`), the neuron the
authors rendered with lucent's defaults.

**Determinism.** On the CPU two renders with the same seed are bit-identical. On a GPU cuDNN is
made deterministic, but the backward pass of the bilinear upsampling accumulates with atomic adds,
so repeated GPU renders may differ in the last bits and then drift (the optimization is chaotic over
hundreds of steps); the book's caches are computed on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pathlib_pw.attribution.maps import input_gradient
from pathlib_pw.pathway import Pathway, taylor_scores
from pathlib_pw.sites import evaluating, model_device

__all__ = [
    "DECODING",
    "LUCENT_DEFAULT",
    "Logit",
    "Parameterization",
    "channel",
    "check_size",
    "cosine_matrix",
    "greedy_scores",
    "hook_count",
    "input_gradient_sum",
    "logit",
    "lucent_modules",
    "model_input",
    "no_leaked_hooks",
    "outputs",
    "penultimate",
    "render",
    "rendering",
    "ssim_matrix",
    "top_neuron",
]


@dataclasses.dataclass(frozen=True)
class Parameterization:
    """How lucent parameterizes and transforms the optimized image.

    ``size``: side of the optimized image in pixels (upsampled to the model's input size);
    ``fft``/``decorrelate``: lucent's Fourier parameterization and colour decorrelation
    (``param.image(size, fft=..., decorrelate=...)``); ``transforms``: ``"none"`` (``transforms=[]``) or
    ``"standard"`` (lucent's ``transform.standard_transforms``: pad, jitter, scale, rotate, jitter).
    """

    size: int = 128
    fft: bool = False
    decorrelate: bool = False
    transforms: Literal["none", "standard"] = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ValueError(f"size must be a positive int (pixels), got {self.size!r}")
        if self.transforms not in ("none", "standard"):
            raise ValueError(f"transforms must be 'none' or 'standard', got {self.transforms!r}")


DECODING = Parameterization()
"""The authors' decoding: ``param.image(128, fft=False, decorrelate=False)``, ``transforms=[]``."""
LUCENT_DEFAULT = Parameterization(fft=True, decorrelate=True, transforms="standard")
"""lucent's defaults: ``param.image(128)`` and ``transform.standard_transforms``."""


def lucent_modules() -> SimpleNamespace:
    """lucent's ``render``, ``param``, ``objectives`` and ``transform`` modules (and ``spatial``,
    ``color``), imported with its ``torch.jit`` FutureWarning silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        from lucent.optvis import objectives, param, render, transform
        from lucent.optvis.param import color, spatial
    return SimpleNamespace(render=render, param=param, objectives=objectives, transform=transform, spatial=spatial, color=color)


@dataclasses.dataclass(frozen=True)
class Logit:
    """Objective: maximize the pre-softmax logit of class ``target`` (the model's output itself,
    whatever its last module is)."""

    target: int

    def __post_init__(self) -> None:
        if not isinstance(self.target, (int, np.integer)) or isinstance(self.target, bool) or self.target < 0:
            raise ValueError(f"target must be a non-negative class index, got {self.target!r}")


def logit(target: int) -> Logit:
    """The objective of the decoding figure: the logit of class ``target``, maximized."""
    return Logit(int(target) if isinstance(target, np.integer) else target)


def channel(layer: str, index: int) -> Any:
    """lucent's ``objectives.channel(layer, index)``: the mean of one channel of a layer's output
    (layer names as lucent writes them: module path with ``_``, e.g. ``"features"``)."""
    return lucent_modules().objectives.channel(layer, int(index))


# ---- what a render changes, restored ----------------------------------------------------------------

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_HOOK_EXTRAS = ("_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


def hook_count(model: nn.Module) -> int:
    """Forward, forward-pre, backward and backward-pre hooks on all modules of ``model`` together."""
    return sum(len(getattr(m, name)) for m in model.modules() for name in _HOOK_DICTS)


@contextlib.contextmanager
def no_leaked_hooks(model: nn.Module) -> Iterator[None]:
    """Remove, on exit, every module hook registered on ``model`` inside the block (also after an
    error); hooks that existed before the block are kept."""
    before = {id(m): {name: set(getattr(m, name)) for name in _HOOK_DICTS} for m in model.modules()}
    try:
        yield
    finally:
        for m in model.modules():
            seen = before.get(id(m), {})
            for name in _HOOK_DICTS:
                hooks = getattr(m, name)
                for key in [k for k in hooks if k not in seen.get(name, set())]:
                    del hooks[key]
                    for extra in _HOOK_EXTRAS:
                        getattr(m, extra, {}).pop(key, None)


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Parameters with ``requires_grad=False`` inside the block: a backward pass then leaves their
    ``.grad`` alone (and costs less); the flags are restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _decorrelate_on_input_device(tensor: torch.Tensor) -> torch.Tensor:
    """lucent's ``_linear_decorrelate_color`` with its matrix on the image's device (lucent puts it
    on ``cuda:0`` whenever CUDA exists)."""
    color = lucent_modules().color
    matrix = torch.tensor(color.color_correlation_normalized.T, device=tensor.device)
    return torch.matmul(tensor.permute(0, 2, 3, 1), matrix).permute(0, 3, 1, 2)


@contextlib.contextmanager
def _lucent_on(device: torch.device) -> Iterator[None]:
    """lucent's module-level devices (the initial image, jitter and rotation tensors, the colour
    matrix) set to ``device`` for the block, restored on exit."""
    lucent = lucent_modules()
    saved = lucent.spatial.device, lucent.transform.device, lucent.color._linear_decorrelate_color
    try:
        lucent.spatial.device = lucent.transform.device = device
        lucent.color._linear_decorrelate_color = _decorrelate_on_input_device
        yield
    finally:
        lucent.spatial.device, lucent.transform.device, lucent.color._linear_decorrelate_color = saved


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's (CPU and the device's) and numpy's global generators seeded with ``seed``; their
    states are put back on exit."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    devices = [device] if device.type == "cuda" else []
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            np.random.seed(int(seed))
            yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def _deterministic_cudnn() -> Iterator[None]:
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


@contextlib.contextmanager
def rendering(model: nn.Module, seed: int = 0) -> Iterator[None]:
    """Everything a lucent render changes, for the block, restored on exit (also after an error).

    Inside: ``model`` in eval mode with frozen parameters (weights and ``.grad`` untouched), torch and
    numpy seeded with ``seed``, lucent's tensors on the model's device, cuDNN deterministic; on exit
    every hook registered on ``model`` inside the block is removed and the rest is put back.
    """
    device = model_device(model)
    with contextlib.ExitStack() as stack:
        stack.enter_context(no_leaked_hooks(model))
        stack.enter_context(evaluating(model))
        stack.enter_context(_frozen(model))
        stack.enter_context(_lucent_on(device))
        stack.enter_context(_deterministic_cudnn())
        stack.enter_context(_seeded(seed, device))
        yield


# ---- the render -------------------------------------------------------------------------------------


def start_image(parameterization: Parameterization = DECODING, seed: int = 0, device: torch.device | str = "cpu") -> np.ndarray:
    """The image a :func:`render` with ``parameterization`` and ``seed`` on ``device`` (the model's)
    starts from, (size, size, 3) in [0, 1]: lucent's parameterization drawn right after the render's
    seeding."""
    lucent = lucent_modules()
    device = torch.device(device)
    with _seeded(seed, device), _lucent_on(device):
        p = parameterization
        _, image_f = lucent.param.image(p.size, fft=p.fft, decorrelate=p.decorrelate)
        with torch.no_grad():
            return image_f()[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)


def check_size(model: nn.Module, pathway: Pathway | None, input_size: int) -> int:
    """Validate that ``model`` (with ``pathway`` applied) takes one image of ``input_size`` px; returns
    its number of output classes. A pathway extracted at another size or for several images, or for
    another model, raises ValueError saying so."""
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1:
        raise ValueError(f"input_size must be a positive int (pixels), got {input_size!r}")
    if pathway is not None and not isinstance(pathway, Pathway):
        raise TypeError(f"pathway must be a pathlib_pw.Pathway or None, got {type(pathway).__name__}")
    if pathway is not None and pathway.batch_size != 1:
        raise ValueError(
            f"a render optimizes one image: pass a one-image pathway (path[i]), got one for {pathway.batch_size} images"
        )
    probe = torch.zeros(1, 3, input_size, input_size, device=model_device(model))
    with torch.no_grad(), evaluating(model):
        try:
            with pathway.applied(model) if pathway is not None else contextlib.nullcontext():
                out = model(probe)
        except ValueError as error:
            raise ValueError(
                f"cannot render through this pathway at {input_size} px: {error}. The image is always "
                "upsampled to input_size, which must be the size the pathway was extracted at."
            ) from None
    if out.dim() != 2 or out.shape[0] != 1:
        raise ValueError(f"the model must return logits of shape (1, classes), got {tuple(out.shape)}")
    return int(out.shape[1])


def _transforms(parameterization: Parameterization) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    if parameterization.transforms == "none":
        return []
    return list(lucent_modules().transform.standard_transforms)


def render(
    model: nn.Module,
    objective: Logit | Any,
    pathway: Pathway | None = None,
    *,
    input_size: int = 224,
    parameterization: Parameterization = DECODING,
    steps: int = 512,
    lr: float = 0.05,
    seed: int = 0,
    thresholds: Sequence[int] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Optimize an image with lucent's ``render_vis`` so that ``objective`` grows, through ``model``
    restricted to ``pathway`` (None: the full network).

    Args:
        objective: :func:`logit` (a class's logit) or any lucent objective (e.g. :func:`channel`).
        input_size: the size the network sees (the image is upsampled to it at every step); must be
            the size ``pathway`` was extracted at.
        parameterization: :data:`DECODING` (the authors' decoding) or :data:`LUCENT_DEFAULT`.
        steps, lr: Adam steps and learning rate (lucent's defaults: 512, 0.05).
        seed: seeds torch and numpy for the render (the same seed gives the same image on one machine).
        thresholds: the steps after which the image is kept, increasing, ending at ``steps`` (default: only the last).

    Returns:
        float32 array (len(thresholds), size, size, 3) in [0, 1]: the optimized image (at
        ``parameterization.size``; :func:`model_input` gives what the network sees).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    kept = (steps,) if thresholds is None else tuple(int(t) for t in thresholds)
    if not kept or any(t < 1 or t > steps for t in kept) or list(kept) != sorted(set(kept)) or kept[-1] != steps:
        raise ValueError(f"thresholds must be increasing steps in [1, {steps}], got {thresholds!r}")
    classes = check_size(model, pathway, input_size)
    lucent = lucent_modules()
    with rendering(model, seed):
        output: dict[str, torch.Tensor] = {}
        if isinstance(objective, Logit):
            if objective.target >= classes:
                raise ValueError(f"target must be a class index in [0, {classes}), got {objective.target}")
            target = objective.target
            objective = lucent.objectives.Objective(
                lambda _hook: -output["logits"][:, target].mean(), name="logit", description=f"Logit [{target}]"
            )
            model.register_forward_hook(lambda _m, _a, out: output.__setitem__("logits", out))  # removed on exit

        inner = lucent.objectives.as_objective(objective)
        evaluated: list[int] = []

        def counted(hook: Callable[[str], torch.Tensor]) -> torch.Tensor:
            value = inner(hook)
            evaluated.append(1)
            return value

        def param_f() -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
            p = parameterization
            return lucent.param.image(p.size, fft=p.fft, decorrelate=p.decorrelate)

        with pathway.applied(model) if pathway is not None else contextlib.nullcontext():
            images = lucent.render.render_vis(
                model,
                lucent.objectives.Objective(counted, name=inner.name, description=inner.description),
                param_f,
                optimizer=lambda params: torch.optim.Adam(params, lr=lr),
                transforms=_transforms(parameterization),
                thresholds=kept,
                preprocess=True,
                progress=progress,
                show_image=False,
                fixed_image_size=input_size,
            )
    if len(evaluated) < kept[-1]:  # render_vis swallowed a KeyboardInterrupt and returned the unfinished image
        raise KeyboardInterrupt(f"the render was interrupted after {len(evaluated)} of {kept[-1]} steps; no image is returned")
    return np.concatenate(images).astype(np.float32, copy=False)


def model_input(images: np.ndarray | torch.Tensor, input_size: int = 224, device: torch.device | str = "cpu") -> torch.Tensor:
    """What the network sees of rendered images (N, size, size, 3) in [0, 1]: lucent's ImageNet
    normalization and bilinear upsampling to ``input_size`` (``align_corners=True``), as in
    :func:`render`; (N, 3, input_size, input_size)."""
    lucent = lucent_modules()
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).to(device)
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {tuple(x.shape)}")
    x = lucent.transform.normalize()(x.permute(0, 3, 1, 2))
    return torch.nn.Upsample(size=input_size, mode="bilinear", align_corners=True)(x)


def outputs(model: nn.Module, x: torch.Tensor, pathway: Pathway | None = None) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (restricted to ``pathway`` when given), without gradients."""
    with torch.no_grad(), evaluating(model), pathway.applied(model) if pathway is not None else contextlib.nullcontext():
        return model(x.to(model_device(model))).detach()


# ---- measuring decodings and paths ------------------------------------------------------------------


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The full network's input to its last linear layer (its penultimate features), (N, D): what
    the network makes of an image, beside its logits."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("the model has no nn.Linear layer")
    seen: list[torch.Tensor] = []
    handle = last[-1].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().flatten(1)))
    try:
        outputs(model, x)
    finally:
        handle.remove()
    return seen[-1]


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Cosine similarity of every row of ``a`` (N, D) to every row of ``b`` (M, D), in float64: (N, M)."""
    a, b = a.double(), b.double()
    return (torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T).cpu().numpy()


def ssim_matrix(images: np.ndarray) -> np.ndarray:
    """SSIM (scikit-image, colour images in [0, 1]) between every two of ``images`` (N, H, W, 3): (N, N),
    ones on the diagonal."""
    from skimage.metrics import structural_similarity

    n = len(images)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = structural_similarity(images[i], images[j], channel_axis=2, data_range=1.0)
    return out


def input_gradient_sum(model: nn.Module, x: torch.Tensor, path: Pathway | None, *, target: int) -> float:
    """``sum |d logit[target] / d x|`` over the one image ``x`` (1, C, H, W), through ``model`` restricted
    to ``path`` (None: the full network): 0 when the path no longer connects input and output."""
    with evaluating(model), path.applied(model) if path is not None else contextlib.nullcontext():
        grad = input_gradient(model, x, target)
    return float(grad.abs().sum())


def greedy_scores(model: nn.Module, x: torch.Tensor, path: Pathway) -> list[torch.Tensor]:
    """Greedy's own score of the neurons of its final path, per site: ``|a x d logit / d a|`` through the
    masked network (the score its next round would rank by), for ``path.info["target"]`` (default
    the prediction). Greedy's threshold decisions rank every neuron whose score is 0 above all
    others, so the scores they were made on say nothing about importance: these do."""
    return taylor_scores(model, x, path.info.get("target"), path.masks, path.sites)[0]


def top_neuron(path: Pathway, scores: list[torch.Tensor]) -> dict[str, Any]:
    """The highest-scored kept neuron of the last convolutional site of ``path`` (image 0).

    ``scores``: one (B, ...) tensor per site, as the path's masks (the scores its criterion
    thresholded, or :func:`greedy_scores`). Returns its ``site`` name, flat ``index`` within the site,
    ``channel`` (-1 when no kept neuron of that site scores above 0), ``share`` of the path's total
    score (kept neurons of all sites, float64) and ``channel_share``, its channel's share.
    """
    if len(scores) != len(path.masks):
        raise ValueError(f"scores must hold one tensor per site of the path ({len(path.masks)}), got {len(scores)}")
    conv = [s for s, m in enumerate(path.masks) if m.dim() == 4]
    if not conv:
        raise ValueError("the pathway has no convolutional site (masks of shape (B, C, H, W))")
    site = conv[-1]
    kept = [m[0].to(s.device) for m, s in zip(path.masks, scores)]
    values = [
        torch.where(k, s[0].to(torch.float64), torch.zeros((), dtype=torch.float64, device=s.device))
        for k, s in zip(kept, scores)
    ]
    total = float(sum(float(v.sum()) for v in values))
    last = values[site].flatten()
    index = int(last.argmax())
    best = float(last[index])
    plane = int(np.prod(path.masks[site].shape[2:]))
    return {
        "site": path.sites[site],
        "index": index,
        "channel": index // plane if best > 0 else -1,
        "share": best / total if total > 0 else float("nan"),
        "channel_share": float(values[site].view(values[site].shape[0], -1)[index // plane].sum()) / total
        if total > 0
        else float("nan"),
    }
