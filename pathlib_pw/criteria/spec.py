"""What the dispatcher needs to know about a criterion, declared next to its function.

Each criterion file ends with a ``SPEC``: the function, its variants, whether it takes a sparsity,
whether it draws random numbers (and so takes one seed per image), its options, and how far rounding
moves its threshold decisions. :func:`pathlib_pw.extract_pathways`, the experiments and the docs
read that one description.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pathlib_pw.decisions import EXACT, Rounding

Method = Literal[
    "neuron_mct",
    "neuron_intgrad",
    "greedy",
    "random",
    "dgr",
    "active_subnet",
    "dead_first_random",
    "dead_first_activation",
]
Variant = Literal["intended", "original_code"]
CORE_PARAMETERS = ("model", "x", "levels", "target", "variant")

# How far rounding moves each criterion's threshold decisions (pathlib_pw.decisions), measured on
# MobileNetV2 between thread counts, SIMD levels (AVX-512, AVX2, none) and batch splits; the book's
# developer appendix lists the measurements (scripts/measure_rounding.py). Capacity: the share of all neurons that
# may change per decision; band: how far from the cut (x max(|cut|, mean score)) a changed neuron's
# score may lie. Rounding flips an occasional ReLU whose input sits at zero, and its gradient then
# changes every score upstream of it (by up to 9 % of the largest score): that is why the bands are
# wide and the counts come in bursts. First measured on the first photo only (up to 50 neurons, 0.5 x
# scale); all nine photos without SIMD: NeuronMCT up to 1,680 neurons (2.8e-4) and 4.8 x scale.
SHARP = Rounding("threshold", capacity=6e-4, band=10.0)
# Scores from the forward pass alone (the dead-first controls' activations and random ranks): no
# gradient carries a flipped ReLU upstream, so the first photo's bounds stand.
FORWARD = Rounding("threshold", capacity=5e-5, band=1.0)
# NeuronIntGrad evaluates the network with activations scaled down by small alphas, where such
# flips are frequent; up to 1,110 neurons per decision (1.8e-4 of 6.1 M), 1.05 x scale, on all nine
# photos without SIMD.
INTEGRATED = Rounding("threshold", capacity=6e-4, band=4.0)
# Greedy re-scores through the masked network every round: one ReLU of the masked network that
# flips changes the gradient of everything upstream by a few percent, and that round's cut moves
# thousands of neurons (up to 4,748 measured, 1 thread against 2 on an Intel Xeon, either way; all
# within 2.1 x scale of the cut). The capacity (9,200 of MobileNetV2's 6.1 M neurons) leaves twice that.
BURSTY = Rounding("threshold", capacity=1.5e-3, band=5.0)
# DGR with gates starting at 1: after a few hundred iterations the gates differ by less than their
# rounding noise; about 1 % of the kept neurons change between machines on the first photo, beyond
# repair, and on another photo without SIMD 15 % (Jaccard 0.849).
CHAOTIC = Rounding("chaotic", overlap=0.75)


@dataclasses.dataclass(frozen=True)
class CriterionSpec:
    """One criterion as data.

    ``function(model, x, levels, target, variant, **options) -> list[Pathway]``: ``levels`` holds one
    (B,) tensor of sparsities in percent per requested level (None when ``needs_sparsity`` is False),
    and one Pathway per level comes back. ``rounding`` is a :class:`~pathlib_pw.decisions.Rounding`,
    or a function of the call's options that returns one. ``overshoot`` says why the criterion may
    remove more neurons than requested (:mod:`pathlib_pw.criteria.checks`). ``scores``: the paths
    come from one set of per-neuron scores, which ``extract_pathways(return_scores=True)`` hands back.
    """

    name: str
    function: Callable[..., Any]
    summary: str
    options: tuple[str, ...] = ()
    variants: tuple[Variant, ...] = ("intended",)
    needs_sparsity: bool = True
    seeded: bool = False
    rounding: Rounding | Callable[[Mapping[str, Any]], Rounding] = EXACT
    # why this criterion may remove more neurons than requested (the warning of extract_pathways says it)
    overshoot: str = (
        "the paper's score <= cut rule removes every neuron whose score ties the cut (dead neurons all score exactly 0)"
    )
    # whether every path comes from one set of per-neuron scores, which the function hands back
    # (pathlib_pw.criteria._scores.hand_back) for extract_pathways(return_scores=True)
    scores: bool = False

    def __post_init__(self) -> None:
        parameters = list(inspect.signature(self.function).parameters)
        if tuple(parameters[: len(CORE_PARAMETERS)]) != CORE_PARAMETERS:
            raise TypeError(f"{self.name}: a criterion function takes {CORE_PARAMETERS} first, got {parameters}")
        if tuple(parameters[len(CORE_PARAMETERS) :]) != self.options:
            raise TypeError(
                f"{self.name}: options {self.options} do not match the function's {parameters[len(CORE_PARAMETERS):]}"
            )
        if self.seeded != ("seed" in self.options):
            raise TypeError(f"{self.name}: a seeded criterion takes a 'seed' option, and only a seeded one does")

    def rounding_for(self, options: Mapping[str, Any]) -> Rounding:
        """The rounding class of a call with these options."""
        return self.rounding if isinstance(self.rounding, Rounding) else self.rounding(options)
