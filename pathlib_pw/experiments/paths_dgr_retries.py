"""DGR(init=r)'s retries: ours (fresh gates per retry) against the authors' (continue the same run).

When no iterate of a DGR(init=r) pass keeps the prediction, both divide lambda by 10 and try again,
at most 100 passes in all. The authors' ``cdrp/main2.py`` continues from the current gates and SGD
momentum; our default draws fresh random gates and a new optimizer (:func:`pathlib_pw.criteria.dgr.dgr`,
``variant``). This experiment runs both with the authors' 100 passes, beside NeuronMCT, DGR(init=1)
and Random for the overlaps, at the book's operating point and at the authors' 90 %.

Images whose first pass keeps the prediction get the same path from both (same seed, same first
pass): the variants differ only where a retry happens. It is the ``paths`` computation with other
criteria and sparsities: the arrays, tables and cache check are those of
:mod:`pathlib_pw.experiments.paths`. Under the ``paper`` profile both variants are already part of
``paths``, so the configuration is that one and the runner copies its cache.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pathlib_pw.experiments import paths
from pathlib_pw.experiments.paths import (
    RECORD_EVERY_IMAGE,
    SHARD_BY_IMAGE,
    TOLERANCES,
    Config,
    Criterion,
    tolerances,
    unrecorded_tolerances,
)

# the cache predates the activity-aware nulls (paths.NULL_KEYS): this experiment records the paths
# arrays without them (the overlaps of DGR(init=r) with their chance levels are in ``paths`` and
# ``dgr_budget``), which keeps its 75-minute recomputation out of every change to the nulls
PER_IMAGE = paths.PER_IMAGE - paths.NULL_KEYS


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    """:func:`pathlib_pw.experiments.paths.run` without the nulls."""
    return paths.run(config, device, progress, nulls=False)


INTENDED = "DGR(init=r)"
ORIGINAL = "DGR(init=r) (original code)"
AUTHORS_PASSES = 100


def criteria(iterations: int, max_retries: int) -> tuple[Criterion, ...]:
    """NeuronMCT, DGR(init=1) and Random beside DGR(init=r) with our and the authors' retries."""
    by_label = {c.label: c for c in paths.paper_criteria(dgr_iterations=iterations, dgr_retries=max_retries)}
    ours = by_label[INTENDED]
    return (
        by_label["NeuronMCT"],
        by_label["DGR(init=1)"],
        by_label["Random"],
        ours,
        dataclasses.replace(ours, label=ORIGINAL, variant="original_code"),
    )


def config(profile: str) -> Config:
    """smoke: 2 passes on 2 small photos; book: the 9 photos, ``paths``' 300 iterations a pass, the
    authors' 100 passes, at 50 % (the operating point) and 90 %; paper: ``paths``' own configuration."""
    if profile == "paper":
        return paths.config("paper")
    iterations, max_retries = (5, 1) if profile == "smoke" else (300, AUTHORS_PASSES - 1)
    return dataclasses.replace(
        paths.config(profile),
        criteria=criteria(iterations, max_retries),
        overlap_sparsities=(paths.OPERATING_POINT, 90.0),
        sweep_sparsities=(),
    )


__all__ = [
    "RECORD_EVERY_IMAGE",
    "AUTHORS_PASSES",
    "INTENDED",
    "ORIGINAL",
    "PER_IMAGE",
    "SHARD_BY_IMAGE",
    "TOLERANCES",
    "Config",
    "config",
    "criteria",
    "run",
    "unrecorded_tolerances",
    "tolerances",
]
