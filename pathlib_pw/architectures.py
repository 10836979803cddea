"""What the package knows about each network architecture, one record per architecture, in one place.

An :class:`Architecture` is matched by class name along a model's MRO (so a subclass inherits its
parent's record) and holds the layer Grad-CAM explains by default, the top-down randomization stages
of the sanity checks (:mod:`pathlib_pw.sanity`), the class names of its outputs and the models
:func:`pathlib_pw.models.load_model` builds with it. Adding an architecture is one call::

    register_architecture("MyNet", gradcam_layer="block4", stages=[("fc", ("fc",)), ("block4", ("block4",))],
                          class_names=["cat", "dog"], models={"my_net": my_loader})

after which ``load_model("my_net")``, ``attribute(model, x, "gradcam")`` and
``randomization_stages(model)`` work for it. The built-in architectures are registered when this
module is imported, which importing :mod:`pathlib_pw` does; a built-in model that is trained on the fly
(``digits_cnn``) is registered as a lazy loader that imports its module only when it is loaded, so it
is known before that module is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence

import torch
from torch import nn

from pathlib_pw.imagenet import imagenet_class_names
from pathlib_pw.models import ModelLoader, model_names, register_model

Stage = tuple[str, tuple[str, ...]]
StagesFn = Callable[[nn.Module], list[Stage]]
ClassNamesFn = Callable[[], list[str]]

__all__ = [
    "ARCHITECTURES",
    "GRADCAM_LAYERS",
    "Architecture",
    "Stage",
    "architecture_of",
    "class_names",
    "gradcam_layer_of",
    "register_architecture",
]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One architecture's record; ``None`` where the package has no default for it.

    ``name`` is the model class's ``__name__``; ``gradcam_layer`` the submodule name Grad-CAM explains;
    ``stages(model)`` the sanity checks' (label, module names) stages from the top of the network down;
    ``class_names()`` the output classes' names in index order; ``models`` the model names registered
    with it (the built-in ImageNet models are :mod:`pathlib_pw.models`' own).
    """

    name: str
    gradcam_layer: str | None = None
    stages: StagesFn | None = None
    class_names: ClassNamesFn | None = None
    models: tuple[str, ...] = ()


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    name: str | type,
    *,
    gradcam_layer: str | None = None,
    stages: Sequence[Stage] | StagesFn | None = None,
    class_names: Sequence[str] | ClassNamesFn | None = None,
    models: Mapping[str, ModelLoader] | None = None,
    replace: bool = False,
) -> Architecture:
    """Record what the package knows about architecture ``name`` (a class or its ``__name__``); returns the record.

    ``gradcam_layer`` is the submodule Grad-CAM explains by default (e.g. the last conv block).
    ``stages`` are the sanity checks' randomization stages, top of the network first: a list of
    (label, module names) pairs, or a function ``model -> stages`` for architectures whose depth
    varies. ``class_names`` are the output classes' names in index order, or a function returning them
    (read on demand). ``models`` maps model names to loaders ``(pretrained, seed, device) -> model``,
    registered with :func:`pathlib_pw.models.register_model`. ``replace=True`` replaces an existing
    record of another content (its models stay registered).

    Registering an equal record again is a no-op (a notebook cell re-run).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import pathlib_pw as pw
    >>> from pathlib_pw.architectures import register_architecture
    >>> from pathlib_pw.sanity import randomization_stages
    >>> class MyNet(nn.Sequential):
    ...     def __init__(self):
    ...         super().__init__(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    >>> _ = register_architecture(MyNet, gradcam_layer="1", stages=[("classifier", ["4"]), ("conv", ["0"])])
    >>> pw.saliency(MyNet().eval(), torch.rand(1, 3, 8, 8), "gradcam").shape  # Grad-CAM at module "1"
    torch.Size([1, 8, 8])
    >>> randomization_stages(MyNet())  # what the sanity checks randomize, top first
    [('classifier', ('4',)), ('conv', ('0',))]
    """
    if isinstance(name, type):
        name = name.__name__
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a class or a non-empty class name, got {name!r}")
    if gradcam_layer is not None and not isinstance(gradcam_layer, str):
        raise ValueError(f"gradcam_layer must be a submodule name (str) or None, got {gradcam_layer!r}")
    loaders = dict(models or {})
    for model_name, loader in loaders.items():
        if not isinstance(model_name, str) or not callable(loader):
            raise ValueError(f"models must map model names to loaders (pretrained, seed, device) -> model, got {model_name!r}")
    record = Architecture(name, gradcam_layer, _stages_fn(stages), _class_names_fn(class_names), tuple(loaders))
    old = ARCHITECTURES.get(name)
    if old is not None and old != record and not replace:
        raise ValueError(f"architecture {name!r} is already registered with another record; pass replace=True to replace it")
    known = old.models if old else ()
    taken = [m for m in loaders if m in model_names() and m not in known]
    if taken:
        raise ValueError(f"models: a model named {taken[0]!r} is already registered")
    for model_name, loader in loaders.items():
        if model_name not in known:
            register_model(model_name, loader)
    ARCHITECTURES[name] = record
    return record


