"""What every attribution map shares: the method protocol, the channel reduction and normalization,
the explained class and the input gradient.

Every map has shape (B, H, W) with values in [-1, 1]: RGB reduced to the signed value of largest
magnitude, then divided by the image's largest absolute value (an all-zero map stays zero).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pathlib_pw import _deprecation
from pathlib_pw.pathway import Pathway
from pathlib_pw.selection import per_image
from pathlib_pw.sites import evaluating, resolve_target

# an attribution method: (model, x (B, C, H, W), explained class per image (B,) long) -> maps (B, H, W)
AttributionMethod = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Target = int | Sequence[int] | torch.Tensor | None


def reduce_channels(attribution: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W): per pixel, the channel value of largest magnitude, sign kept.

    Ties go to the first channel and NaN wins, as with ``argmax``; a channel loop because ``argmax``
    over a short dimension is slow on the CPU.
    """
    best = attribution[:, 0]
    for c in range(1, attribution.shape[1]):
        value = attribution[:, c]
        take = (value.abs() > best.abs()) | (value.isnan() & ~best.isnan())
        best = torch.where(take, value, best)
    return best


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Divide each map by its largest absolute value; all-zero maps stay zero."""
    peak = per_image(maps.abs().flatten(1).amax(1), maps)
    return maps / torch.where(peak > 0, peak, torch.ones_like(peak))


@_deprecation.keyword_only_from(2, "target", "path")
def explained_class(model: nn.Module, x: torch.Tensor, *, target: Target = None, path: Pathway | None = None) -> torch.Tensor:
    """The class explained per image: ``target`` validated, or the (masked) network's prediction."""
    with torch.no_grad(), evaluating(model):
        if path is None:
            logits = model(x.clone())
        else:
            with path.applied(model):
                logits = model(x.clone())
    return resolve_target(target, logits)


def input_gradient(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """d logit[target] / d input; ``target`` is resolved against this forward pass's logits."""
    inp = x.detach().requires_grad_(True)
    logits = model(inp.clone())  # a model may start with an in-place rectifier
    tgt = resolve_target(target, logits)
    (grad,) = torch.autograd.grad(logits.gather(1, tgt.view(-1, 1)).sum(), inp)
    return grad


__all__ = ["AttributionMethod", "Target", "explained_class", "input_gradient", "normalize", "reduce_channels"]
