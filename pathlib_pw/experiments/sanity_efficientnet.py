"""The cascading and independent randomization checks on a second architecture, EfficientNet-Lite0
(an extension: the authors ran ResNet50 only). Same code and metrics as :mod:`.sanity`; to keep the
CPU cost down the maps are measured after a subset of the cascade's stages (every stage is still
randomized on the way down)."""

from __future__ import annotations

from pathlib_pw.experiments.sanity import (
    PER_IMAGE,
    SHARD_BY_IMAGE,
    TOLERANCES,
    Config,
    cached_part,
    run,
    verify_subset,
)
from pathlib_pw.runner.contract import Profile
from pathlib_pw.runner.inputs import Inputs

__all__ = ["SHARD_BY_IMAGE", "PER_IMAGE", "TOLERANCES", "Config", "cached_part", "config", "run", "verify_subset"]

MEASURE_AT = ("classifier", "head", "block_12", "block_9", "block_6", "block_3", "block_0", "stem")
EXAMPLE_STAGES = ("original", "classifier", "head", "block_12", "block_6", "stem")


def config(profile: Profile) -> Config:
    if profile == "smoke":
        return Config(
            inputs=Inputs(model="efficientnet_lite0", images=("chelsea",), size=64),
            measure_at=MEASURE_AT,
            example_stages=EXAMPLE_STAGES,
            independent=("classifier",),
            example_images=1,
        )
    return Config(
        inputs=Inputs(model="efficientnet_lite0", images=("chelsea", "coffee")),
        measure_at=MEASURE_AT,
        example_stages=EXAMPLE_STAGES,
        independent=("classifier", "stem"),
    )