def _stages_fn(stages: Sequence[Stage] | StagesFn | None) -> StagesFn | None:
    if stages is None or callable(stages):
        return stages
    fixed = list(stages)
    for stage in fixed:
        if not (isinstance(stage, tuple) and len(stage) == 2 and isinstance(stage[0], str)):
            raise ValueError(f"stages must be (label, module names) pairs or a function model -> stages, got {stage!r}")
    return _FixedStages(tuple((label, tuple(names)) for label, names in fixed))


def _class_names_fn(names: Sequence[str] | ClassNamesFn | None) -> ClassNamesFn | None:
    if names is None or callable(names):
        return names
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"class_names must be a sequence of str or a function returning one, got {names!r}")
    return _FixedNames(tuple(names))


@dataclasses.dataclass(frozen=True)
class _FixedStages:
    """Stages that do not depend on the model instance (comparable, so a re-registration is a no-op)."""

    stages: tuple[Stage, ...]

    def __call__(self, model: nn.Module) -> list[Stage]:
        return list(self.stages)


@dataclasses.dataclass(frozen=True)
class _FixedNames:
    names: tuple[str, ...]

    def __call__(self) -> list[str]:
        return list(self.names)


def architecture_of(model: nn.Module) -> Architecture | None:
    """The record of the first class along ``type(model).__mro__`` that has one, else None."""
    for cls in type(model).__mro__:
        if cls.__name__ in ARCHITECTURES:
            return ARCHITECTURES[cls.__name__]
    return None


def _first_with(model: nn.Module, field: str) -> Architecture | None:
    """The record of the first class along ``type(model).__mro__`` whose ``field`` is set."""
    for cls in type(model).__mro__:
        record = ARCHITECTURES.get(cls.__name__)
        if record is not None and getattr(record, field) is not None:
            return record
    return None


def class_names(model: nn.Module) -> list[str] | None:
    """The names of ``model``'s output classes in index order, where its architecture's record has them."""
    record = _first_with(model, "class_names")
    return None if record is None or record.class_names is None else record.class_names()


def gradcam_layer_of(model: nn.Module) -> str | None:
    """The default Grad-CAM layer of ``model`` (a submodule name), where its architecture's record, or
    that of a class it derives from, has one."""
    record = _first_with(model, "gradcam_layer")
    return None if record is None else record.gradcam_layer


class _GradcamLayers(MutableMapping[str, str]):
    """The Grad-CAM layers of the records, as the dict ``{class name: layer}`` it used to be.

    A view, not a copy: setting an item sets (or creates) the record's ``gradcam_layer``, deleting
    one clears it (and drops a record left empty), so old code that edits the dict edits the records.
    """

    def __getitem__(self, name: str) -> str:
        record = ARCHITECTURES.get(name)
        if record is None or record.gradcam_layer is None:
            raise KeyError(name)
        return record.gradcam_layer

    def __setitem__(self, name: str, layer: str) -> None:
        if not isinstance(layer, str):
            raise ValueError(f"layer must be a submodule name (str), got {layer!r}")
        record = ARCHITECTURES.get(name)
        ARCHITECTURES[name] = Architecture(name, layer) if record is None else dataclasses.replace(record, gradcam_layer=layer)

    def __delitem__(self, name: str) -> None:
        record = ARCHITECTURES.get(name)
        if record is None or record.gradcam_layer is None:
            raise KeyError(name)
        cleared = dataclasses.replace(record, gradcam_layer=None)
        if cleared == Architecture(name):
            del ARCHITECTURES[name]
        else:
            ARCHITECTURES[name] = cleared

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, record in ARCHITECTURES.items() if record.gradcam_layer is not None])

    def __len__(self) -> int:
        return sum(record.gradcam_layer is not None for record in ARCHITECTURES.values())

    def __repr__(self) -> str:
        return repr(dict(self))


