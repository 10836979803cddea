"""The paper's threshold rules: scores in, keep-masks out (book/methods.md: neurons, paths and sparsity).

Every decision goes through :func:`pathlib_pw.decisions.checkpoint`, so that an experiment can record
it and a recomputation on another machine can replay it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from pathlib_pw import decisions
from pathlib_pw.pathway import Pathway, realized_sparsity, sparsity_of_kept
from pathlib_pw.selection import above_kth, count_true, kth_smallest, map_images, pooled, split_like

__all__ = ["as_percent", "global_threshold", "percentile_count", "remove_lowest", "threshold_pathway", "tie_broken_pathway"]


def as_percent(sparsity: float | Sequence[float] | torch.Tensor, batch: int, name: str = "sparsity") -> torch.Tensor:
    """Validate a sparsity in percent, scalar or per image, and return it as a float64 (B,) tensor."""
    try:
        values = torch.as_tensor(sparsity, dtype=torch.float64).flatten().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number or a sequence of numbers in percent, got {sparsity!r}") from None
    if values.numel() == 1:
        values = values.expand(batch).clone()
    if values.numel() != batch:
        raise ValueError(f"{name} must be a scalar or have one value per image ({batch}), got {values.numel()}")
    if torch.isnan(values).any() or (values < 0).any() or (values >= 100).any():
        raise ValueError(f"{name} must be in [0, 100) (percent of neurons removed), got {sparsity!r}")
    return values


def percentile_count(scores: Sequence[torch.Tensor], sparsity: torch.Tensor) -> torch.Tensor:
    """k + 1 = floor(p / 100 x (N - 1)) + 1 per image: how many neurons the paper's percentile rule
    removes when no score ties the cut (N neurons per image, all sites pooled), as a (B,) long tensor."""
    n = sum(s[0].numel() for s in scores)
    return torch.floor(sparsity.to(torch.float64).cpu() / 100.0 * (n - 1)).long() + 1


def global_threshold(
    scores: Sequence[torch.Tensor],
    sparsity: torch.Tensor,
    *,
    checkpoint: bool = True,
    near_zero: Sequence[torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Keep-masks from the paper's global percentile rule, per image.

    All sites' scores of one image are pooled; ``thr`` is their ``p``-th percentile (linear
    interpolation, as ``numpy.percentile``) and every neuron with ``score <= thr`` is removed. With
    pos = p/100 * (N-1) and k = floor(pos), ``thr`` lies in ``[v_k, v_{k+1})`` of the sorted scores,
    and no score lies strictly between two neighbouring order statistics: the removed set is exactly
    ``score <= v_k``. One order statistic per image therefore gives the paper's masks. Returns the masks
    and ``v_k`` (B,), the largest removed score. With ``checkpoint`` the decision goes through
    :func:`pathlib_pw.decisions.checkpoint` (recorded or replayed when an experiment asks for it;
    ``near_zero`` is passed on: neurons whose decision also hangs on an activation within rounding of zero).
    """
    masks, cut, _ = _thresholded(scores, sparsity, checkpoint, near_zero)
    return masks, cut


