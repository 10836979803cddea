"""The cascading sanity check with the class the authors' script explained: after each stage's
randomization, the randomized model's own prediction (``explained_class="randomized"``), against the
book's ``sanity`` experiment, which explains the trained model's prediction throughout.

Same code, metrics, photos, stages, sparsities and random weights as the book's :mod:`.sanity` (all
nine photos; the maps after six of the cascade's stages, every stage still randomized on the way
down; PathwayGrad at 70 % and at the operating point); no stage is randomized alone. It also holds
the authors' script's "InputMCT" exactly as the script computed it
(:data:`.sanity.AUTHORS_INPUT_MCT_EXACT`) and a reading of it (:data:`.sanity.AUTHORS_INPUT_MCT`).
"""

from __future__ import annotations

import dataclasses

from pathlib_pw.experiments.attribution import PAPER_METHODS
from pathlib_pw.experiments.sanity import (
    AUTHORS_INPUT_MCT,
    AUTHORS_INPUT_MCT_EXACT,
    MEASURE_AT,
    PER_IMAGE,
    SHARD_BY_IMAGE,
    TOLERANCES,
    Config,
    cached_part,
    run,
    verify_subset,
)
from pathlib_pw.experiments.sanity import config as sanity_config
from pathlib_pw.runner.contract import Profile

__all__ = ["SHARD_BY_IMAGE", "MEASURE_AT", "PER_IMAGE", "TOLERANCES", "Config", "cached_part", "config", "run", "verify_subset"]

EXAMPLE_STAGES = ("original", "classifier", "last_conv", "block_13", "block_6", "stem")


def config(profile: Profile) -> Config:
    base = sanity_config(profile)
    if profile == "paper":  # the paper profile's sanity experiment already explains the randomized class
        return base
    return dataclasses.replace(
        base,
        methods=(*PAPER_METHODS, AUTHORS_INPUT_MCT, AUTHORS_INPUT_MCT_EXACT),
        measure_at=None if profile == "smoke" else MEASURE_AT,
        example_stages=EXAMPLE_STAGES if profile != "smoke" else base.example_stages,
        independent=(),
        explained_class="randomized",
        keep_trained_maps=True,
    )
