"""Images without internet: real photos shipped inside installed wheels, a local ImageNet val folder,
and scikit-learn's bundled digits."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pathlib_pw.imagenet import normalize_pixels, preprocess, resize_crop

__all__ = [
    "IMAGENET_VAL_ENV",
    "IMAGENET_VAL_SOURCES",
    "IMAGE_SOURCES",
    "LAZY_SOURCES",
    "IMAGE_SUFFIXES",
    "PHOTOS",
    "PHOTO_PIXELS_FILE",
    "ImageSource",
    "Photo",
    "imagenet_val_files",
    "imagenet_val_problem",
    "iter_imagenet_val",
    "list_imagenet_val",
    "load_digits_tensors",
    "load_imagenet_val",
    "load_images",
    "load_photo",
    "load_photos",
    "photo_pixels",
    "pixel_disagreement",
    "image_source",
    "register_image_source",
]

IMAGENET_VAL_ENV = "PATHLIB_PW_IMAGENET_VAL"
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpeg", ".jpg", ".png"})


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _motorcycle(side: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return skimage.data.stereo_motorcycle()[side]

    return load


def _sklearn(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(file_name)

    return load


def _matplotlib(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib.cbook import get_sample_data
        from PIL import Image

        with Image.open(get_sample_data(file_name, asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))

    return load


@dataclass(frozen=True)
class Photo:
    """A real photo bundled in an installed package (read from local disk, never downloaded)."""

    name: str
    source: str
    licence: str
    description: str
    loader: Callable[[], np.ndarray] = field(repr=False, compare=False)


_SKI = "scikit-image 0.26 (skimage/data, in the wheel)"
# Each entry was checked to load with the network blocked; skimage's eagle/skin/lily etc. are fetched
# with pooch at run time and are left out on purpose.
PHOTOS: dict[str, Photo] = {
    p.name: p
    for p in [
        Photo(
            "chelsea",
            f"{_SKI}: skimage.data.chelsea()",
            "CC0 (photographer Stefan van der Walt)",
            "tabby cat (ImageNet: Egyptian cat / tabby)",
            _skimage("chelsea"),
        ),
        Photo(
            "coffee",
            f"{_SKI}: skimage.data.coffee()",
            "CC0 (photographer Rachel Michetti)",
            "cup of coffee on a saucer (ImageNet: espresso / cup)",
            _skimage("coffee"),
        ),
        Photo(
            "astronaut",
            f"{_SKI}: skimage.data.astronaut()",
            "public domain (NASA)",
            "astronaut Eileen Collins with a flag",
            _skimage("astronaut"),
        ),
        Photo("rocket", f"{_SKI}: skimage.data.rocket()", "public domain (SpaceX photos)", "Falcon 9 launch", _skimage("rocket")),
        Photo(
            "motorcycle_left",
            f"{_SKI}: skimage.data.stereo_motorcycle()[0]",
            "Middlebury 2014 stereo dataset (Scharstein et al., GCPR 2014); cite when used",
            "motorcycle, left stereo view",
            _motorcycle(0),
        ),
        Photo(
            "motorcycle_right",
            f"{_SKI}: skimage.data.stereo_motorcycle()[1]",
            "Middlebury 2014 stereo dataset (Scharstein et al., GCPR 2014); cite when used",
            "motorcycle, right stereo view",
            _motorcycle(1),
        ),
        Photo(
            "china",
            "scikit-learn: sklearn.datasets.load_sample_image('china.jpg')",
            "CC-BY 2.0, danielbuechele (Flickr)",
            "Chinese temple roofs",
            _sklearn("china.jpg"),
        ),
        Photo(
            "flower",
            "scikit-learn: sklearn.datasets.load_sample_image('flower.jpg')",
            "CC-BY 2.0, vultilion (Flickr)",
            "flower close-up",
            _sklearn("flower.jpg"),
        ),
        Photo(
            "grace_hopper",
            "matplotlib: matplotlib.cbook.get_sample_data('grace_hopper.jpg')",
            "public domain (U.S. Navy photo)",
            "portrait of Grace Hopper in uniform",
            _matplotlib("grace_hopper.jpg"),
        ),
    ]
}


def load_photo(name: str) -> np.ndarray:
    """The bundled photo ``name`` as an HxWx3 uint8 RGB array."""
    if name not in PHOTOS:
        raise ValueError(f"name must be one of {', '.join(PHOTOS)}; got {name!r}")
    img = np.asarray(PHOTOS[name].loader())
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3], dtype=np.uint8)


# The resized and cropped pixels every cache under data/results was computed from. A uint8 resize
# rounds a float sum whose last bit depends on the CPU's instruction set (on a CPU without AVX,
# coffee differs from this file in 4 of 590k values by one level), and one level in one pixel
# moves a path at its threshold; shipping the pixels makes every machine feed the recorded input.
PHOTO_PIXELS_FILE = Path(__file__).with_name("photo_pixels") / "photos_uint8.npz"
# what one machine's resize may differ from another's: one level, in at most 1 value in 1000
PIXEL_TOLERANCE_LEVELS = 1
PIXEL_TOLERANCE_SHARE = 1e-3


def photo_pixel_key(name: str, size: int) -> str:
    return f"{name}@{size}"


@functools.lru_cache(maxsize=1)
def _shipped_pixels() -> dict[str, np.ndarray]:
    if not PHOTO_PIXELS_FILE.is_file():
        return {}
    with np.load(PHOTO_PIXELS_FILE) as npz:
        return {key: npz[key] for key in npz.files}


def photo_pixels(name: str, size: int = 224, *, shipped: bool = True) -> torch.Tensor:
    """The bundled photo ``name`` resized and center-cropped: (3,size,size) uint8.

    With ``shipped`` (default) and where ``PHOTO_PIXELS_FILE`` holds them (all photos at 224 and
    64 px), the pixels recorded with the caches; otherwise :func:`resize_crop` on this machine, which
    :func:`pixel_disagreement` allows to differ by one level in a few values."""
    if name not in PHOTOS:
        raise ValueError(f"name must be one of {', '.join(PHOTOS)}; got {name!r}")
    stored = _shipped_pixels().get(photo_pixel_key(name, size)) if shipped else None
    if stored is not None:
        return torch.from_numpy(stored.copy())
    return resize_crop(load_photo(name), size)


def pixel_disagreement(reference: torch.Tensor | np.ndarray, local: torch.Tensor | np.ndarray) -> str | None:
    """Why ``local`` is not the same resize as ``reference`` up to the instruction-set rounding
    (one level in at most ``PIXEL_TOLERANCE_SHARE`` of the values), else None."""
    a = torch.as_tensor(np.asarray(reference)).to(torch.int16)
    b = torch.as_tensor(np.asarray(local)).to(torch.int16)
    if a.shape != b.shape:
        return f"shape {tuple(b.shape)} instead of {tuple(a.shape)}"
    diff = (a - b).abs()
    worst = int(diff.max())
    n_off = int((diff > 0).sum())
    if worst > PIXEL_TOLERANCE_LEVELS:
        return f"a value differs by {worst} levels (allowed: {PIXEL_TOLERANCE_LEVELS})"
    if n_off > PIXEL_TOLERANCE_SHARE * diff.numel():
        return f"{n_off} of {diff.numel()} values differ (allowed: {PIXEL_TOLERANCE_SHARE:.0e} of them)"
    return None


def load_photos(
    names: Sequence[str] | str | None = None, size: int = 224, *, shipped: bool = True
) -> tuple[torch.Tensor, list[str]]:
    """Normalized (B,3,size,size) batch of bundled photos (all, in registry order, if ``names`` is None),
    and their names.

    The pixels come from :func:`photo_pixels` (``shipped``: the recorded pixels where they exist, so
    that every machine feeds the cached experiments the same input), normalized with ImageNet's mean
    and standard deviation.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> x, names = pw.load_photos(["chelsea", "coffee"])
    >>> x.shape, names
    (torch.Size([2, 3, 224, 224]), ['chelsea', 'coffee'])
    >>> x, names = pw.load_photos(size=64)  # every bundled photo
    >>> x.shape
    torch.Size([9, 3, 64, 64])
    >>> names  # doctest: +NORMALIZE_WHITESPACE
    ['chelsea', 'coffee', 'astronaut', 'rocket', 'motorcycle_left', 'motorcycle_right', 'china',
     'flower', 'grace_hopper']
    """
    if names is None:
        names = list(PHOTOS)
    elif isinstance(names, str):
        names = [names]
    names = list(names)
    for n in names:  # validate every name before any work
        if n not in PHOTOS:
            raise ValueError(f"names must be among {', '.join(PHOTOS)}; got {n!r}")
    if not names:
        raise ValueError("names is empty")
    return torch.stack([normalize_pixels(photo_pixels(n, size, shipped=shipped)) for n in names]), names


_LAYOUT = (
    "Expected layout: a folder of ImageNet validation images (*.JPEG, *.jpg or *.png), flat "
    "(val/ILSVRC2012_val_00000001.JPEG, ...) or in class folders (val/n01440764/*.JPEG, ...), searched "
    "recursively. No package ships ImageNet; download it from image-net.org yourself."
)


def list_imagenet_val(root: str | os.PathLike | None = None) -> tuple[Path, list[str]]:
    """Resolve the ImageNet val folder and return it with its sorted relative image paths (posix)."""
    if root is None or str(root) == "":
        root = os.environ.get(IMAGENET_VAL_ENV) or None
        if root is None:
            raise FileNotFoundError(
                f"No ImageNet validation folder given: pass root=... or set the environment variable "
                f"{IMAGENET_VAL_ENV} to the folder. {_LAYOUT}"
            )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"ImageNet validation folder {str(path)!r} does not exist or is not a folder "
            f"(from root= or {IMAGENET_VAL_ENV}). {_LAYOUT}"
        )
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(
            f"ImageNet validation folder {str(path)!r} contains no *.JPEG/*.jpg/*.png images "
            f"(from root= or {IMAGENET_VAL_ENV}). {_LAYOUT}"
        )
    return path, files


def imagenet_val_problem(root: str | os.PathLike | None = None) -> str | None:
    """Why :func:`list_imagenet_val` would find no images (the folder not named, absent, or without
    images), else None. Cheap: it stops at the first image file and opens none."""
    if root is None or str(root) == "":
        root = os.environ.get(IMAGENET_VAL_ENV) or None
        if root is None:
            return f"{IMAGENET_VAL_ENV} is not set"
    path = Path(root).expanduser()
    if not path.is_dir():
        return f"{path} is not a folder"
    if not any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in path.rglob("*")):
        return f"{path} holds no *.JPEG/*.jpg/*.png images"
    return None


def _select(files: list[str], n: int | None, seed: int) -> list[str]:
    if n is None:
        return files
    if not 0 < n <= len(files):
        raise ValueError(f"n must be between 1 and {len(files)} (the number of images found); got {n}")
    idx = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
    return [files[i] for i in sorted(idx)]  # a seeded subset, kept in file-name order


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:  # convert: some ImageNet JPEGs are grayscale or CMYK
        return np.asarray(im.convert("RGB"))


def iter_imagenet_val(
    root: str | os.PathLike | None = None,
    n: int | None = None,
    *,
    seed: int = 0,
    size: int = 224,
    batch_size: int = 64,
    first: int | None = None,
) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Like :func:`load_imagenet_val`, but yields (batch, names) of at most ``batch_size`` images."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    path, files = list_imagenet_val(root)
    chosen = _select(files, n, seed)[:first]
    for start in range(0, len(chosen), batch_size):
        names = chosen[start : start + batch_size]
        yield preprocess([_read_rgb(path / f) for f in names], size=size), names


def load_imagenet_val(
    root: str | os.PathLike | None = None,
    n: int | None = None,
    *,
    seed: int = 0,
    size: int = 224,
    first: int | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """Normalized batch of ``n`` images (all if None) drawn with ``seed`` from a local ImageNet val folder.

    ``root`` defaults to the environment variable PATHLIB_PW_IMAGENET_VAL. Returns the batch and the
    image paths relative to ``root``, in sorted order; ``first`` keeps only the first of them (the
    same images as in the full draw).

    Examples
    --------
    The validation images are not shipped (the folder of 50,000 images, one subfolder per class):

    >>> import pathlib_pw as pw
    >>> x, paths = pw.load_imagenet_val("/data/imagenet/val", 16, seed=0)  # doctest: +SKIP
    >>> x.shape  # doctest: +SKIP
    torch.Size([16, 3, 224, 224])
    """
    batches, names = [], []
    for x, nm in iter_imagenet_val(root, n, seed=seed, size=size, batch_size=256, first=first):
        batches.append(x)
        names.extend(nm)
    return torch.cat(batches), names


ImageSource = Callable[..., tuple[torch.Tensor, list[str]]]
IMAGE_SOURCES: dict[str, ImageSource] = {}
# the sources that read the local ImageNet validation folder (:mod:`pathlib_pw.experiments.requirements`)
IMAGENET_VAL_SOURCES: set[str] = set()
# built-in sources defined in modules that ``import pathlib_pw`` does not load (a model trained on the
# fly, an experiment's own source): imported on first use, so no source depends on import order
LAZY_SOURCES: dict[str, str] = {"digits_test": "pathlib_pw.digits", "imagenet_val_named": "pathlib_pw.experiments.decoding"}


def image_source(name: str) -> ImageSource:
    """The registered image source ``name``, importing its module first for a built-in lazy one
    (``LAZY_SOURCES``); ValueError naming the known sources otherwise."""
    if name not in IMAGE_SOURCES and name in LAZY_SOURCES:
        importlib.import_module(LAZY_SOURCES[name])
    if name not in IMAGE_SOURCES:
        raise ValueError(f"source must be one of {sorted(set(IMAGE_SOURCES) | set(LAZY_SOURCES))}, got {name!r}")
    return IMAGE_SOURCES[name]


def register_image_source(name: str, *, imagenet_val: bool = False) -> Callable[[ImageSource], ImageSource]:
    """Decorator: make ``fn(images, n_images, size, seed, first) -> (x, names)`` the image source ``name``.

    ``images`` names images (for sources of named images), ``n_images`` how many to draw with ``seed``
    (for sources that draw), ``first`` keeps only the first of them (None: all). ``imagenet_val``: the
    source reads the local ImageNet validation folder (``PATHLIB_PW_IMAGENET_VAL``), which the
    preflight check then requires. A new experiment registers its source from its own module.
    """

    def register(fn: ImageSource) -> ImageSource:
        if name in IMAGE_SOURCES and IMAGE_SOURCES[name] is not fn:
            raise ValueError(f"an image source named {name!r} is already registered")
        IMAGE_SOURCES[name] = fn
        if imagenet_val:
            IMAGENET_VAL_SOURCES.add(name)
        return fn

    return register


def load_images(
    source: str,
    images: Sequence[str] = (),
    n_images: int = 0,
    size: int = 224,
    seed: int = 0,
    first: int | None = None,
    *,
    offset: int = 0,
) -> tuple[torch.Tensor, list[str]]:
    """Normalized images and their names from the registered image ``source`` (``IMAGE_SOURCES``):
    of the source's list, ``offset`` skipped, then the first ``first`` (all when None)."""
    load = image_source(source)
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, got {offset!r}")
    kwargs = {"images": tuple(images), "n_images": n_images, "size": size, "seed": seed}
    if offset == 0:
        return load(**kwargs, first=first)
    if "offset" in inspect.signature(load).parameters:
        return load(**kwargs, first=first, offset=offset)
    # a source without offset support: load the prefix and drop the skipped images
    x, names = load(**kwargs, first=None if first is None else offset + first)
    return x[offset:], names[offset:]


