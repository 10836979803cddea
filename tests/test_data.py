"""Bundled photos, local ImageNet val folders and digits (CPU, no network)."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pathlib_pw import data, imagenet

EXPECTED_PHOTOS = [
    "chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "motorcycle_right",
    "china", "flower", "grace_hopper",
]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse(*args, **kwargs):
        calls.append("network")
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def test_all_registered_photos_load_offline(no_network: list[str]) -> None:
    assert list(data.PHOTOS) == EXPECTED_PHOTOS
    shapes = {}
    for name, photo in data.PHOTOS.items():
        assert photo.name == name and photo.source and photo.licence and photo.description
        img = data.load_photo(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert min(img.shape[:2]) >= 224 and img.std() > 20  # a real photo, not a blank placeholder
        shapes[name] = img.shape
    assert shapes["chelsea"] == (300, 451, 3) and shapes["grace_hopper"] == (600, 512, 3)
    left, right = data.load_photo("motorcycle_left"), data.load_photo("motorcycle_right")
    assert left.shape == right.shape and not np.array_equal(left, right)
    assert no_network == []


def test_load_photos_batch_and_order() -> None:
    x, names = data.load_photos()
    assert names == EXPECTED_PHOTOS
    assert x.shape == (len(EXPECTED_PHOTOS), 3, 224, 224) and x.dtype == torch.float32
    y, sub = data.load_photos(["coffee", "chelsea"], size=128)
    assert sub == ["coffee", "chelsea"] and y.shape == (2, 3, 128, 128)
    assert torch.equal(y[1], imagenet.preprocess(data.load_photo("chelsea"), size=128)[0])  # 128 px: not shipped
    z, one = data.load_photos("rocket")
    assert one == ["rocket"] and torch.equal(z[0], x[EXPECTED_PHOTOS.index("rocket")])


def test_unknown_photo_lists_accepted_names() -> None:
    for call in (lambda: data.load_photo("eagle"), lambda: data.load_photos(["chelsea", "eagle"])):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert "eagle" in msg and all(n in msg for n in EXPECTED_PHOTOS)


def _make_val(root: Path) -> dict[str, np.ndarray]:
    """Eight small random images in two class folders (PNG and lossless-compared JPEG names), plus noise."""
    rng = np.random.default_rng(123)
    arrays = {}
    for i in range(8):
        rel = f"n0{i % 2}/img_{i}.png"
        a = rng.integers(0, 256, size=(40 + i, 50, 3), dtype=np.uint8)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / rel)
        arrays[rel] = a
    gray = rng.integers(0, 256, size=(30, 30), dtype=np.uint8)
    Image.fromarray(gray).save(root / "gray.JPEG", format="JPEG")
    arrays["gray.JPEG"] = np.asarray(Image.open(root / "gray.JPEG").convert("RGB"))
    (root / "labels.txt").write_text("not an image")
    return arrays


def test_load_imagenet_val_from_folder(tmp_path: Path) -> None:
    arrays = _make_val(tmp_path)
    x, names = data.load_imagenet_val(tmp_path, size=32)
    assert names == sorted(arrays) and x.shape == (9, 3, 32, 32)
    for i, rel in enumerate(names):
        assert torch.allclose(x[i], imagenet.preprocess(arrays[rel], size=32)[0])

    a, na = data.load_imagenet_val(str(tmp_path), n=3, seed=1, size=32)
    b, nb = data.load_imagenet_val(tmp_path, n=3, seed=1, size=32)
    assert len(na) == 3 and na == nb and torch.equal(a, b)
    assert set(na) <= set(arrays) and na == sorted(na)
    draws = {tuple(data.load_imagenet_val(tmp_path, n=3, seed=s, size=32)[1]) for s in range(6)}
    assert len(draws) > 1  # the seed matters
    assert torch.equal(a, torch.stack([x[names.index(r)] for r in na]))

    batches = list(data.iter_imagenet_val(tmp_path, size=32, batch_size=4))
    assert [len(nm) for _, nm in batches] == [4, 4, 1]
    assert torch.equal(torch.cat([t for t, _ in batches]), x)
    with pytest.raises(ValueError, match="between 1 and 9"):
        data.load_imagenet_val(tmp_path, n=10)


def test_load_imagenet_val_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _make_val(tmp_path)
    monkeypatch.setenv(data.IMAGENET_VAL_ENV, str(tmp_path))
    x, names = data.load_imagenet_val(n=2, seed=0, size=32)
    assert x.shape == (2, 3, 32, 32) and set(names) <= set(arrays)


def test_load_imagenet_val_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.IMAGENET_VAL_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as err:
        data.load_imagenet_val()
    msg = str(err.value)
    assert "PATHLIB_PW_IMAGENET_VAL" in msg and "root" in msg and "layout" in msg

    missing = tmp_path / "nowhere"
    monkeypatch.setenv(data.IMAGENET_VAL_ENV, str(missing))
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        data.load_imagenet_val()
    assert str(missing) in str(err.value) and "PATHLIB_PW_IMAGENET_VAL" in str(err.value)

    empty = tmp_path / "empty"
    (empty / "n01").mkdir(parents=True)
    (empty / "n01" / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no .*images") as err:
        data.load_imagenet_val(empty)
    assert str(empty) in str(err.value)


def test_load_digits_tensors() -> None:
    x, y = data.load_digits_tensors()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1
    assert sorted(y.unique().tolist()) == list(range(10))
    assert torch.bincount(y).min() >= 170


def test_imagenet_val_source_takes_explicit_indices_and_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The authors' figures name fixed validation indices (0-based, sorted order): the source takes them."""
    arrays = _make_val(tmp_path)
    monkeypatch.setenv(data.IMAGENET_VAL_ENV, str(tmp_path))
    files = sorted(arrays)
    x, names = data.load_images("imagenet_val", ("5", files[2], "0"), size=32)
    assert names == [files[5], files[2], files[0]]
    for i, rel in enumerate(names):
        assert torch.allclose(x[i], imagenet.preprocess(arrays[rel], size=32)[0])
    assert data.load_images("imagenet_val", ("5", "0"), size=32, first=1)[1] == [files[5]]
    with pytest.raises(ValueError, match="out of range"):
        data.load_images("imagenet_val", ("9",), size=32)
    with pytest.raises(ValueError, match="neither a validation index"):
        data.load_images("imagenet_val", ("nope.JPEG",), size=32)


def test_built_in_sources_need_no_import_first():
    """``digits_test`` and ``imagenet_val_named`` live in modules ``import pathlib_pw`` does not load:
    a fresh process reaches them by name (issue 29: no registry depends on import order)."""
    import subprocess
    import sys

    code = (
        "import sys, pathlib_pw\n"
        "from pathlib_pw.data import load_images\n"
        "assert 'pathlib_pw.digits' not in sys.modules\n"
        "x, names = load_images('digits_test', n_images=3, size=8)\n"
        "assert tuple(x.shape) == (3, 1, 8, 8) and len(names) == 3, (x.shape, names)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_an_unknown_source_names_the_lazy_ones_too():
    with pytest.raises(ValueError, match=r"source must be one of \[.*'digits_test'.*'imagenet_val_named'.*\], got 'nope'"):
        data.load_images("nope")
