"""DGR at the authors' budget: 1000 iterations against the book's 300.

The book's ``paths`` runs DGR with 300 iterations to keep its CPU run under an hour; the authors ran
1000. At 300 iterations DGR(init=r)'s overlaps equal those of two random paths and its dead share
the base rate, so this experiment measures what the budget changes: both DGR initializations at 300
and at 1000 iterations (the same per-image seeds, so the 300-iteration paths are those of ``paths``),
beside NeuronMCT, Random and the dead-first random control, on the first ``BOOK_IMAGES`` photos (as
many as fit in about an hour on two cores), thresholded at the operating point and the authors' 90 %,
and swept over sparsity for the signed output change (DGR(init=1) raises the probability).

It is the ``paths`` computation with other criteria and sparsities: the arrays, tables and cache
check are those of :mod:`pathlib_pw.experiments.paths`.
"""

from __future__ import annotations

import dataclasses

from pathlib_pw.experiments import paths
from pathlib_pw.experiments.paths import (
    PER_IMAGE,
    RECORD_EVERY_IMAGE,
    SHARD_BY_IMAGE,
    TOLERANCES,
    Config,
    Criterion,
    run,
    tolerances,
    unrecorded_tolerances,
)

AUTHORS_ITERATIONS = 1000
BOOK_ITERATIONS = 300
BOOK_IMAGES = 4
LONG = f", {AUTHORS_ITERATIONS} iterations"


def criteria(short: int, long: int, retries: int) -> tuple[Criterion, ...]:
    """NeuronMCT, Random, the dead-first random control, and DGR(init=1) and DGR(init=r) at ``short``
    and ``long`` iterations (the long runs labelled with their budget)."""
    at = {n: {c.label: c for c in paths.paper_criteria(dgr_iterations=n, dgr_retries=retries)} for n in (short, long)}
    dgr = ("DGR(init=1)", "DGR(init=r)")
    return (
        at[short]["NeuronMCT"],
        at[short]["Random"],
        at[short]["Random (dead first)"],
        *(at[short][label] for label in dgr),
        *(dataclasses.replace(at[long][label], label=label + LONG) for label in dgr),
    )


def config(profile: str) -> Config:
    """smoke: 5 against 10 iterations on 2 small photos; book: 300 against 1000 on the first
    ``BOOK_IMAGES`` photos, at most 2 DGR(init=r) retries as in ``paths``; paper: ``paths``' own
    configuration (it already runs 1000 iterations)."""
    if profile == "paper":
        return paths.config("paper")
    base = paths.config(profile)
    short, long, images = (5, 10, None) if profile == "smoke" else (BOOK_ITERATIONS, AUTHORS_ITERATIONS, BOOK_IMAGES)
    inputs = base.inputs if images is None else base.inputs.restricted(images)
    return dataclasses.replace(
        base,
        inputs=inputs,
        criteria=criteria(short, long, 1 if profile == "smoke" else 2),
        overlap_sparsities=(paths.OPERATING_POINT, 90.0),
        sweep_sparsities=(10.0, 30.0, 50.0, 70.0, 90.0),
    )


__all__ = [
    "RECORD_EVERY_IMAGE",
    "AUTHORS_ITERATIONS",
    "BOOK_IMAGES",
    "BOOK_ITERATIONS",
    "LONG",
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
