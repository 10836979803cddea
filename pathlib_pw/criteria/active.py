"""The active subnetwork: NeuronMCT just past the base sparsity of each image (book/methods.md: pathway criteria)."""

from __future__ import annotations

import torch
from torch import nn

from pathlib_pw.criteria._scores import hand_back
from pathlib_pw.criteria.mct import neuron_mct_scores
from pathlib_pw.criteria.spec import SHARP, CriterionSpec
from pathlib_pw.metrics import base_sparsity
from pathlib_pw.pathway import Pathway
from pathlib_pw.thresholds import threshold_pathway


def active_subnet(
    model: nn.Module, x: torch.Tensor, levels: None, target: torch.Tensor | int | None, variant: str
) -> list[Pathway]:
    """NeuronMCT at p = int(100 * base sparsity) + 1 percent, as the authors' helper does.

    Takes no sparsity (``levels`` is None): each image's comes from its own dead neurons. Returns one
    Pathway, with the base sparsity in ``info["base_sparsity_share"]`` (a share in [0, 1]).
    """
    scores, names, tgt, acts = neuron_mct_scores(model, x, target)
    base = base_sparsity(acts)
    percent = (torch.floor(100.0 * base) + 1.0).clamp(max=99.0)
    hand_back(scores)
    return [threshold_pathway(scores, percent, names, "active_subnet", base_sparsity_share=base.float(), target=tgt.cpu())]


SPEC = CriterionSpec(
    "active_subnet",
    active_subnet,
    "NeuronMCT just past each image's share of dead neurons",
    needs_sparsity=False,
    rounding=SHARP,
    scores=True,
)
