"""Model randomization sanity checks (Adebayo et al., NeurIPS 2018) as Khakzar et al. ran them (book/methods.md: the paper's experiments).

A *stage* is a label and the submodules it re-initializes. Cascading randomization re-initializes the
stages from the top of the network down, cumulatively; independent randomization one stage alone.
Every weight and bias of a stage is redrawn from N(0, std); BatchNorm running statistics (buffers)
stay as trained. Each map of the randomized model is compared with the trained model's map.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from skimage.feature import hog
from skimage.metrics import structural_similarity
from torch import nn

from pathlib_pw.architectures import ARCHITECTURES, Stage

SIMILARITY_METRICS = ("spearman_signed", "spearman_abs", "ssim", "hog_pearson")


def randomization_stages(model: nn.Module) -> list[Stage]:
    """The top-down stages of ``model``'s architecture (:mod:`pathlib_pw.architectures`): a torchvision
    ResNet (the authors' 19 on ResNet50, without "original"), MobileNetV2 (classifier, the last 1x1
    conv, each inverted-residual block, the stem), EfficientNet-Lite0 (classifier, head conv, each
    MBConv block, stem), or one added with ``register_architecture(..., stages=...)``."""
    for cls in type(model).__mro__:
        record = ARCHITECTURES.get(cls.__name__)
        if record is not None and record.stages is not None:
            return record.stages(model)
    known = sorted(name for name, record in ARCHITECTURES.items() if record.stages is not None)
    raise ValueError(
        f"model: no default randomization stages for {type(model).__name__} (defaults exist for "
        f"{known}); pass stages as a list of (label, module names)"
    )


def check_stages(model: nn.Module, stages: Sequence[Stage]) -> list[Stage]:
    modules = dict(model.named_modules())
    for stage in stages:
        if not (isinstance(stage, tuple) and len(stage) == 2 and isinstance(stage[0], str)):
            raise ValueError(f"stages must be (label, module names) pairs, got {stage!r}")
        missing = [name for name in stage[1] if name not in modules]
        if missing or not stage[1]:
            raise ValueError(f"stages: stage {stage[0]!r} names no submodules or unknown ones: {missing or stage[1]}")
    return list(stages)


def _draw(name: str, shape: torch.Size, std: float, seed: int) -> torch.Tensor:
    # one generator per parameter: a stage gets the same weights in the cascade and alone, on any device
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    return torch.randn(shape, generator=generator) * std


@contextlib.contextmanager
def randomized(model: nn.Module, modules: Sequence[str], seed: int = 0, std: float = 0.1) -> Iterator[nn.Module]:
    """Re-initialize every parameter of the named submodules from N(0, ``std``) for the block.

    The draw depends only on ``seed`` and each parameter's name. Buffers (BatchNorm running
    statistics) are untouched; the trained values are restored on exit, also after an exception.
    """
    if not isinstance(std, (int, float)) or std <= 0:
        raise ValueError(f"std must be a positive number, got {std!r}")
    named = dict(model.named_modules())
    unknown = [m for m in modules if m not in named]
    if unknown:
        raise ValueError(f"modules must name submodules of the model; unknown: {unknown}")
    params = {}
    for prefix in modules:
        for name, param in named[prefix].named_parameters(prefix=prefix):
            params[name] = param
    saved = {name: p.detach().clone() for name, p in params.items()}
    try:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(_draw(name, p.shape, float(std), seed))
        yield model
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])


def _flat(map_: np.ndarray | torch.Tensor) -> np.ndarray:
    values = map_.detach().cpu().numpy() if isinstance(map_, torch.Tensor) else np.asarray(map_)
    return values.astype(np.float64)


def _correlation(fn: object, a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # undefined for a constant map
        return float("nan")
    return float(fn(a, b)[0])  # type: ignore[operator]


def _hog(map_: np.ndarray, cell: int) -> np.ndarray:
    return hog(map_) if cell == 8 else hog(map_, pixels_per_cell=(cell, cell))


def similarity(
    reference: np.ndarray | torch.Tensor,
    other: np.ndarray | torch.Tensor,
    hog_cell: int = 8,
    metrics: Sequence[str] = SIMILARITY_METRICS,
) -> dict[str, float]:
    """Adebayo et al.'s similarity of two (H, W) maps in [-1, 1].

    Spearman rank correlation of the signed and of the absolute maps, SSIM (window 5, data range 2)
    and the Pearson correlation of their HOG features (scikit-image defaults, with cells of
    ``hog_cell`` x ``hog_cell`` pixels: 8 is scikit-image's default, 16 the authors'). NaN where a map
    is constant (an all-zero map has no ranking and no gradient histogram). ``metrics``: the ones to
    compute (default all four).
    """
    if not isinstance(hog_cell, int) or isinstance(hog_cell, bool) or hog_cell < 1:
        raise ValueError(f"hog_cell must be a positive int, got {hog_cell!r}")
    a, b = _flat(reference), _flat(other)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"maps must be two (H, W) arrays of the same shape, got {a.shape} and {b.shape}")
    unknown = [m for m in metrics if m not in SIMILARITY_METRICS]
    if unknown:
        raise ValueError(f"metrics must be among {list(SIMILARITY_METRICS)}, got {unknown}")
    compute = {
        "spearman_signed": lambda: _correlation(spearmanr, a.ravel(), b.ravel()),
        "spearman_abs": lambda: _correlation(spearmanr, np.abs(a).ravel(), np.abs(b).ravel()),
        "ssim": lambda: float(structural_similarity(a, b, win_size=5, data_range=2.0)),
        "hog_pearson": lambda: _correlation(pearsonr, _hog(a, hog_cell), _hog(b, hog_cell)),
    }
    return {m: compute[m]() for m in metrics}


__all__ = ["SIMILARITY_METRICS", "Stage", "check_stages", "randomization_stages", "randomized", "similarity"]