def _window(items: Sequence[str], first: int | None, offset: int) -> list[str]:
    return list(items[offset:] if first is None else items[offset : offset + first])


@register_image_source("photos")
def _photos(
    images: tuple[str, ...], n_images: int, size: int, seed: int, first: int | None, offset: int = 0
) -> tuple[torch.Tensor, list[str]]:
    return load_photos(_window(images, first, offset), size=size)


def imagenet_val_files(images: Sequence[str], root: str | os.PathLike | None = None) -> tuple[Path, list[str]]:
    """The folder and the files of explicitly named validation images.

    Each of ``images`` is a path relative to the folder or a validation index: a decimal string,
    0-based, into the sorted relative paths (with one folder per class in sorted WordNet-id order,
    the order of torchvision's ``ImageFolder``, whose indices the authors' scripts use).
    """
    path, files = list_imagenet_val(root)
    chosen = []
    for name in images:
        if name.isdigit():
            if int(name) >= len(files):
                raise ValueError(f"validation index {name} is out of range: the folder holds {len(files)} images")
            chosen.append(files[int(name)])
        elif name in files:
            chosen.append(name)
        else:
            raise ValueError(f"image {name!r} is neither a validation index nor an image of {str(path)!r}")
    return path, chosen


@register_image_source("imagenet_val", imagenet_val=True)
def _imagenet_val(
    images: tuple[str, ...], n_images: int, size: int, seed: int, first: int | None, offset: int = 0
) -> tuple[torch.Tensor, list[str]]:
    if images:  # named images or validation indices (the authors' fixed figure images)
        path, chosen = imagenet_val_files(images)
        chosen = _window(chosen, first, offset)
    else:
        path, files = list_imagenet_val()
        chosen = _window(_select(files, n_images, seed), first, offset)
    if not chosen:
        raise ValueError(f"no images left after offset={offset} and first={first}")
    return preprocess([_read_rgb(path / f) for f in chosen], size=size), chosen


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled digits: x (1797,1,8,8) float32 in [0,1] and y (1797,) int64 labels 0-9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    return x, torch.from_numpy(d.target.astype(np.int64))
