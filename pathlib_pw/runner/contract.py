"""The experiment contract: what a module under :mod:`pathlib_pw.experiments` provides, and the
defaults of its optional parts.

An experiment module has a frozen-dataclass ``Config`` with an ``inputs``
(:class:`~pathlib_pw.runner.inputs.Inputs`) field, ``config(profile)``, ``run(config, device,
progress) -> arrays`` and ``PER_IMAGE`` (the arrays whose first axis is the image). Optional:
``subset(config, n)`` (default: the first ``n`` images), ``verify_subset(config, n)`` (what ``verify``
recomputes; default ``subset``), ``cached_part(arrays, part)`` (the slices of the full arrays that the
part recomputes; default: the first images of the per-image arrays), ``recorded_images(config, n)``
(the image keys whose threshold decisions a run records for ``verify``; default ``range(n)``),
``image_part(config, image)`` (what ``verify`` recomputes of image number ``image``; default
``verify_subset(config, 1)`` moved to that image), ``RECORD_EVERY_IMAGE`` (default True: a cache records
the decisions of every image's part, so that ``verify`` can recompute any image on any machine; False:
the first image's only, and then ``unrecorded_tolerances(cached, config)`` is required: the elementwise
allowances, measured, that an image recomputed with its decisions made afresh adds to the rules),
``TOLERANCES`` and ``tolerances(cached, fresh, replay)`` (:mod:`pathlib_pw.runner.verification`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal, Protocol

import numpy as np

from pathlib_pw.criteria.checks import recorded_by_experiment
from pathlib_pw.runner.verification import Tolerance

Profile = Literal["smoke", "book", "paper"]
PROFILES: tuple[Profile, ...] = ("smoke", "book", "paper")
Arrays = dict[str, np.ndarray]


class Experiment(Protocol):
    """The required part of an experiment module."""

    PER_IMAGE: set[str]

    def config(self, profile: Profile) -> Any: ...

    def run(self, config: Any, device: str = "cpu", progress: bool = True) -> Arrays: ...


def first_images(config: Any, n: int) -> Any:
    """The configuration restricted to its first ``n`` images."""
    return dataclasses.replace(config, inputs=config.inputs.restricted(n))


def image_count(config: Any) -> int:
    """How many images a configuration runs on."""
    inputs = config.inputs
    count = (len(inputs.images) if inputs.source == "photos" else inputs.n_images) - inputs.offset
    return count if inputs.first is None else min(count, inputs.first)


def unit_count(config: Any) -> int:
    """How many parts ``verify`` can recompute one by one: the images, or 1 for an experiment whose
    result is not per image (ROAR's training runs)."""
    return image_count(config) if hasattr(config, "inputs") else 1


def image_slice(arrays: Mapping[str, np.ndarray], per_image: set[str], image: int) -> Arrays:
    """The arrays of image number ``image`` alone: the per-image arrays' row ``image`` (kept as a batch
    of one), the others whole."""
    return {k: (v[image : image + 1] if k in per_image else v) for k, v in arrays.items()}


@dataclasses.dataclass(frozen=True)
class Parts:
    """An experiment module with its optional parts filled in by the defaults."""

    name: str
    module: ModuleType
    config: Callable[[Profile], Any]
    run: Callable[..., Arrays]
    subset: Callable[[Any, int], Any]
    verify_subset: Callable[[Any, int], Any]
    cached_part: Callable[[Mapping[str, np.ndarray], Any], Arrays]
    recorded_images: Callable[[Any, int], Sequence[object]]
    image_part: Callable[[Any, int], Any]
    record_every_image: bool
    rules: Mapping[str, Tolerance]
    unrecorded_tolerances: Callable[[Mapping[str, np.ndarray], Any], Mapping[str, np.ndarray]]
    tolerances: Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray], Any], Mapping[str, np.ndarray]]


def parts(name: str, module: ModuleType) -> Parts:
    """``module``'s parts, the optional ones defaulted; TypeError naming what a module lacks."""
    missing = [attr for attr in ("config", "run", "PER_IMAGE") if not hasattr(module, attr)]
    if missing:
        raise TypeError(f"experiment module {module.__name__} lacks {missing} (see pathlib_pw.runner.contract)")
    every = getattr(module, "RECORD_EVERY_IMAGE", True)
    if not every and not hasattr(module, "unrecorded_tolerances"):
        raise TypeError(
            f"experiment module {module.__name__} records its first image only (RECORD_EVERY_IMAGE = False) but does "
            f"not say how its other images compare when recomputed without records (unrecorded_tolerances)"
        )
    per_image = set(module.PER_IMAGE)

    def cached_part(arrays: Mapping[str, np.ndarray], part: Any) -> Arrays:
        n = image_count(part)
        return {k: (v[:n] if k in per_image else v) for k, v in arrays.items()}

    subset = getattr(module, "subset", first_images)
    verify_subset = getattr(module, "verify_subset", subset)

    def image_part(config: Any, image: int) -> Any:
        part = verify_subset(config, 1)
        if unit_count(config) == 1:
            return part
        return dataclasses.replace(part, inputs=config.inputs.window(image, image + 1))

    return Parts(
        name=name,
        module=module,
        config=module.config,
        run=_recording(module.run),
        subset=subset,
        verify_subset=verify_subset,
        cached_part=getattr(module, "cached_part", cached_part),
        recorded_images=getattr(module, "recorded_images", lambda config, n: range(n)),
        image_part=getattr(module, "image_part", image_part),
        record_every_image=every,
        rules=getattr(module, "TOLERANCES", {}),
        unrecorded_tolerances=getattr(module, "unrecorded_tolerances", lambda cached, config: {}),
        tolerances=getattr(module, "tolerances", lambda cached, fresh, replay: {}),
    )


def _recording(run: Callable[..., Arrays]) -> Callable[..., Arrays]:
    """``run`` inside :func:`~pathlib_pw.criteria.checks.recorded_by_experiment`: an experiment records
    realized sparsity and empty pathways as results, so extracting them neither warns nor raises."""

    @functools.wraps(run)
    def recording(*args: Any, **kwargs: Any) -> Arrays:
        with recorded_by_experiment():
            return run(*args, **kwargs)

    return recording
