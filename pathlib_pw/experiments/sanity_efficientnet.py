"""The cascading and independent randomization checks on a second architecture, EfficientNet-Lite0
(an extension: the authors ran ResNet50 only). Same code and metrics as :mod:`.sanity`; to keep the
CPU cost down the maps are measured after a subset of the cascade's stages (every stage is still
randomized on the way down)."""

from __future__ import annotations

from pathlib_pw.experiments.sanity import PER_IMAGE, TOLERANCES, Config, cached_part, run, subset, verify_subset

__all__ = ["PER_IMAGE", "TOLERANCES", "Config", "cached_part", "config", "run", "subset", "verify_subset"]

MEASURE_AT = ("classifier", "head", "block_12", "block_9", "block_6", "block_3", "block_0", "stem")


def config(profile: str) -> Config:
    common = dict(
        model="efficientnet_lite0",
        measure_at=MEASURE_AT,
        example_stages=("original", "classifier", "head", "block_12", "block_6", "stem"),
    )
    if profile == "smoke":
        return Config(**common, images=("chelsea",), size=64, independent=("classifier",), example_images=1)
    return Config(**common, images=("chelsea", "coffee"), independent=("classifier", "stem"))
