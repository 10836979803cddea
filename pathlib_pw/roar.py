"""ROAR and KAR: remove pixels by a map from the training and the test images, retrain, test.

RemOve And Retrain (ROAR) and Keep And Retrain (KAR) are Hooker et al.'s benchmark ("A Benchmark for
Interpretability Methods in Deep Neural Networks", NeurIPS 2019); Khakzar et al. (CVPR 2021, section 5)
report ROAR on CIFAR-10. A map ranks each image's pixels; ROAR removes the top ``percent`` of them,
KAR the bottom ``percent`` (keeping the top), in the training and the test images alike with the same
fill; a model is trained from scratch on the degraded training set and tested on the degraded test
set. Retraining removes the shift in the input distribution that LeRF/MoRF leave in: what is measured
is whether the remaining pixels still carry the class. A good map makes ROAR's accuracy fall fast and
KAR's stay high.

Two known confounds (read the accuracies with them in mind): the removal mask's shape itself can carry
the class (a model can learn from where the pixels are missing; Rong et al., ICML 2022, "ROAD"), and a
blurry map removes compact blobs that the model can inpaint. The pixels removed are
:func:`pathlib_pw.removal.removal_masks` (ranked by ``|map|``, equal scores in a seeded random order), so
the decisions are recorded and replayed like every threshold decision of the library.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from pathlib_pw.removal import Fill, Order, Ties, _removal_masks, _remove_pixels, fraction_of
from pathlib_pw.training import predict

__all__ = ["MODES", "Mode", "RetrainingData", "Retrained", "degrade", "mask_only", "retrain", "roar_auc"]

Mode = Literal["roar", "kar"]
# the removal order of each mode: ROAR removes the most relevant pixels, KAR the least relevant
MODES: dict[str, Order] = {"roar": "most", "kar": "least"}
Trainer = Callable[[torch.Tensor, torch.Tensor, int], nn.Module]


def _check_mode(mode: object) -> Order:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    return MODES[str(mode)]


@dataclasses.dataclass(frozen=True, eq=False)
class RetrainingData:
    """Training and test images (N, C, H, W), standardized so that 0 is the training mean, with int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __post_init__(self) -> None:
        for x, y, part in ((self.x_train, self.y_train, "train"), (self.x_test, self.y_test, "test")):
            if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point() or len(x) == 0:
                raise ValueError(f"x_{part} must be a non-empty floating-point (N, C, H, W) tensor")
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(f"y_{part} must be an int64 tensor of shape ({len(x)},)")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"x_train and x_test must share (C, H, W); got {tuple(self.x_train.shape[1:])} and {tuple(self.x_test.shape[1:])}"
            )


def degrade(
    x: torch.Tensor,
    maps: torch.Tensor,
    percent: float,
    mode: Mode,
    fill: Fill = None,
    *,
    ties: Ties = "random",
    tie_seed: int = 0,
    seed: int | list[int] | None = None,
    noise: float | Sequence[float] = 0.01,
) -> torch.Tensor:
    """``x`` with ``percent`` % of each image's pixels removed by ``maps`` (N, H, W): the most relevant
    for ``mode="roar"``, the least relevant for ``"kar"``; equal scores by ``ties`` / ``tie_seed``
    (:func:`pathlib_pw.removal.removal_order`); filled with ``fill`` (None: 0, the mean; ``"road"``:
    ROAD's noisy linear imputation with ``noise`` and ``seed``)."""
    order = _check_mode(mode)
    return _remove_pixels(
        x, maps, fraction_of(percent, was_share=False), order, fill, ties=ties, tie_seed=tie_seed, seed=seed, noise=noise
    )


def mask_only(
    x: torch.Tensor,
    maps: torch.Tensor,
    percent: float,
    mode: Mode,
    fill: Fill = None,
    *,
    ties: Ties = "random",
    tie_seed: int = 0,
    seed: int | list[int] | None = None,
    noise: float | Sequence[float] = 0.01,
) -> torch.Tensor:
    """What :func:`degrade` leaves of the removal's *shape* alone: 1 where a pixel is kept, 0 where it
    is removed, in every channel, with the image's own values gone. A model trained on these measures
    how much of the class the mask itself gives away (the leak of ROAR and KAR's mean fill). ``fill``,
    ``seed`` and ``noise`` are accepted for :func:`degrade`'s signature and unused: the mask is the same."""
    order = _check_mode(mode)
    removed = _removal_masks(maps, fraction_of(percent, was_share=False), order, ties=ties, tie_seed=tie_seed)
    return (~removed).unsqueeze(1).expand(-1, x.shape[1], -1, -1).to(dtype=x.dtype, device=x.device).contiguous()


@dataclasses.dataclass(frozen=True, eq=False)
class Retrained:
    """One ROAR/KAR point: the retrained model's test accuracy and its test logits (N, classes)."""

    accuracy: float
    logits: torch.Tensor


def retrain(
    data: RetrainingData,
    maps_train: torch.Tensor,
    maps_test: torch.Tensor,
    percent: float,
    mode: Mode,
    train: Trainer,
    seed: int,
    fill: Fill = None,
) -> Retrained:
    """Degrade the training and test images by their maps (:func:`degrade`, the same ``fill`` for both),
    train a model from scratch with ``train(x, y, seed)``, and test it on the degraded test images."""
    x_train = degrade(data.x_train, maps_train, percent, mode, fill)
    x_test = degrade(data.x_test, maps_test, percent, mode, fill)
    model = train(x_train, data.y_train, seed)
    logits = predict(model, x_test)
    return Retrained(float((logits.argmax(1) == data.y_test.cpu()).double().mean()), logits)


def roar_auc(
    percents: Sequence[float] | np.ndarray, accuracies: np.ndarray | Sequence[float], baseline: np.ndarray | float
) -> np.ndarray:
    """The authors' area under a ROAR curve: trapezoids over x = 0 and the removed fractions
    (``percents`` / 100) of the accuracy (a share, not percent), with the unmodified model's
    ``baseline`` accuracy at x = 0. ``accuracies`` (..., P); ``baseline`` broadcasts to (...)."""
    xs = np.asarray(percents, dtype=np.float64)
    y = np.asarray(accuracies, dtype=np.float64)
    if xs.ndim != 1 or xs.size == 0 or y.ndim == 0 or y.shape[-1] != xs.size:
        raise ValueError(f"percents must be (P,) and accuracies (..., P) with the same P >= 1, got {xs.shape} and {y.shape}")
    if (xs <= 0).any() or (np.diff(xs) <= 0).any() or (xs > 100).any():
        raise ValueError(f"percents must be strictly increasing in (0, 100], got {xs.tolist()}")
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float64), y.shape[:-1])[..., None]
    grid = np.concatenate([[0.0], xs / 100])
    return np.trapezoid(np.concatenate([base, y], axis=-1), grid, axis=-1)
