"""ImageNet preprocessing, its inverse and the class names (pathlib_pw.imagenet), offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from pathlib_pw import imagenet


def _photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def test_preprocess_shape_and_torchvision_equivalence() -> None:
    cat, coffee = _photo("chelsea"), _photo("coffee")
    x = imagenet.preprocess([cat, coffee])
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    single = imagenet.preprocess(cat)
    assert single.shape == (1, 3, 224, 224)
    assert torch.equal(single[0], x[0])
    tv = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    assert torch.allclose(x[1], tv(torch.from_numpy(coffee).permute(2, 0, 1)), atol=1e-6)
    assert imagenet.preprocess(cat, size=112).shape == (1, 3, 112, 112)


def test_denormalize_recovers_center_crop_of_resized_image() -> None:
    img = _photo("coffee")  # 400x600 -> 256x384 -> centre 224x224
    back = imagenet.denormalize(imagenet.preprocess(img))[0]
    assert back.min() >= 0 and back.max() <= 1
    resized = np.asarray(Image.fromarray(img).resize((384, 256), Image.BILINEAR), dtype=np.float32) / 255
    top, left = (256 - 224) // 2, (384 - 224) // 2
    expected = torch.from_numpy(resized[top : top + 224, left : left + 224]).permute(2, 0, 1)
    diff = (back - expected).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.2
    # a shifted crop must be clearly worse: the comparison does locate the centre
    shifted = torch.from_numpy(resized[top : top + 224, left + 40 : left + 264]).permute(2, 0, 1)
    assert (back - shifted).abs().mean() > 5 * diff.mean()


def test_preprocess_grayscale_rgba_and_float() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(200, 260), dtype=np.uint8)
    rgb = np.stack([gray] * 3, axis=-1)
    expected = imagenet.preprocess(rgb)
    assert torch.equal(imagenet.preprocess(gray), expected)
    assert torch.equal(imagenet.preprocess(gray[..., None]), expected)
    rgba = np.concatenate([rgb, np.full((200, 260, 1), 7, np.uint8)], axis=-1)
    assert torch.equal(imagenet.preprocess(rgba), expected)
    # gray input gives identical channels after denormalization
    back = imagenet.denormalize(expected)[0]
    assert torch.allclose(back[0], back[1], atol=1e-6) and torch.allclose(back[1], back[2], atol=1e-6)
    assert torch.allclose(imagenet.preprocess(rgb.astype(np.float64) / 255), expected, atol=0.01)
    with pytest.raises(ValueError):
        imagenet.preprocess(np.zeros((5, 5, 2), np.uint8))


def test_imagenet_class_names_offline(net_calls: list[str]) -> None:
    names = imagenet.imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) >= 998
    assert names[281] == "tabby" and names[285] == "Egyptian cat"
    assert names[967] == "espresso" and names[968] == "cup"
    assert net_calls == []
    assert imagenet.IMAGENET_MEAN == (0.485, 0.456, 0.406) and imagenet.IMAGENET_STD == (0.229, 0.224, 0.225)


def test_pixel_input_is_the_model_on_unnormalized_pixels():
    import torch
    from torch import nn

    from pathlib_pw.imagenet import IMAGENET_MEAN, IMAGENET_STD, PixelInput

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)).eval()
    x = torch.randn(2, 3, 8, 8)
    pixels = PixelInput.pixels(x)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(pixels, x * std + mean)  # not clamped: the exact inverse
    wrapped = PixelInput(model)
    torch.testing.assert_close(wrapped(pixels), model(x), rtol=1e-5, atol=1e-5)
    assert wrapped.model is model  # shared, not copied
    # a gradient through the wrapper is in pixel units: d/dpixels = d/dx / std
    pixels.requires_grad_(True)
    wrapped(pixels)[:, 0].sum().backward()
    xg = x.clone().requires_grad_(True)
    model(xg)[:, 0].sum().backward()
    torch.testing.assert_close(pixels.grad, xg.grad / std, rtol=1e-4, atol=1e-6)


def test_preprocess_accepts_a_path(tmp_path) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "cat.png")
    Image.fromarray(array[..., 0]).save(tmp_path / "gray.png")  # a grayscale file becomes RGB, as convert("RGB") does
    expected = imagenet.preprocess(array, size=32)
    torch.testing.assert_close(imagenet.preprocess(str(tmp_path / "cat.png"), size=32), expected, rtol=0, atol=0)
    both = imagenet.preprocess([tmp_path / "cat.png", array], size=32)
    assert both.shape == (2, 3, 32, 32) and torch.equal(both[0], both[1])
    gray = np.asarray(Image.open(tmp_path / "gray.png").convert("RGB"))
    torch.testing.assert_close(imagenet.preprocess(tmp_path / "gray.png", size=32), imagenet.preprocess(gray, size=32))


def test_preprocess_path_errors_name_the_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        imagenet.preprocess(str(tmp_path / "missing.jpg"))
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="notes.jpg"):
        imagenet.preprocess(tmp_path / "notes.jpg")


def test_resize_crop_explains_undecoded_input() -> None:
    for bad in ("cat.jpg", None, object()):
        with pytest.raises(TypeError, match=r"decoded image.*PIL\.Image\.open\(path\)\.convert\(\"RGB\"\)"):
            imagenet.resize_crop(bad)
    with pytest.raises(TypeError, match="bytes"):
        imagenet.preprocess([b"\x89PNG"])


def test_read_image_names_what_is_wrong_with_the_path(tmp_path) -> None:
    from PIL import Image

    array = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    Image.fromarray(array).save(tmp_path / "a.png")
    got = imagenet.read_image(tmp_path / "a.png")
    assert got.dtype == np.uint8 and np.array_equal(got, array)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        imagenet.read_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="is a folder, not an image file"):
        imagenet.read_image(tmp_path)
    (tmp_path / "t.png").write_text("text")
    with pytest.raises(ValueError, match=r"t\.png' cannot be read as an image"):
        imagenet.read_image(tmp_path / "t.png")
