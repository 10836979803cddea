"""The shipped photo pixels: what every cache was computed from, and still the resize this code does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from pathlib_pw import data, imagenet

SIZES = (224, 64)


def test_every_photo_is_shipped_at_every_cache_size() -> None:
    keys = {data.photo_pixel_key(n, s) for n in data.PHOTOS for s in SIZES}
    assert set(data._shipped_pixels()) == keys
    for key, pixels in data._shipped_pixels().items():
        size = int(key.split("@")[1])
        assert pixels.dtype == np.uint8 and pixels.shape == (3, size, size)
    provenance = json.loads((data.PHOTO_PIXELS_FILE.parent / "provenance.json").read_text())
    assert provenance["sizes"] == list(SIZES) and set(provenance["photo_sha256"]) == set(data.PHOTOS)


@pytest.mark.parametrize("size", SIZES)
def test_shipped_pixels_are_this_machines_resize_up_to_rounding(size: int) -> None:
    """On any CPU the local resize agrees with the shipped pixels to one level in a few values: the
    installed photos and the transform are the ones the pixels were recorded from."""
    for name in data.PHOTOS:
        shipped = data.photo_pixels(name, size)
        local = data.photo_pixels(name, size, shipped=False)
        assert data.pixel_disagreement(shipped, local) is None, name


def _other_resize(image: np.ndarray, size: int, **kwargs) -> torch.Tensor:
    t = torch.from_numpy(image.copy()).permute(2, 0, 1)
    return TF.center_crop(TF.resize(t, [round(size * 256 / 224)], **kwargs), [size])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interpolation": InterpolationMode.BILINEAR, "antialias": False},
        {"interpolation": InterpolationMode.BICUBIC, "antialias": True},
    ],
    ids=["no_antialias", "bicubic"],
)
def test_a_different_resize_is_rejected(kwargs: dict) -> None:
    for name in ("chelsea", "grace_hopper"):
        other = _other_resize(data.load_photo(name), 224, **kwargs)
        assert data.pixel_disagreement(data.photo_pixels(name, 224), other) is not None


def test_pixel_disagreement_allows_one_level_in_few_values_only() -> None:
    ref = data.photo_pixels("coffee", 64)
    few = ref.clone().flatten()
    few[:5] = torch.where(few[:5] < 255, few[:5] + 1, few[:5] - 1)  # 5 of 12288 values, one level
    assert data.pixel_disagreement(ref, few.view_as(ref)) is None
    two_levels = ref.clone().flatten()
    two_levels[0] = 2 if two_levels[0] < 2 else two_levels[0] - 2
    assert "2 levels" in data.pixel_disagreement(ref, two_levels.view_as(ref))
    many = ref.clone().flatten()
    many[:100] = torch.where(many[:100] < 255, many[:100] + 1, many[:100] - 1)  # 100 > 12.3 allowed
    assert "100 of 12288" in data.pixel_disagreement(ref, many.view_as(ref))
    assert "shape" in data.pixel_disagreement(ref, ref[:, :10])


def test_load_photos_feeds_the_shipped_pixels() -> None:
    x, names = data.load_photos(["coffee", "chelsea"], size=64)
    for i, name in enumerate(names):
        expected = imagenet.normalize_pixels(torch.from_numpy(data._shipped_pixels()[f"{name}@64"]))
        assert torch.equal(x[i], expected)
    local, _ = data.load_photos(["coffee"], size=64, shipped=False)
    assert torch.equal(local[0], imagenet.preprocess(data.load_photo("coffee"), size=64)[0])


def test_unshipped_size_falls_back_to_the_local_resize() -> None:
    x, _ = data.load_photos(["rocket"], size=96)
    assert torch.equal(x[0], imagenet.preprocess(data.load_photo("rocket"), size=96)[0])


def test_preprocess_is_resize_crop_then_normalize() -> None:
    image = data.load_photo("flower")
    split = imagenet.normalize_pixels(imagenet.resize_crop(image, 64))
    assert torch.equal(imagenet.preprocess(image, size=64)[0], split)
    with pytest.raises(ValueError, match="size must be a positive int"):
        imagenet.resize_crop(image, 0)
