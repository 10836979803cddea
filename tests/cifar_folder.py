"""A CIFAR-10 python-batch folder written by a test: the paper profile's data path without the dataset."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from pathlib_pw import cifar10


def write_cifar10_folder(root: Path, per_batch: int = 4, seed: int = 0) -> Path:
    """Random uint8 images and labels in the six batch files, pickled as the real ones (protocol 2)."""
    rng = np.random.default_rng(seed)
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)  # as the real batches (written by Python 2)
    return root
