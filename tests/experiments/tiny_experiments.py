"""Per-image experiments at toy size for the sharding tests: the ``paths`` and ``sanity`` computations
on three bundled photos at 32 px with few, cheap settings. Importable by the test process and by the
scripts the tests start under torchrun (``register()`` adds them to the experiment registry)."""

from __future__ import annotations

import dataclasses
import types

from pathlib_pw import experiments
from pathlib_pw.experiments import paths, sanity
from pathlib_pw.experiments.inputs import ALL_PHOTOS, Inputs

INPUTS = Inputs(images=ALL_PHOTOS[:3], size=32)


def _paths_config(profile: str) -> paths.Config:
    # Random draws one seed per image: a chunk that numbered its images from 0 would draw other paths
    criteria = tuple(c for c in paths.paper_criteria() if c.label in ("NeuronMCT", "Random"))
    return paths.Config(inputs=INPUTS, overlap_sparsities=(90.0,), sweep_sparsities=(50.0, 90.0), criteria=criteria)


def _sanity_config(profile: str) -> sanity.Config:
    return sanity.Config(
        inputs=INPUTS,
        methods=("Gradients", "NeuronMCT"),
        measure_at=("classifier", "stem"),
        independent=("classifier",),
        example_stages=("original", "classifier"),
        example_images=2,  # the first two images of the run, in the first chunk or spread over two
    )


def _module(name: str, base: types.ModuleType, config: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for attr in ("run", "PER_IMAGE", "TOLERANCES", "tolerances", "verify_subset", "cached_part", "SHARD_BY_IMAGE"):
        if hasattr(base, attr):
            setattr(module, attr, getattr(base, attr))
    module.config = config  # type: ignore[attr-defined]
    return module


MODULES = {
    "tiny_paths": _module("tiny_paths", paths, _paths_config),
    "tiny_sanity": _module("tiny_sanity", sanity, _sanity_config),
}


def register() -> None:
    for name, module in MODULES.items():
        if name not in experiments.EXPERIMENTS:
            experiments.register(name, module)


def config(name: str) -> object:
    return dataclasses.replace(MODULES[name].config("smoke"))
