"""How much of the class the removal's shape gives away: :mod:`.roar`'s sweep with models retrained on
the mask alone (1 where a pixel is kept, 0 where removed; :func:`pathlib_pw.roar.mask_only`), at two
shares. An extension: Rong et al. (ICML 2022) argue that the mean fill leaks the class through the
mask's shape; this measures that leak per method on the book's data. Same maps, code, checks and cache
rules as :mod:`.roar`."""

from __future__ import annotations

import dataclasses

import numpy as np

from pathlib_pw.experiments.roar import (
    CHECK_ARRAYS,
    PER_IMAGE,
    TOLERANCES,
    Config,
    cached_part,
    recorded_images,
    run_shown,
    subset,
    tolerances,
    verify_subset,
)
from pathlib_pw.experiments.roar import config as roar_config
from pathlib_pw.runner.contract import Profile

__all__ = [
    "CHECK_ARRAYS",
    "PER_IMAGE",
    "TOLERANCES",
    "Config",
    "cached_part",
    "config",
    "recorded_images",
    "run",
    "subset",
    "tolerances",
    "verify_subset",
]

PERCENTS = (50, 90)


def config(profile: Profile) -> Config:
    # the mask alone does not depend on the fill
    return dataclasses.replace(roar_config(profile), percents=PERCENTS, fills=("mean",))


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    return run_shown(config, "mask", device, progress)
