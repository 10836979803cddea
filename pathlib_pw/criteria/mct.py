"""NeuronMCT: first-order Taylor contribution |a * d logit / d a| of every neuron (PAPER.md section 3)."""

from __future__ import annotations

import torch
from torch import nn

from pathlib_pw.pathway import Pathway
from pathlib_pw.thresholds import threshold_pathway
from pathlib_pw.sites import activations_and_gradients


def neuron_mct_scores(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None = None
) -> tuple[list[torch.Tensor], list[str], torch.Tensor, list[torch.Tensor]]:
    """Per-site scores |a * g| with ``(scores, site names, target, activations)``."""
    _, acts, grads, names, tgt = activations_and_gradients(model, x, target)
    return [torch.mul(a, g).abs_() for a, g in zip(acts, grads)], names, tgt, acts


def neuron_mct(
    model: nn.Module, x: torch.Tensor, sparsity: list[torch.Tensor], target: torch.Tensor | int | None, variant: str
) -> list[Pathway]:
    """Keep the neurons of highest |activation x gradient| of the target logit, global threshold.

    Khakzar et al., CVPR 2021, section 3 ("NeuronMCT").
    """
    scores, names, tgt, _ = neuron_mct_scores(model, x, target)
    return [threshold_pathway(scores, p, names, "neuron_mct", target=tgt.cpu()) for p in sparsity]
