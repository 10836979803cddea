"""The embedded real-data model: a small ReLU CNN trained on the fly on scikit-learn's digits.

scikit-learn ships the 1,797 8x8 grayscale digits (10 classes) in its wheel, so nothing downloads.
:func:`digits_split` makes a fixed, seeded, stratified split standardized by the training set, so
that 0 is the training mean (the LeRF/MoRF "mean fill" is ``fill=0``); :func:`train_digits_cnn`
trains a :class:`DigitsCNN` from scratch in a few seconds on one CPU core (ROAR/KAR retrain it on
images with pixels removed). The model ``digits_cnn`` (:func:`pathlib_pw.models.load_model`) and the
architecture's Grad-CAM layer and class names are registered in :mod:`pathlib_pw.architectures`, which
imports this module only when the model is loaded; importing this module registers the image source
``digits_test`` (:func:`pathlib_pw.data.load_images`).

The split's indices come from numpy's legacy ``RandomState``, whose stream numpy keeps frozen: they
are the same on any machine. Training is deterministic: it runs on one thread, so the same seed gives
identical weights on one machine whatever torch's thread count (another CPU may round differently).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from pathlib_pw import data
from pathlib_pw.selection import threads
from pathlib_pw.training import TrainingRecipe, accuracy, train_classifier

__all__ = [
    "DigitsCNN",
    "DigitsSplit",
    "TrainingRecipe",
    "accuracy",
    "digits_model",
    "digits_split",
    "load_digits_cnn",
    "train_digits_cnn",
]

N_CLASSES = 10
SIDE = 8


@dataclasses.dataclass(frozen=True, eq=False)
class DigitsSplit:
    """Standardized digits, (N,1,8,8) float32 images and (N,) int64 labels per part.

    ``train_index``/``test_index`` are the images' indices into ``sklearn.datasets.load_digits()``
    (ascending); ``mean``/``std`` are the training pixels' mean and standard deviation on the [0, 1]
    scale of :func:`pathlib_pw.data.load_digits_tensors`, so ``x = (pixels - mean) / std``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    train_index: torch.Tensor
    test_index: torch.Tensor
    mean: float
    std: float


def digits_split(seed: int = 0, test_share: float = 0.3) -> DigitsSplit:
    """A stratified split of the digits: of each class, ``round(test_share * count)`` images go to the
    test set, drawn with ``seed``; both parts standardized by the training set's pixel mean and std."""
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be between 0 and 1 (exclusive); got {test_share!r}")
    x, y = data.load_digits_tensors()
    labels = y.numpy()
    rng = np.random.RandomState(seed)  # legacy stream: frozen by numpy, so the split never changes
    test: list[np.ndarray] = []
    for c in range(N_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[: math.floor(test_share * len(members) + 0.5)])
    test_index = np.sort(np.concatenate(test))
    train_index = np.setdiff1d(np.arange(len(labels)), test_index)
    if len(test_index) == 0 or len(train_index) == 0:
        raise ValueError(f"test_share must leave images in both parts; got {test_share!r}")
    # The pixels are multiples of 1/16, so these float64 sums are exact in any order.
    train = x[torch.from_numpy(train_index)].double()
    mean = float(train.sum()) / train.numel()
    std = math.sqrt(float((train * train).sum()) / train.numel() - mean * mean)
    x = (x - mean) / std
    tr, te = torch.from_numpy(train_index), torch.from_numpy(test_index)
    return DigitsSplit(x[tr], y[tr], x[te], y[te], tr, te, mean, std)


