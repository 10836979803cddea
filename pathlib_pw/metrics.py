"""Path metrics (PAPER.md sections 2 and 5): overlap, base sparsity and dead-neuron share, output change."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from pathlib_pw.pathway import Pathway
from pathlib_pw.selection import add_all
from pathlib_pw.sites import check_input, evaluating, model_device, resolve_target


def _check_same_sites(a: Pathway, b: Pathway) -> None:
    if a.sites != b.sites or len(a) != len(b):
        raise ValueError("pathways must have the same sites and the same number of images")


def jaccard(a: Pathway, b: Pathway, per_site: bool = False) -> torch.Tensor:
    """|A n B| / |A u B| of the kept sets, per image (B,) or per image and site (B, n_sites).

    An empty union (both paths keep nothing) gives NaN: the overlap is undefined there.
    """
    _check_same_sites(a, b)
    if per_site:
        inter = torch.stack([(m & n).flatten(1).sum(1) for m, n in zip(a.masks, b.masks)], 1).double()
        union = torch.stack([(m | n).flatten(1).sum(1) for m, n in zip(a.masks, b.masks)], 1).double()
    else:
        inter = add_all((m & n).flatten(1).sum(1, dtype=torch.float64) for m, n in zip(a.masks, b.masks))
        union = add_all((m | n).flatten(1).sum(1, dtype=torch.float64) for m, n in zip(a.masks, b.masks))
    return (inter / union).float()


def base_sparsity(activations: Sequence[torch.Tensor]) -> torch.Tensor:
    """Share (0..1) of neurons with activation <= 0 in the unpruned network, per image (B,)."""
    dead = add_all((a <= 0).flatten(1).sum(1, dtype=torch.float64) for a in activations)
    total = sum(a[0].numel() for a in activations)
    return (dead / total).cpu()


def dead_share(path: Pathway, activations: Sequence[torch.Tensor], per_site: bool = False) -> torch.Tensor:
    """Share of the path's kept neurons whose unpruned activation is <= 0, per image (or per site).

    ``activations`` are the rectifier outputs of the unpruned network (``record_activations``).
    NaN where the path keeps nothing.
    """
    if len(activations) != len(path.masks) or any(a.shape != m.shape for a, m in zip(activations, path.masks)):
        raise ValueError("activations must have one tensor per site, shaped like the pathway's masks")
    dead = [(m & (a.to(m.device) <= 0)).flatten(1).sum(1, dtype=torch.float64) for m, a in zip(path.masks, activations)]
    kept = [m.flatten(1).sum(1, dtype=torch.float64) for m in path.masks]
    if per_site:
        return (torch.stack(dead, 1) / torch.stack(kept, 1)).float()
    return (add_all(dead) / add_all(kept)).float()


def output_change(
    model: nn.Module, x: torch.Tensor, path: Pathway, target: int | Sequence[int] | torch.Tensor | None = None
) -> torch.Tensor:
    """|p_masked - p_orig| / p_orig of the target's softmax probability, per image (B,).

    ``target`` defaults to the pathway's explained class, else the unmasked prediction.
    """
    x = check_input(x).to(model_device(model))
    if target is None and "target" in path.info and len(path) == x.shape[0]:
        target = path.info["target"]
    with torch.no_grad(), evaluating(model):
        logits = model(x.clone())
        tgt = resolve_target(target, logits).view(-1, 1)
        with path.applied(model):
            masked = model(x.clone())
    p_orig = logits.softmax(1).gather(1, tgt).squeeze(1)
    p_masked = masked.softmax(1).gather(1, tgt).squeeze(1)
    return ((p_masked - p_orig).abs() / p_orig).cpu()


def map_concentration(maps: torch.Tensor | np.ndarray, share: float = 0.05) -> np.ndarray:
    """Share of each map's total |value| held by its top ``share`` of pixels, per map.

    1 means all attribution sits in those pixels; ``share`` is the value of a uniform map. An
    all-zero map (a path that disconnects the input) has no attribution to distribute: NaN.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    values = np.abs(np.asarray(maps, dtype=np.float64))
    if values.ndim < 2:
        raise ValueError(f"maps must have shape (..., H, W), got {values.shape}")
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1])
    top = np.sort(flat, axis=1)[:, ::-1][:, : max(1, int(share * flat.shape[1]))].sum(1)
    total = flat.sum(1)
    out = np.full(total.shape, np.nan)
    np.divide(top, total, out=out, where=total > 0)
    return out.reshape(values.shape[:-2])
