"""Per-image experiments at toy size for the sharding tests: the ``paths`` computation on VGG16 and
the ``sanity`` computation on ResNet50, both with seeded random weights (the paper's architectures,
no weight files needed), on three bundled photos at 32 px with few, cheap settings. Importable by the
test process and by the scripts the tests start under torchrun (``register()`` adds them, and the
two random-init models, to the registries)."""

from __future__ import annotations

import dataclasses
import types

from pathlib_pw import experiments, models
from pathlib_pw.experiments import paths, sanity
from pathlib_pw.runner.inputs import ALL_PHOTOS, Inputs

RANDOM_INIT = {"vgg16_random_init": "vgg16", "resnet50_random_init": "resnet50"}
INPUTS = Inputs(images=ALL_PHOTOS[:3], size=32)


def _random_init(architecture: str) -> models.ModelLoader:
    def load(pretrained: bool, seed: int, device: object) -> object:
        return models.load_model(architecture, pretrained=False, seed=seed, device=device)

    return load


def register_models() -> None:
    for name, architecture in RANDOM_INIT.items():
        if name not in models.model_names():
            models.register_model(name, _random_init(architecture))


def _paths_config(profile: str) -> paths.Config:
    # Random draws one seed per image: a chunk that numbered its images from 0 would draw other paths
    criteria = tuple(c for c in paths.paper_criteria() if c.label in ("NeuronMCT", "Random"))
    return paths.Config(
        inputs=dataclasses.replace(INPUTS, model="vgg16_random_init"),
        overlap_sparsities=(90.0,),
        sweep_sparsities=(50.0, 90.0),
        criteria=criteria,
    )


def _sanity_config(profile: str) -> sanity.Config:
    return sanity.Config(
        inputs=dataclasses.replace(INPUTS, model="resnet50_random_init"),
        methods=("Gradients", "NeuronMCT"),
        measure_at=("linear", "conv1"),
        independent=("linear",),
        example_stages=("original", "linear"),
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
    register_models()
    for name, module in MODULES.items():
        if name not in experiments.EXPERIMENTS:
            experiments.register(name, module)


def config(name: str) -> object:
    return dataclasses.replace(MODULES[name].config("smoke"))