class DigitsCNN(nn.Module):
    """conv(1->16)-relu1 -> conv(16->32)-relu2 -> 2x2 max pool -> conv(32->32)-relu3 -> linear(512->10).

    Input (B,1,8,8), 3x3 convolutions with padding 1. The rectifiers are ``nn.ReLU`` modules (the sites
    ``relu1``, ``relu2``, ``relu3``) and the model is ``torch.fx``-traceable. ``seed`` seeds the
    initialization with the global RNG left untouched; None draws it from the global RNG like any module.
    """

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        if seed is None:
            self._build()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self._build()

    def _build(self) -> None:
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.fc = nn.Linear(32 * (SIDE // 2) ** 2, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.pool(self.relu2(self.conv2(x)))
        x = self.relu3(self.conv3(x))
        return self.fc(torch.flatten(x, 1))


def _describe(t: object) -> str:
    return f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def _check_digits(x: torch.Tensor, y: torch.Tensor, names: Sequence[str]) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or tuple(x.shape[1:]) != (1, SIDE, SIDE):
        raise ValueError(f"{names[0]} must be a floating-point tensor of shape (N, 1, 8, 8); got {_describe(x)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (len(x),):
        raise ValueError(f"{names[1]} must be an int64 tensor of shape ({len(x)},); got {_describe(y)}")
    if len(x) == 0 or bool(((y < 0) | (y >= N_CLASSES)).any()):
        raise ValueError(f"{names[1]} must hold at least one label, each in 0-{N_CLASSES - 1}")


def train_digits_cnn(
    x_train: torch.Tensor, y_train: torch.Tensor, recipe: TrainingRecipe = TrainingRecipe(), seed: int = 0
) -> DigitsCNN:
    """A :class:`DigitsCNN` trained from scratch on the CPU on (N,1,8,8) images and (N,) labels, in eval mode.

    ``seed`` fixes the initialization (``DigitsCNN(seed)``, the untrained model) and the batch order
    (a local generator); the global RNG state is untouched. It runs on one thread (torch's thread
    count is set to 1 for the call and restored after): identical weights for the same inputs, recipe
    and seed on one machine, whatever the thread count. It computes in float64 and returns float32
    weights: a few hundred optimizer steps amplify rounding (in float32 a 1e-7 change moved weights by
    up to 30 %); in float64 another CPU's sum order moves them by a few float32 steps at most (a build
    without SIMD: 3e-6 of each tensor's largest weight), so results cached with the model verify elsewhere.
    """
    _check_digits(x_train, y_train, ("x_train", "y_train"))
    model = DigitsCNN(seed=seed).double()
    # one thread: batches of 64 8x8 images gain nothing from more, on a busy machine the threads'
    # synchronization costs several times the work, and one thread keeps the float sums in one order
    with threads(1):
        train_classifier(model, x_train.detach().cpu(), y_train.cpu(), recipe, seed)
    return model.float().eval()


@functools.cache
def _trained(seed: int) -> DigitsCNN:
    split = digits_split(seed)
    return train_digits_cnn(split.x_train, split.y_train, TrainingRecipe(), seed)


def digits_model(seed: int = 0) -> DigitsCNN:
    """A :class:`DigitsCNN` trained with the default recipe and ``seed`` on ``digits_split(seed)``, in eval
    mode on the CPU; trained once per process and seed, a fresh copy each call."""
    return copy.deepcopy(_trained(seed))


def load_digits_cnn(pretrained: bool, seed: int, device: str | torch.device) -> nn.Module:
    """The loader of ``load_model("digits_cnn", pretrained, seed=, device=)``: :func:`digits_model` or,
    untrained, ``DigitsCNN(seed)``, in eval mode on ``device``."""
    model = digits_model(seed) if pretrained else DigitsCNN(seed=seed)
    return model.to(device).eval()


def _digits_test(
    images: tuple[str, ...], n_images: int, size: int, seed: int, first: int | None
) -> tuple[torch.Tensor, list[str]]:
    """The test images of ``digits_split(seed)`` (the split of ``digits_model(seed)``), the first
    ``n_images`` of them (0: all), then the first ``first``; named ``digits_test/<index in load_digits()>``.
    ``images`` is ignored."""
    if size != SIDE:
        raise ValueError(f"size must be {SIDE} for the digits (8x8 images); got {size!r}")
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0 (0: all test images); got {n_images!r}")
    split = digits_split(seed)
    keep = slice(None, n_images or None)
    x, index = split.x_test[keep][:first], split.test_index[keep][:first]
    return x, [f"digits_test/{i:04d}" for i in index.tolist()]


# A re-import makes a new function, which the registry refuses under a taken name: keep the first.
if "digits_test" not in data.IMAGE_SOURCES:
    data.register_image_source("digits_test")(_digits_test)
