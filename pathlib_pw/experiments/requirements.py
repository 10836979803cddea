"""Preflight: every local input that experiments need under a profile, checked before any work.

The needs come from each experiment's configuration (``get_config(name, profile)``), walked
recursively through its dataclasses, tuples and mappings:

- every string naming a built-in model (:data:`pathlib_pw.models.MODEL_NAMES`), wherever it sits
  (``Inputs.model``, but also ``qualitative``'s ``(model, sparsity)`` settings), needs that model's
  ImageNet weights (:func:`pathlib_pw.models.weights_file`); models added with
  :func:`~pathlib_pw.models.register_model` bring their own weights and need nothing here;
- every :class:`~pathlib_pw.runner.inputs.Inputs` whose image source reads the local ImageNet
  validation folder (:data:`pathlib_pw.data.IMAGENET_VAL_SOURCES`) needs that folder;
- every configuration with ``dataset == "cifar10"`` needs the CIFAR-10 python batches (in its
  ``data_folder``, else the folder of ``PATHLIB_PW_CIFAR10``).

Where the walk cannot see a need, :data:`EXTRA_NEEDS` adds it per experiment. Nothing heavy
happens: no model is built, no weights file is hashed or loaded, no image is opened.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

from pathlib_pw import cifar10, data, models
from pathlib_pw.runner.contract import PROFILES, Profile
from pathlib_pw.runner.inputs import Inputs

__all__ = ["EXTRA_NEEDS", "Requirement", "check", "missing", "needed", "needs_of"]

IMAGENET_VAL_FLAG = "--imagenet-val DIR"
CIFAR10_FLAG = "--cifar10 DIR"
_DISPLAY = {
    "vgg16": "VGG16",
    "resnet50": "ResNet50",
    "resnet18": "ResNet18",
    "alexnet": "AlexNet",
    "mobilenet_v2": "MobileNetV2",
    "efficientnet_lite0": "EfficientNet-Lite0",
}


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One local input: ``what`` it is, ``where`` it is expected, ``how`` to provide it, the
    ``experiments`` that need it, and whether it is ``present``. ``key`` names it for code
    (``weights:vgg16``, ``imagenet_val``, ``cifar10``)."""

    key: str
    what: str
    where: str
    how: str
    experiments: tuple[str, ...] = ()
    present: bool = False

    def text(self) -> str:
        return (
            f"- {self.what}, needed by {', '.join(self.experiments)}\n"
            f"    expected: {self.where}\n"
            f"    to provide: {self.how}"
        )


def _weights(name: str) -> Requirement:
    where, how = models.weights_hint(name)
    return Requirement(
        key=f"weights:{name}",
        what=f"{_DISPLAY.get(name, name)} ImageNet weights ({models.weights_file_name(name)})",
        where=where,
        how=how,
        present=models.weights_file(name) is not None,
    )


def _imagenet_val() -> Requirement:
    problem = data.imagenet_val_problem()
    state = f"now {problem}" if problem else f"found: {os.environ.get(data.IMAGENET_VAL_ENV)}"
    return Requirement(
        key="imagenet_val",
        what="ImageNet validation images (a folder of *.JPEG, one subfolder per class)",
        where=f"the folder given by {IMAGENET_VAL_FLAG} or the environment variable {data.IMAGENET_VAL_ENV}; {state}",
        how="unpack ILSVRC2012_img_val.tar from image-net.org (registration required) into one subfolder per class, "
        "the layout of torchvision's ImageFolder whose order the authors' validation indices follow; "
        "nothing is downloaded here",
        present=problem is None,
    )


