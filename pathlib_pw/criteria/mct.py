"""NeuronMCT: first-order Taylor contribution |a * d logit / d a| of every neuron (book/methods.md: pathway criteria)."""

from __future__ import annotations

import torch
from torch import nn

from pathlib_pw.criteria._scores import hand_back
from pathlib_pw.criteria.spec import SHARP, CriterionSpec
from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import activations_and_gradients
from pathlib_pw.thresholds import threshold_pathway


def neuron_mct_scores(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None = None
) -> tuple[list[torch.Tensor], list[str], torch.Tensor, list[torch.Tensor]]:
    """Per-site scores |a * g| with ``(scores, site names, target, activations)``: NeuronMCT as a
    neuron attribution (the scores :func:`neuron_mct` thresholds)."""
    _, acts, grads, names, tgt = activations_and_gradients(model, x, target)
    return [_times_abs(g, a, owned) for a, g, owned in zip(acts, grads, _writable(grads))], names, tgt, acts


def _times_abs(g: torch.Tensor, a: torch.Tensor, owned: bool) -> torch.Tensor:
    """|a x g|, written over ``g`` where nothing else holds its memory (a fresh tensor of scores the size
    of the network's activations costs page faults); the same product, operands in the same order."""
    return torch.mul(a, g, out=g).abs_() if owned else torch.mul(a, g).abs_()


def _writable(grads: list[torch.Tensor]) -> list[bool]:
    """Which gradients may be overwritten: contiguous (not a broadcast view) and the only tensor on
    their memory. Another site's gradient (two sites on one tensor share one), a gradient a hook of the
    model kept, or a buffer a custom backward returned as the gradient all hold it too; so does any
    tensor where torch offers no use count (then nothing is overwritten)."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return [False] * len(grads)

    def uses(t: torch.Tensor) -> int:
        storage = t.untyped_storage()  # held while counted
        return int(use_count(storage._cdata))

    probe = torch.empty(1)
    alone = uses(probe)  # what a tensor nothing else shares reads
    return [g.is_contiguous() and uses(g) == alone for g in grads]


def neuron_mct(
    model: nn.Module, x: torch.Tensor, levels: list[torch.Tensor], target: torch.Tensor | int | None, variant: str
) -> list[Pathway]:
    """Keep the neurons of highest |activation x gradient| of the target logit, global threshold.

    Khakzar et al., CVPR 2021, section 3 ("NeuronMCT"). ``levels``: sparsities in percent, one (B,)
    tensor per level; returns one Pathway per level, all from one forward and backward pass.
    """
    scores, names, tgt, _ = neuron_mct_scores(model, x, target)
    hand_back(scores)
    return [threshold_pathway(scores, p, names, "neuron_mct", target=tgt.cpu()) for p in levels]


SPEC = CriterionSpec(
    "neuron_mct",
    neuron_mct,
    "first-order Taylor contribution |a x d logit / d a|, global threshold",
    rounding=SHARP,
    scores=True,
)
