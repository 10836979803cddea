"""Critical-pathway criteria (PAPER.md section 3), one file per criterion, one entry point.

Every criterion is a function ``(model, x, sparsity, target, variant, **options) -> Pathway`` that is
batched over images; :func:`extract_pathway` validates the arguments, moves the input to the model's
device, optionally splits the images into chunks, and dispatches.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from pathlib_pw.criteria.active import active_subnet
from pathlib_pw.criteria.dgr import dgr
from pathlib_pw.criteria.greedy import greedy
from pathlib_pw.criteria.intgrad import neuron_intgrad
from pathlib_pw.criteria.mct import neuron_mct
from pathlib_pw.criteria.random import random_path
from pathlib_pw.criteria.seeds import per_image_seeds
from pathlib_pw import decisions
from pathlib_pw.decisions import EXACT, Rounding
from pathlib_pw.pathway import Pathway
from pathlib_pw.thresholds import as_percent
from pathlib_pw.sites import as_index_tensor, check_input, model_device, rectifier_modules

CRITERIA: dict[str, Callable[..., Pathway]] = {
    "neuron_mct": neuron_mct,
    "neuron_intgrad": neuron_intgrad,
    "greedy": greedy,
    "random": random_path,
    "dgr": dgr,
    "active_subnet": active_subnet,
}
VARIANTS: dict[str, tuple[str, ...]] = {
    "neuron_mct": ("intended",),
    "neuron_intgrad": ("intended", "original_code"),
    "greedy": ("intended", "original_code"),
    "random": ("intended",),
    "dgr": ("intended",),
    "active_subnet": ("intended",),
}
_CORE_PARAMS = {"model", "x", "sparsity", "target", "variant"}

# How far rounding moves each criterion's threshold decisions (pathlib_pw.decisions), measured on
# MobileNetV2 between thread counts, SIMD levels (AVX-512, AVX2, none) and batch splits; the Notes
# page lists the measurements. Capacity: the share of all neurons that may change per decision;
# band: how far from the cut (x max(|cut|, mean score)) a changed neuron's score may lie. Rounding
# flips an occasional ReLU whose input sits at zero, and its gradient then changes every score
# upstream a little: that is why the bands are wide and the counts come in bursts.
SHARP = Rounding("threshold", capacity=5e-5, band=1.0)
# NeuronIntGrad evaluates the network with activations scaled down by small alphas, where such
# flips are frequent; up to about 800 neurons change per decision (6.1 M neurons).
INTEGRATED = Rounding("threshold", capacity=3e-4, band=2.0)
# Greedy re-scores through the masked network every round: bursts of up to about 2,200 changes.
BURSTY = Rounding("threshold", capacity=4e-4, band=5.0)
# DGR with gates starting at 1: after a few hundred iterations the gates differ by less than their
# rounding noise; about 1 % of the kept neurons change between machines, beyond repair.
CHAOTIC = Rounding("chaotic", overlap=0.95)


def rounding(method: str, variant: str, options: dict[str, Any]) -> Rounding:
    """The rounding class of a criterion call (see :mod:`pathlib_pw.decisions`)."""
    if method == "random":
        return EXACT
    if method == "neuron_intgrad":
        return INTEGRATED
    if method == "greedy":
        return BURSTY
    if method == "dgr" and str(options.get("init", "1")) == "1":
        return CHAOTIC
    return SHARP


def extract_pathway(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    sparsity: float | Sequence[float] | torch.Tensor | None = None,
    target: int | Sequence[int] | torch.Tensor | None = None,
    variant: str = "intended",
    *,
    batch_size: int | None = None,
    **options: Any,
) -> Pathway:
    """Find the critical pathway of each image in ``x`` with criterion ``method``.

    Args:
        model: a CNN whose rectifiers are ``nn.ReLU``/``nn.ReLU6`` modules; its weights and mode are
            unchanged afterwards (it is run in eval mode). Put it on the GPU to compute there.
        x: normalized images (B, C, H, W); moved to the model's device.
        method: one of ``CRITERIA`` (``neuron_mct``, ``neuron_intgrad``, ``greedy``, ``random``, ``dgr``,
            ``active_subnet``).
        sparsity: percent of neurons to remove, in [0, 100), scalar or one per image (not used by
            ``active_subnet``, which derives it from the image).
        target: class explained per image; default the model's prediction.
        variant: ``"intended"`` (the method as described) or ``"original_code"`` (the authors' code,
            defects included) where the two differ; see ``VARIANTS``.
        batch_size: process the images in chunks of this size (bounds memory); default all at once.
        options: criterion-specific keyword arguments (for example ``steps`` for ``neuron_intgrad``,
            ``rounds`` for ``greedy``, ``init`` and ``iterations`` for ``dgr``, ``seed``).

    Returns:
        A :class:`~pathlib_pw.pathway.Pathway` with one mask per site and image, the realized
        sparsity, and in ``info`` the requested sparsity, the explained ``target`` and criterion extras.
    """
    if method != "active_subnet" and sparsity is None:
        raise ValueError(f"sparsity (percent of neurons removed, in [0, 100)) is required for method {method!r}")
    if method == "active_subnet" and sparsity is not None:
        raise ValueError("sparsity must be None for method 'active_subnet' (it is derived from each image)")
    levels = None if sparsity is None else [sparsity]
    return extract_pathways(model, x, method, levels, target, variant, batch_size=batch_size, **options)[0]


def extract_pathways(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    sparsities: Sequence[float | Sequence[float] | torch.Tensor] | None,
    target: int | Sequence[int] | torch.Tensor | None = None,
    variant: str = "intended",
    *,
    batch_size: int | None = None,
    **options: Any,
) -> list[Pathway]:
    """:func:`extract_pathway` at several sparsities, scoring each image once.

    Scores (NeuronMCT, NeuronIntGrad), gates (DGR) and the authors' Greedy loop do not depend on the
    sparsity, and an intended Greedy run passes through every multiple of its step: one call here
    costs about as much as the largest sparsity alone. Returns one Pathway per entry of ``sparsities``.
    """
    if method not in CRITERIA:
        raise ValueError(f"method must be one of {sorted(CRITERIA)}, got {method!r}")
    if variant not in VARIANTS[method]:
        raise ValueError(f"variant for method {method!r} must be one of {list(VARIANTS[method])}, got {variant!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rectifier_modules(model)
    check_input(x)
    fn = CRITERIA[method]
    accepted = [n for n in inspect.signature(fn).parameters if n not in _CORE_PARAMS]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for method {method!r}; accepted options: {accepted}")
    batch = x.shape[0]
    if method == "active_subnet":
        if sparsities is not None:
            raise ValueError("sparsities must be None for method 'active_subnet' (it is derived from each image)")
        percents = None
    else:
        if sparsities is None or isinstance(sparsities, (int, float, torch.Tensor)) or len(sparsities) == 0:
            raise ValueError(f"sparsities must be a non-empty list of sparsities in percent for method {method!r}")
        percents = [as_percent(level, batch) for level in sparsities]
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if "seed" in accepted:
        options["seed"] = per_image_seeds(options.get("seed", 0), batch)
    if target is not None and not (isinstance(target, int) and not isinstance(target, bool)):
        target = as_index_tensor(target, "target")
        if target.numel() not in (1, batch):
            raise ValueError(f"target must be one class index or one per image ({batch}), got {target.numel()}")
        if target.numel() == 1:
            target = target.expand(batch)

    # criteria run many forward passes on x; a copy keeps the caller's tensor safe from in-place rectifiers
    x = x.detach().to(model_device(model)).clone()
    step = batch if batch_size is None else batch_size
    parts = []
    for start in range(0, batch, step):
        chunk = slice(start, start + step)
        with decisions.criterion(rounding(method, variant, options)), decisions.rows(chunk):
            parts.append(
                fn(
                    model,
                    x[chunk],
                    None if percents is None else [p[chunk] for p in percents],
                    target if target is None or isinstance(target, int) else target[chunk],
                    variant,
                    **{k: (v[chunk] if k == "seed" else v) for k, v in options.items()},
                )
            )
    return [parts[0][j] if len(parts) == 1 else Pathway.cat([part[j] for part in parts]) for j in range(len(parts[0]))]


__all__ = ["CRITERIA", "VARIANTS", "extract_pathway", "extract_pathways"]
