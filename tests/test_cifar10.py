"""Reading CIFAR-10's python batches from a folder written here, and refusing pickles that carry code."""

from __future__ import annotations

import marshal
import os
import pickle

import numpy as np
import pytest
import torch

from pathlib_pw import cifar10
from tests.cifar_folder import write_cifar10_folder


def _write_folder(root, per_batch=4, seed=0):
    return write_cifar10_folder(root, per_batch, seed)


def test_a_written_folder_reads_back_channels_first(tmp_path):
    _write_folder(tmp_path)
    x, y = cifar10.load_cifar10(tmp_path, "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8 and y.shape == (20,) and y.dtype == torch.int64
    first = cifar10.read_batch(tmp_path / "data_batch_1")
    # CIFAR-10 rows are the 1024 red, then green, then blue values of a 32 x 32 image, row-major
    np.testing.assert_array_equal(x[0, 1, 0, :5].numpy(), first["data"][0, 1024:1029])
    assert y[:4].tolist() == first["labels"]
    x_test, _ = cifar10.load_cifar10(tmp_path, "test")
    assert x_test.shape == (4, 3, 32, 32)


def test_the_folder_comes_from_the_environment_or_its_subfolder(tmp_path, monkeypatch):
    inner = tmp_path / "cifar-10-batches-py"
    inner.mkdir()
    _write_folder(inner)
    monkeypatch.setenv(cifar10.CIFAR10_ENV, str(tmp_path))
    assert cifar10.cifar10_folder() == inner


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _CarriesCode:
    def __reduce__(self):
        return (marshal.loads, (marshal.dumps(compile("print('pwned')", "x", "exec")),))


@pytest.mark.parametrize("payload", [_RunsCode(), _CarriesCode(), np.random.default_rng])
def test_a_pickle_with_code_is_refused_before_it_runs(tmp_path, payload, capfd):
    _write_folder(tmp_path)
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump({b"data": payload, b"labels": []}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"data_batch_3: refusing .* holds only containers, bytes, numbers and numpy arrays"):
        cifar10.load_cifar10(tmp_path, "train")
    assert "pwned" not in capfd.readouterr().out


def test_missing_data_says_what_and_where(tmp_path, monkeypatch):
    monkeypatch.delenv(cifar10.CIFAR10_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="PATHLIB_PW_CIFAR10"):
        cifar10.load_cifar10()
    with pytest.raises(FileNotFoundError, match=r"lacks \['data_batch_1'"):
        cifar10.load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        cifar10.load_cifar10(tmp_path, "val")


def test_malformed_batches_are_named(tmp_path):
    _write_folder(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"test_batch: 'data' must be uint8 \(N, 3072\)"):
        cifar10.load_cifar10(tmp_path, "test")