def _cifar10(folder: str | None) -> Requirement:
    found = cifar10.find_cifar10_folder(folder)
    batches = ", ".join(cifar10.TRAIN_FILES + cifar10.TEST_FILES)
    if folder is not None:
        where = f"{folder} (the configuration's data_folder), or its cifar-10-batches-py subfolder"
    else:
        named = os.environ.get(cifar10.CIFAR10_ENV)
        state = (
            f"found: {found}"
            if found
            else (f"now {named}, which lacks them" if named else f"now {cifar10.CIFAR10_ENV} is not set")
        )
        where = f"the folder given by {CIFAR10_FLAG} or the environment variable {cifar10.CIFAR10_ENV}; {state}"
    return Requirement(
        key="cifar10" if folder is None else f"cifar10:{folder}",
        what=f"CIFAR-10 python batches ({batches})",
        where=where,
        how="unpack cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and name its "
        "cifar-10-batches-py folder (or the folder above it); nothing is downloaded here",
        present=found is not None,
    )


def _walk(value: Any) -> Iterator[Any]:
    """``value`` and everything inside it: dataclass fields, sequence items, mapping keys and values."""
    yield value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _walk(getattr(value, f.name))
    elif isinstance(value, (tuple, list, set, frozenset)):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(k)
            yield from _walk(v)


def _config_needs(config: Any) -> list[Callable[[], Requirement]]:
    """The requirements the configuration names, in the order first seen (each once)."""
    needs: dict[str, Callable[[], Requirement]] = {}
    imagenet_sources = data.IMAGENET_VAL_SOURCES
    for value in _walk(config):
        if isinstance(value, str) and value in models.MODEL_NAMES:
            needs.setdefault(f"weights:{value}", functools.partial(_weights, value))
        elif isinstance(value, Inputs) and value.source in imagenet_sources:
            needs.setdefault("imagenet_val", _imagenet_val)
        elif dataclasses.is_dataclass(value) and getattr(value, "dataset", None) == "cifar10":
            folder = getattr(value, "data_folder", None)
            needs.setdefault(f"cifar10:{folder}", functools.partial(_cifar10, folder))
    return list(needs.values())


# Needs the configuration walk cannot see, per experiment: (experiment) -> config -> requirements.
# Empty while every need shows in the configurations.
EXTRA_NEEDS: dict[str, Callable[[Any], list[Requirement]]] = {}


def _experiments(experiments: Sequence[str]) -> list[str]:
    return [experiments] if isinstance(experiments, str) else list(dict.fromkeys(experiments))


def needs_of(config: Any) -> list[Requirement]:
    """What one experiment configuration needs (present or not), each once; ``experiments`` left empty."""
    return [need() for need in _config_needs(config)]


def needed(experiments: Sequence[str], profile: str) -> list[Requirement]:
    """Every local input ``experiments`` need under ``profile``, present or not, each once (with the
    experiments that need it), in the order the experiments name them."""
    from pathlib_pw import experiments as registry  # the package imports the experiment modules

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    merged: dict[str, Requirement] = {}
    for name in _experiments(experiments):
        config = registry.get_config(name, cast(Profile, profile))
        found = needs_of(config)
        if name in EXTRA_NEEDS:
            found += EXTRA_NEEDS[name](config)
        for requirement in found:
            known = merged.get(requirement.key, requirement)
            merged[requirement.key] = dataclasses.replace(known, experiments=(*known.experiments, name))
    return list(merged.values())


def missing(experiments: Sequence[str], profile: str) -> list[Requirement]:
    """The local inputs ``experiments`` need under ``profile`` that are not there, each once."""
    return [r for r in needed(experiments, profile) if not r.present]


def check(experiments: Sequence[str], profile: str) -> None:
    """Raise FileNotFoundError listing everything :func:`missing` finds (what, for which experiments,
    where it is expected, how to provide it); return quietly when nothing is missing."""
    absent = missing(experiments, profile)
    if absent:
        names = ", ".join(_experiments(experiments))
        raise FileNotFoundError(
            f"the {profile} profile of {names} needs {len(absent)} local input(s) that are missing "
            "(nothing was computed):\n" + "\n".join(r.text() for r in absent)
        )
