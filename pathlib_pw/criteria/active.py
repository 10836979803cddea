"""The active subnetwork: NeuronMCT just past the base sparsity of each image (PAPER.md section 3)."""

from __future__ import annotations

import torch
from torch import nn

from pathlib_pw.criteria.mct import neuron_mct_scores
from pathlib_pw.metrics import base_sparsity
from pathlib_pw.pathway import Pathway
from pathlib_pw.thresholds import threshold_pathway


def active_subnet(
    model: nn.Module, x: torch.Tensor, sparsity: None, target: torch.Tensor | int | None, variant: str
) -> list[Pathway]:
    """NeuronMCT at p = int(100 * base sparsity) + 1 percent, as the authors' helper does."""
    scores, names, tgt, acts = neuron_mct_scores(model, x, target)
    base = base_sparsity(acts)
    percent = (torch.floor(100.0 * base) + 1.0).clamp(max=99.0)
    return [threshold_pathway(scores, percent, names, "active_subnet", base_sparsity=base.float(), target=tgt.cpu())]
