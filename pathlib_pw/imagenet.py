"""ImageNet's evaluation preprocessing, its inverse for display, and its class names; no downloads."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PixelInput",
    "denormalize",
    "imagenet_class_names",
    "normalize_pixels",
    "preprocess",
    "read_image",
    "resize_crop",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _to_rgb(image: Any) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 0 or a.dtype.kind not in "biuf":
        raise TypeError(
            f"expected a decoded image (an HxW or HxWx3 array), got {type(image).__name__}: load a file with "
            'np.asarray(PIL.Image.open(path).convert("RGB")) or pass its path to preprocess'
        )
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]  # like PIL's convert("RGB"): alpha is dropped
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {a.shape}")
    return a


def resize_crop(image: Any, size: int = 224) -> torch.Tensor:
    """The geometric half of :func:`preprocess`: HxWx3 image -> (3,size,size) tensor, uint8 in, uint8 out.

    The shorter side is resized to round(size*256/224) (bilinear, antialiased), then center-cropped
    to ``size``. Grayscale (HxW) and RGBA inputs are converted to RGB; float inputs stay float.
    The uint8 resize rounds a float computation whose last bit depends on the CPU's instruction set,
    so a few pixels may differ by one level between machines (see :func:`pathlib_pw.data.photo_pixels`).
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    a = _to_rgb(image)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # e.g. np.asarray(PIL image); torch warns on read-only arrays
        a = a.copy()
    t = torch.from_numpy(a).permute(2, 0, 1)
    if t.is_floating_point():
        t = t.float()
    elif t.dtype != torch.uint8:
        raise TypeError(f"expected uint8 or float images, got {a.dtype}")
    t = TF.resize(t, [round(size * 256 / 224)], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(t, [size])


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """The photometric half of :func:`preprocess`: (3,H,W) uint8 or [0,1] float -> ImageNet-normalized float32."""
    t = TF.convert_image_dtype(pixels, torch.float32)
    return TF.normalize(t, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))


Image = np.ndarray | str | os.PathLike[str]


def preprocess(images: Image | Sequence[Image], size: int = 224) -> torch.Tensor:
    """Standard torchvision ImageNet eval transform of HxWx3 uint8 images -> normalized (B,3,size,size):
    :func:`resize_crop` then :func:`normalize_pixels`. Float inputs are taken as [0,1].

    An image may also be a file path (str or PathLike): it is opened with PIL and converted to RGB
    (``PIL.Image.open(path).convert("RGB")``); a missing file raises FileNotFoundError and a file PIL
    cannot read raises ValueError, both naming the path.

    Examples
    --------
    >>> from PIL import Image
    >>> import pathlib_pw as pw
    >>> pw.preprocess(Image.new("RGB", (300, 200))).shape  # resized, center-cropped, normalized
    torch.Size([1, 3, 224, 224])
    """
    if isinstance(images, (np.ndarray, str, os.PathLike)) or not isinstance(images, Sequence):
        images = [images]
    if len(images) == 0:
        raise ValueError("images is empty")
    return torch.stack([normalize_pixels(resize_crop(_decoded(image), size)) for image in images])


def _decoded(image: Any) -> Any:
    """A path opened as an RGB array; anything else as given (``resize_crop`` checks it)."""
    if isinstance(image, bytes):
        raise TypeError("preprocess takes decoded RGB arrays or file paths, got bytes: decode them with PIL first")
    return read_image(image) if isinstance(image, (str, os.PathLike)) else image


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The RGB pixels (H, W, 3 uint8) of the image file at ``path`` (``PIL.Image.open(path).convert("RGB")``).

    FileNotFoundError when ``path`` does not exist or is a folder, ValueError when PIL cannot read
    it; each message names the path.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    file = os.fspath(path)
    if not os.path.exists(file):
        raise FileNotFoundError(f"{file!r} does not exist")
    if os.path.isdir(file):
        raise FileNotFoundError(f"{file!r} is a folder, not an image file")
    try:
        with PILImage.open(file) as opened:
            return np.asarray(opened.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, PILImage.DecompressionBombError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{file!r} cannot be read as an image ({reason})") from None


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Invert the ImageNet normalization of a (3,H,W) or (B,3,H,W) tensor; values clamped to [0,1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0.0, 1.0)


class PixelInput(nn.Module):
    """``model`` fed 0-1 pixels: the ImageNet normalization becomes its first layer, so that input
    gradients and distances around an input are in pixel units. The wrapped model is shared, not copied."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model((pixels - self.mean) / self.std)

    @staticmethod
    def pixels(x: torch.Tensor) -> torch.Tensor:
        """The 0-1 pixels of a normalized batch (not clamped: the exact inverse of the normalization)."""
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x * std + mean


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (shipped inside torchvision, no download)."""
    return list(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
