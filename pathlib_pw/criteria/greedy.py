"""Greedy Taylor pruning, the paper's "pathological" pruner (book/methods.md: pathway criteria).

Neurons whose Taylor score |a * g| is zero (dead at this input) are given the largest score, so the
pruner keeps them: a path full of dead neurons still keeps the output, which is the paper's point
that pruning objectives alone do not find critical pathways.

Ties never favour a position. Every dead kept neuron has the same rank, so once the living ones are
gone a round's cut falls inside that tied block; breaking the tie by position emptied the first
sites of a network first (on MobileNetV2 its first six), a dead-neuron pattern made by site order
alone. The intended variant breaks ties by a seeded random order of each image's neurons
(``ties="random"``); ``ties="position"`` keeps the old rule for comparison.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from pathlib_pw import decisions
from pathlib_pw.criteria._progress import bar
from pathlib_pw.criteria.seeds import per_image_seeds, tie_keys
from pathlib_pw.criteria.spec import BURSTY, CriterionSpec
from pathlib_pw.pathway import Pathway, taylor_scores
from pathlib_pw.selection import add_all, per_image
from pathlib_pw.thresholds import global_threshold, remove_lowest

Ties = Literal["random", "position"]
TIES: tuple[Ties, ...] = ("random", "position")


def greedy(
    model: nn.Module,
    x: torch.Tensor,
    levels: list[torch.Tensor],
    target: torch.Tensor | int | None,
    variant: str,
    step: float = 1.0,
    rounds: int | None = None,
    ties: Ties = "random",
    seed: torch.Tensor | int = 0,
) -> list[Pathway]:
    """Iterative Taylor pruning with re-scoring through the masked network.

    ``"intended"``: each round removes, among the neurons still kept, the lowest-scored ones until
    ``step`` more percent of all neurons are removed (an exact count); removed neurons stay removed;
    stops at the requested sparsity (``ceil(sparsity / step)`` rounds unless ``rounds`` is given).
    Equal scores at a round's cut (chiefly the dead kept neurons, which share one rank above every
    living neuron) are taken in the order of ``ties``: ``"random"`` (default) a random permutation
    of the image's neurons (sites pooled in order), ``torch.randperm`` from a CPU generator seeded
    with :func:`tie_seed` of the image's ``seed`` and fixed for the whole run, so that the neurons
    removed from a tied block are a uniform choice and the same on every device; ``"position"``
    site order, then element order (the rule before ties were handled, which empties the first
    sites of their dead neurons first).

    ``"original_code"``: the authors' loop for ``rounds`` rounds (they used 99, 98 for decoding):
    scores <= 0 replaced by the maximum, threshold at the ``i * step``-th percentile, then every
    neuron with score <= 0 put back. Neurons pruned in one round score 0 in the next and are restored,
    so masks oscillate and the requested ``sparsity`` is never used; ``rounds`` defaults to 99.

    ``ties`` and ``seed`` are validated for both variants and used by ``"intended"`` only: the
    authors' ``<=`` threshold removes or keeps a tied block whole, so it never breaks a tie.

    ``levels``: sparsities in percent, one (B,) tensor per level; returns one Pathway per level (an
    intended run towards the largest level passes through the smaller ones). ``seed`` is one int
    per image (``extract_pathway`` derives them from a single int), so a chunked call gives the same
    paths as one call over all images.
    """
    if not (isinstance(step, (int, float)) and 0 < step < 100):
        raise ValueError(f"step must be a percentage in (0, 100), got {step!r}")
    if rounds is not None and (not isinstance(rounds, int) or rounds < 1):
        raise ValueError(f"rounds must be a positive int or None, got {rounds!r}")
    if not isinstance(ties, str) or ties not in TIES:
        raise ValueError(f"ties must be one of {list(TIES)}, got {ties!r}")
    seeds = per_image_seeds(seed, x.shape[0])
    if variant == "original_code":
        masks, names, tgt = _original_code(model, x, target, step, 99 if rounds is None else rounds)
        return [
            Pathway.from_masks(
                masks,
                names,
                "greedy",
                requested_sparsity=level.float(),
                target=tgt.cpu(),
                rounds=99 if rounds is None else rounds,
                variant=variant,
            )
            for level in levels
        ]
    # a run towards p passes exactly through the path of every p' < p that is a multiple of step
    shared = rounds is None and all(
        bool((level == level[0]).all()) and math.isclose(float(level[0]) / step, round(float(level[0]) / step))
        for level in levels
    )
    if not shared:
        return [_intended(model, x, [level], target, step, rounds, ties, seeds)[0] for level in levels]
    return _intended(model, x, levels, target, step, None, ties, seeds)


def _intended(
    model: nn.Module,
    x: torch.Tensor,
    levels: list[torch.Tensor],
    target: torch.Tensor | int | None,
    step: float,
    rounds: int | None,
    ties: Ties,
    seeds: torch.Tensor,
) -> list[Pathway]:
    """One pruning run towards the largest level, with a snapshot when each level is reached."""
    scores, names, tgt = taylor_scores(model, x, target)
    masks = [torch.ones_like(s, dtype=torch.bool) for s in scores]
    wanted = torch.stack([lv.to(torch.float64) for lv in levels]).amax(0)
    total = sum(s[0].numel() for s in scores)
    keys = None if ties == "position" else tie_keys(seeds, total).to(scores[0].device)
    due = [rounds if rounds is not None else math.ceil(float(lv.max()) / step - 1e-9) for lv in levels]
    n_rounds = max(due)
    snapshots = {j: masks for j, r in enumerate(due) if r == 0}
    with bar(n_rounds, "greedy", "round") as rounds_bar:
        for i in range(n_rounds):
            level = torch.clamp(wanted, max=(i + 1) * step)
            # removed neurons rank below everything, dead kept neurons above every living one
            above = _image_max(scores) * 2 + 1
            ranked = [
                torch.where(m, torch.where(s > 0, s, per_image(above, s)), torch.full_like(s, -1.0))
                for s, m in zip(scores, masks)
            ]
            scale = _mean_score(scores)
            near_zero = [s <= per_image(NEAR_ZERO * scale, s) for s in scores]
            masks = remove_lowest(ranked, torch.round(level / 100.0 * total), near_zero, scale, tie_keys=keys)
            for j, r in enumerate(due):
                if r == i + 1:
                    snapshots[j] = masks
            if i + 1 < n_rounds:
                scores, _, _ = taylor_scores(model, x, tgt, masks, names)
            rounds_bar.update()
    return [
        Pathway.from_masks(
            snapshots[j],
            names,
            "greedy",
            requested_sparsity=lv.float(),
            target=tgt.cpu(),
            rounds=due[j],
            variant="intended",
            ties=ties,
        )
        for j, lv in enumerate(levels)
    ]


def _image_max(scores: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([s.flatten(1).amax(1) for s in scores], 1).amax(1)


# A Taylor score this small (x the image's mean) may be exactly 0 on another machine: its activation
# sits within rounding of zero, and Greedy keeps dead neurons; replays accept such neurons changing.
NEAR_ZERO = 1e-3


def _mean_score(scores: list[torch.Tensor]) -> torch.Tensor:
    total = add_all(s.flatten(1).sum(1, dtype=torch.float64) for s in scores)
    return (total / sum(s[0].numel() for s in scores)).to(scores[0].dtype)


def _original_code(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None, step: float, rounds: int
) -> tuple[list[torch.Tensor], list[str], torch.Tensor]:
    scores, names, tgt = taylor_scores(model, x, target)
    masks = [torch.ones_like(s, dtype=torch.bool) for s in scores]
    with bar(rounds, "greedy (original code)", "round") as rounds_bar:
        for i in range(rounds):
            top = _image_max(scores)
            replaced = [torch.where(s > 0, s, per_image(top, s)) for s in scores]
            level = torch.full((x.shape[0],), min(i * step, 99.999999), dtype=torch.float64)
            keep, cut = global_threshold(replaced, level, checkpoint=False)
            scale = _mean_score(scores)
            near_zero = [s <= per_image(NEAR_ZERO * scale, s) for s in scores]
            masks = decisions.checkpoint(replaced, [k | (s <= 0) for k, s in zip(keep, scores)], cut, near_zero, scale)
            if i + 1 < rounds:  # the authors re-score once more after the last round; unused
                scores, _, _ = taylor_scores(model, x, tgt, masks, names)
            rounds_bar.update()
    return masks, names, tgt


SPEC = CriterionSpec(
    "greedy",
    greedy,
    "iterative Taylor pruning through the masked network, the paper's pathological pruner",
    options=("step", "rounds", "ties", "seed"),
    variants=("intended", "original_code"),
    seeded=True,
    rounding=BURSTY,
    overshoot="the authors' Greedy loop restores the neurons it pruned, so its realized sparsity does not follow the request",
)