# {architecture class name: default Grad-CAM layer}, backed by ARCHITECTURES
GRADCAM_LAYERS: MutableMapping[str, str] = _GradcamLayers()


def _resnet_stages(model: nn.Module) -> list[Stage]:
    """The authors' 19 stages on ResNet50 (without "original"): fc, each bottleneck from the top, conv1."""
    layers = ("layer1", "layer2", "layer3", "layer4")
    blocks = [f"{layer}.{i}" for layer in layers for i in range(len(getattr(model, layer)))]
    bottlenecks: list[Stage] = [(f"bottleneck_{i}", (name,)) for i, name in reversed(list(enumerate(blocks)))]
    return [("linear", ("fc",))] + bottlenecks + [("conv1", ("conv1", "bn1"))]


def _mobilenet_v2_stages(model: nn.Module) -> list[Stage]:
    """Classifier, the last 1x1 conv, each inverted-residual block from the top, the stem."""
    features: nn.Sequential = model.features  # type: ignore[assignment]
    last = len(features) - 1
    blocks: list[Stage] = [(f"block_{i - 1}", (f"features.{i}",)) for i in range(last - 1, 0, -1)]
    head: list[Stage] = [("classifier", ("classifier",)), ("last_conv", (f"features.{last}",))]
    return head + blocks + [("stem", ("features.0",))]


def _efficientnet_lite0_stages(model: nn.Module) -> list[Stage]:
    """Classifier, head conv, each MBConv block from the top, stem."""
    blocks_module: nn.ModuleList = model.net._blocks  # type: ignore[union-attr,assignment]
    count = len(blocks_module)
    blocks = [(f"block_{i}", (f"net._blocks.{i}",)) for i in reversed(range(count))]
    return (
        [("classifier", ("net._fc",)), ("head", ("net._conv_head", "net._bn1"))]
        + blocks
        + [("stem", ("net._conv_stem", "net._bn0"))]
    )


def _lazy_loader(module: str, name: str) -> ModelLoader:
    """A loader that imports ``module`` only when the model is loaded (a model trained on the fly)."""

    def load(pretrained: bool, seed: int, device: str | torch.device) -> nn.Module:
        loader: ModelLoader = getattr(importlib.import_module(module), name)
        return loader(pretrained, seed, device)

    load.__doc__ = f"{module}.{name}(pretrained, seed, device), imported on first use."
    return load


DIGITS_CLASS_NAMES = tuple(str(d) for d in range(10))
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _register_builtins() -> None:
    register_architecture("VGG", gradcam_layer="features", class_names=imagenet_class_names)
    register_architecture("AlexNet", gradcam_layer="features", class_names=imagenet_class_names)
    register_architecture("ResNet", gradcam_layer="layer4", stages=_resnet_stages, class_names=imagenet_class_names)
    register_architecture("MobileNetV2", gradcam_layer="features", stages=_mobilenet_v2_stages, class_names=imagenet_class_names)
    # the last MBConv block (its head rectifier module is shared with the stem)
    register_architecture(
        "EfficientNetLite0", gradcam_layer="net._blocks.15", stages=_efficientnet_lite0_stages, class_names=imagenet_class_names
    )
    # Grad-CAM at the last conv block, as for the ImageNet models
    register_architecture(
        "DigitsCNN",
        gradcam_layer="relu3",
        class_names=DIGITS_CLASS_NAMES,
        models={"digits_cnn": _lazy_loader("pathlib_pw.digits", "load_digits_cnn")},
    )
    register_architecture("ResNet8", gradcam_layer="layer3", class_names=CIFAR10_CLASS_NAMES)  # pathlib_pw.cifar10


_register_builtins()
