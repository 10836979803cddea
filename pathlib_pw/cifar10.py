"""CIFAR-10 from a folder the user names (the paper's ROAR data; book/methods.md: the paper's experiments): the standard
"python version" batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``), never downloaded.

The batches are pickles, and ``pickle.load`` on a file someone points at runs whatever code it holds.
They are read with a restricted unpickler that admits only what the real batches contain: builtin
containers, bytes, numbers and numpy arrays; anything else (a function, a class, a code object) is
refused with :class:`pickle.UnpicklingError` before it can run.

:class:`ResNet8` is the model of the authors' ROAR setting: "ResNet-8" is all the paper says, so it is
He et al.'s CIFAR ResNet (ECCV 2016 / CVPR 2016, section 4.2) with one basic block per stage
(6 x 1 + 2 = 8 weighted layers): 3x3 conv to 16 channels, stages of 16, 32 and 64 channels (stride 2
from the second on, 1x1 projection shortcuts where the shape changes), global average pooling, linear.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

CIFAR10_ENV = "PATHLIB_PW_CIFAR10"
N_CLASSES = 10
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
# the globals a numpy array pickle names (numpy 1 and numpy 2 spell the module differently), and the
# one Python 3 uses for bytes at protocol 2 (a batch re-pickled by Python 3): plain data conversions
_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing {module}.{name}: a CIFAR-10 batch holds only containers, bytes, numbers and numpy arrays"
            )
        return super().find_class(module, name)


def read_batch(path: str | os.PathLike) -> dict[str, object]:
    """One CIFAR-10 python batch as a dict with str keys; UnpicklingError for anything but plain data."""
    data = Path(path).read_bytes()
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(f"{path}: {error}") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 batch (a dict), got {type(batch).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in batch.items()}


def _batches_in(root: Path) -> Path | None:
    for candidate in (root, root / "cifar-10-batches-py"):
        if all((candidate / f).is_file() for f in TRAIN_FILES + TEST_FILES):
            return candidate
    return None


def find_cifar10_folder(folder: str | os.PathLike | None = None) -> Path | None:
    """What :func:`cifar10_folder` returns, or None where it would raise: no file is read."""
    named = folder if folder is not None else os.environ.get(CIFAR10_ENV)
    return _batches_in(Path(named)) if named else None


def cifar10_folder(folder: str | os.PathLike | None = None) -> Path:
    """The folder holding the batches: ``folder``, else ``$PATHLIB_PW_CIFAR10`` (or its
    ``cifar-10-batches-py`` subfolder); FileNotFoundError saying what is missing and where it goes."""
    named = folder if folder is not None else os.environ.get(CIFAR10_ENV)
    if not named:
        raise FileNotFoundError(
            f"no CIFAR-10 folder: pass folder= or set {CIFAR10_ENV} to the folder holding the python batches "
            f"({', '.join(TRAIN_FILES + TEST_FILES)}), e.g. the cifar-10-batches-py folder of cifar-10-python.tar.gz "
            "from https://www.cs.toronto.edu/~kriz/cifar.html (nothing is downloaded here)"
        )
    root = Path(named)
    found = _batches_in(root)
    if found is not None:
        return found
    missing = [f for f in TRAIN_FILES + TEST_FILES if not (root / f).is_file()]
    raise FileNotFoundError(
        f"CIFAR-10 folder {root} lacks {missing}: put the python batches there (or in its cifar-10-batches-py)"
    )


def load_cifar10(folder: str | os.PathLike | None = None, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """``split`` ("train": 50,000 images, "test": 10,000) as uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be one of ['train', 'test'], got {split!r}")
    root = cifar10_folder(folder)
    images, labels = [], []
    for name in TRAIN_FILES if split == "train" else TEST_FILES:
        batch = read_batch(root / name)
        data = np.asarray(batch.get("data"))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{root / name}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
        label = np.asarray(batch.get("labels"), dtype=np.int64)
        if label.shape != (len(data),) or label.min(initial=0) < 0 or label.max(initial=0) > 9:
            raise ValueError(f"{root / name}: 'labels' must be {len(data)} classes in 0..9")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(label)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def standardize(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """uint8 images as float32 on [0, 1], standardized per channel by the mean and std of ``train``
    (so 0 is the training mean, the ROAR "mean fill"); returns ``train`` and each of ``others``."""
    scaled = train.double() / 255.0
    mean = scaled.mean(dim=(0, 2, 3), keepdim=True)
    std = scaled.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return tuple(((t.double() / 255.0 - mean) / std).float() for t in (train, *others))


class _BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inplanes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet8(nn.Module):
    """He et al.'s CIFAR ResNet with one basic block per stage; input (B, 3, 32, 32). ``seed`` seeds the
    initialization with the global RNG left untouched (None: drawn from the global RNG). Its rectifiers
    are ``nn.ReLU`` modules (pathway sites); Grad-CAM's layer is ``layer3``."""

    def __init__(self, seed: int | None = None, num_classes: int = N_CLASSES) -> None:
        super().__init__()
        if seed is None:
            self._build(num_classes)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self._build(num_classes)

    def _build(self, num_classes: int) -> None:
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = _BasicBlock(16, 16, 1)
        self.layer2 = _BasicBlock(16, 32, 2)
        self.layer3 = _BasicBlock(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))