def _thresholded(
    scores: Sequence[torch.Tensor], sparsity: torch.Tensor, checkpoint: bool, near_zero: Sequence[torch.Tensor] | None
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """:func:`global_threshold`'s masks and cut, and the neurons each image keeps (None where a
    replayed decision changed the masks: then they are to be counted)."""
    k = percentile_count(scores, sparsity) - 1
    cut, masks, kept = above_kth(scores, k)
    decided = decisions.checkpoint(scores, masks, cut, near_zero) if checkpoint else masks
    return decided, cut, kept if decided is masks else None


def remove_lowest(
    scores: Sequence[torch.Tensor],
    count: torch.Tensor,
    near_zero: Sequence[torch.Tensor] | None = None,
    scale: torch.Tensor | None = None,
    *,
    tie_keys: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Keep-masks that remove exactly ``count[b]`` lowest-scored neurons of image b, all sites pooled.

    Ties at the cut are broken by ``tie_keys``, a (B, total neurons) tensor of integers below 2**53
    (sites pooled in order, as :func:`~pathlib_pw.selection.pooled`; e.g. a random permutation per
    image): among equal scores the smaller key goes first, and among equal scores and keys the
    earlier position (site order, then element order). Without ``tie_keys`` ties go by position
    alone. Either way the result is deterministic and the removed count exact, unlike the paper's
    ``<=`` rule: image b loses the first ``count[b]`` neurons of a stable sort by (score, key). The
    decision goes through :func:`pathlib_pw.decisions.checkpoint` (``near_zero`` and ``scale`` are
    passed on; the recorded cut is the score of the last neuron removed).
    """
    flat = pooled(scores)
    count = count.to(torch.long).cpu()
    cut = kth_smallest([flat], torch.clamp(count - 1, min=0))
    below = flat < cut.view(-1, 1)
    tied = flat == cut.view(-1, 1)
    needed = count - count_true(below).cpu()
    if tie_keys is not None:
        if tuple(tie_keys.shape) != tuple(flat.shape) or tie_keys.is_complex() or tie_keys.dtype == torch.bool:
            raise ValueError(
                f"tie_keys must be a real (B, total neurons) = {tuple(flat.shape)} tensor, one key per neuron, got "
                f"{tie_keys.dtype} of shape {tuple(tie_keys.shape)}"
            )
        remove = below | _first_by_key(tied, tie_keys.to(flat.device), needed)
    else:
        remove = below | (tied & (tied.cumsum(1) <= needed.to(flat.device).view(-1, 1)))
    remove &= (count > 0).to(flat.device).view(-1, 1)
    return decisions.checkpoint(scores, split_like(~remove, scores), cut, near_zero, scale)


def _first_by_key(tied: torch.Tensor, keys: torch.Tensor, needed: torch.Tensor) -> torch.Tensor:
    """Of each row's tied neurons, the ``needed[b]`` with the smallest keys (equal keys: the earlier
    position first). Selected among the tied neurons only: a round's tied block is a fraction of the
    network, and selecting over every neuron's key cost Greedy a third of its time."""

    def pick(b: int) -> torch.Tensor:
        out = torch.zeros_like(tied[b])
        n = int(needed[b])
        if n <= 0:
            return out
        where = torch.nonzero(tied[b]).flatten()
        if n >= len(where):
            out[where] = True
            return out
        row = keys[b, where].to(torch.float64)
        cut = kth_smallest([row.view(1, -1)], torch.tensor([n - 1]))[0].to(row.device)
        first = row < cut
        equal = row == cut
        take = first | (equal & (equal.cumsum(0) <= n - int(first.sum())))
        out[where[take]] = True
        return out

    return torch.stack(map_images(pick, tied.shape[0]))


def threshold_pathway(
    scores: Sequence[torch.Tensor],
    sparsity: torch.Tensor,
    sites: Sequence[str],
    method: str,
    *,
    near_zero: Sequence[torch.Tensor] | None = None,
    **info: Any,
) -> Pathway:
    """The pathway of :func:`global_threshold`, with the requested sparsity and cut in ``info``
    (``near_zero``: see :func:`global_threshold`)."""
    masks, cut, kept = _thresholded(scores, sparsity, True, near_zero)
    # the selection counted what it kept: no pass over the masks to count them again
    realized = realized_sparsity(masks) if kept is None else sparsity_of_kept(kept, sum(m[0].numel() for m in masks))
    info = {"requested_sparsity": sparsity.float(), "threshold": cut.float().cpu(), **info}
    return Pathway(list(masks), list(sites), realized, method, info)


def tie_broken_pathway(
    scores: Sequence[torch.Tensor],
    sparsity: torch.Tensor,
    sites: Sequence[str],
    method: str,
    tie_keys: torch.Tensor,
    *,
    whole_channels: bool = False,
    **info: Any,
) -> Pathway:
    """The paper's percentile rule with position-neutral ties: exactly :func:`percentile_count` neurons
    removed per image, the lowest scores first and scores equal at the cut in the order of ``tie_keys``
    (see :func:`remove_lowest`). Where no score ties the cut, the masks of :func:`threshold_pathway`.
    ``whole_channels``: a channel the count cuts is removed whole (for per-channel scores, whose
    neurons share one tie key), so up to one channel more than the count goes. ``info`` records the
    tied block at the cut (``tied_share``) and the share removed from it (``tie_removed_share``)."""
    masks = remove_lowest(scores, percentile_count(scores, sparsity), tie_keys=tie_keys)
    if whole_channels:
        masks = [m & m.flatten(2).all(2).view(*m.shape[:2], *([1] * (m.dim() - 2))) if m.dim() > 2 else m for m in masks]
    tied, tie_removed = _tied_at_cut(scores, masks)
    return Pathway.from_masks(
        masks, sites, method, requested_sparsity=sparsity.float(), tied_share=tied, tie_removed_share=tie_removed, **info
    )


def _tied_at_cut(scores: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the share of all neurons whose score equals the highest removed score, and the share
    removed from that tied block (the part the tie order chose). Both 0 when nothing is removed."""
    flat, kept = pooled(scores), pooled(masks)
    removed = ~kept
    cut = torch.where(removed, flat, torch.full_like(flat, -torch.inf)).amax(1, keepdim=True)
    tied = (flat == cut) & removed.any(1, keepdim=True)
    n = flat.shape[1]
    return (count_true(tied).double() / n).float().cpu(), (count_true(tied & removed).double() / n).float().cpu()
