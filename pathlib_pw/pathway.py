"""A pathway: one boolean keep-mask per rectifier site, per image (PAPER.md section 2)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from pathlib_pw import decisions
from pathlib_pw.sites import Edit, Trace, hooked

T = TypeVar("T")


@dataclasses.dataclass
class Pathway:
    """Binary masks (1 = kept) for B images.

    ``masks[s]`` has shape ``(B, *site_shape)`` and dtype bool, ``sites[s]`` is the site's name (see
    :mod:`pathlib_pw.sites`), ``sparsity`` is the realized share of removed neurons in percent,
    shape ``(B,)``. ``info`` carries per-criterion extras (requested sparsity, thresholds, DGR
    convergence flags ...), each a tensor with a leading batch dimension or a plain value.
    """

    masks: list[torch.Tensor]
    sites: list[str]
    sparsity: torch.Tensor
    method: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.masks) != len(self.sites):
            raise ValueError(f"masks has {len(self.masks)} entries but sites has {len(self.sites)}")
        if self.masks and any(m.dtype != torch.bool for m in self.masks):
            raise TypeError("masks must be boolean tensors")

    @classmethod
    def from_masks(cls, masks: Sequence[torch.Tensor], sites: Sequence[str], method: str = "", **info: Any) -> Pathway:
        masks = [m.bool() for m in masks]
        return cls(list(masks), list(sites), realized_sparsity(masks), method, dict(info))

    @property
    def batch_size(self) -> int:
        return self.masks[0].shape[0]

    def __len__(self) -> int:
        return self.batch_size

    @property
    def num_neurons(self) -> int:
        """Neurons per image, all sites together."""
        return sum(m[0].numel() for m in self.masks)

    def kept_per_site(self) -> torch.Tensor:
        """Share of kept neurons, shape (B, n_sites)."""
        return torch.stack([m.flatten(1).float().mean(1) for m in self.masks], dim=1)

    def flat(self) -> torch.Tensor:
        """All masks of each image concatenated: (B, num_neurons)."""
        return _pooled(self.masks)

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> Pathway:
        if isinstance(index, int):
            index = [index]
        return Pathway(
            [m[index] for m in self.masks],
            list(self.sites),
            self.sparsity[index],
            self.method,
            {k: (v[index] if _is_batched(v, self.batch_size) else v) for k, v in self.info.items()},
        )

    def to(self, device: torch.device | str) -> Pathway:
        return dataclasses.replace(self, masks=[m.to(device) for m in self.masks], sparsity=self.sparsity.to(device))

    @staticmethod
    def cat(paths: Sequence[Pathway]) -> Pathway:
        """Concatenate the images of several pathways over the same sites."""
        if not paths:
            raise ValueError("paths must contain at least one Pathway")
        first = paths[0]
        if any(p.sites != first.sites for p in paths):
            raise ValueError("pathways to concatenate must have the same sites")
        info: dict[str, Any] = {}
        for key, value in first.info.items():
            values = [p.info.get(key) for p in paths]
            if all(_is_batched(v, p.batch_size) for v, p in zip(values, paths)):
                info[key] = torch.cat([v.to(value.device) for v in values])
            else:
                info[key] = value
        return Pathway(
            [torch.cat([p.masks[s] for p in paths]) for s in range(len(first.sites))],
            list(first.sites),
            torch.cat([p.sparsity for p in paths]),
            first.method,
            info,
        )

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Multiply every rectifier output of ``model`` by this pathway's mask inside the block.

        The masks broadcast over the batch when the pathway holds one image. The hooks are removed
        on exit, also when the body raises.
        """
        def check_count(trace: Trace) -> None:
            if len(trace.calls) != len(self.masks):
                raise ValueError(
                    f"the model made {len(trace.calls)} rectifier calls but this pathway has {len(self.masks)} "
                    "sites: the pathway was extracted from a different model"
                )

        with hooked(model, masking(self.masks, self.sites), keep_outputs=False, on_end=check_count):
            yield


def masking(masks: Sequence[torch.Tensor], sites: Sequence[str]) -> Edit:
    """A :func:`~pathlib_pw.sites.hooked` edit that multiplies each rectifier output by its mask.

    A mask with one image broadcasts over the batch; a site count or shape that does not match the
    model raises ValueError.
    """
    float_masks: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}

    def edit(index: int, output: torch.Tensor) -> torch.Tensor:
        if index >= len(masks):
            raise ValueError(
                f"the model has more rectifier calls than this pathway has sites ({len(masks)}): "
                "the pathway was extracted from a different model"
            )
        mask = masks[index]
        if tuple(mask.shape[1:]) != tuple(output.shape[1:]) or mask.shape[0] not in (1, output.shape[0]):
            raise ValueError(
                f"pathway site {sites[index]!r} has mask shape {tuple(mask.shape)} but the rectifier "
                f"output has shape {tuple(output.shape)}: use the input size and batch the pathway was "
                "extracted with (or a one-image pathway, which broadcasts)"
            )
        key = (output.device, output.dtype)
        if key not in float_masks:
            # a product with a float mask: torch.where or masked_fill is twice as slow on the CPU
            float_masks[key] = [m.to(device=output.device, dtype=output.dtype) for m in masks]
        return output * float_masks[key][index]

    return edit


def _is_batched(value: Any, batch: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == batch


def realized_sparsity(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Percent of removed neurons per image, shape (B,)."""
    kept = sum(count_true(m).to(torch.float64) for m in masks)
    total = sum(m[0].numel() for m in masks)
    return (100.0 * (1.0 - kept / total)).float()


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
        raise ValueError(f"{name} must be in [0, 100) percent (share of neurons removed), got {sparsity!r}")
    return values


def global_threshold(
    scores: Sequence[torch.Tensor], sparsity: torch.Tensor, *, checkpoint: bool = True
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Keep-masks from the paper's global percentile rule, per image.

    All sites' scores of one image are pooled; ``thr`` is their ``p``-th percentile (linear
    interpolation, as ``numpy.percentile``) and every neuron with ``score <= thr`` is removed. With
    pos = p/100 * (N-1) and k = floor(pos), ``thr`` lies in ``[v_k, v_{k+1})`` of the sorted scores,
    and no score lies strictly between two neighbouring order statistics: the removed set is exactly
    ``score <= v_k``. One order statistic per image therefore gives the paper's masks. Returns the masks
    and ``v_k`` (B,), the largest removed score. With ``checkpoint`` the decision goes through
    :func:`pathlib_pw.decisions.checkpoint` (recorded or replayed when an experiment asks for it).
    """
    n = sum(s[0].numel() for s in scores)
    k = torch.floor(sparsity.to(torch.float64).cpu() / 100.0 * (n - 1)).long()
    cut = kth_smallest(scores, k)
    masks = [s > per_image(cut.to(s.device), s) for s in scores]
    return (decisions.checkpoint(scores, masks, cut) if checkpoint else masks), cut


def remove_lowest(
    scores: Sequence[torch.Tensor],
    count: torch.Tensor,
    near_zero: Sequence[torch.Tensor] | None = None,
    scale: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Keep-masks that remove exactly ``count[b]`` lowest-scored neurons of image b, all sites pooled.

    Ties at the cut are broken by position (site order, then element order), so the result is
    deterministic and the removed count exact, unlike the paper's ``<=`` rule. The decision goes
    through :func:`pathlib_pw.decisions.checkpoint` (``near_zero`` and ``scale`` are passed on).
    """
    flat = _pooled(scores)
    count = count.to(torch.long).cpu()
    cut = kth_smallest([flat], torch.clamp(count - 1, min=0))
    below = flat < cut.view(-1, 1)
    tied = flat == cut.view(-1, 1)
    needed = (count.to(flat.device) - count_true(below)).view(-1, 1)
    remove = below | (tied & (tied.cumsum(1) <= needed))
    remove &= (count > 0).to(flat.device).view(-1, 1)
    return decisions.checkpoint(scores, _split_like(~remove, scores), cut, near_zero, scale)


def _pooled(per_site: Sequence[torch.Tensor]) -> torch.Tensor:
    """All sites of each image side by side: (B, total neurons)."""
    return torch.cat([t.flatten(1) for t in per_site], dim=1)


def _split_like(flat: torch.Tensor, per_site: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Undo :func:`_pooled`: one tensor per site, shaped like ``per_site``."""
    out, start = [], 0
    for t in per_site:
        size = t[0].numel()
        out.append(flat[:, start : start + size].view(t.shape))
        start += size
    return out


def threshold_pathway(
    scores: Sequence[torch.Tensor], sparsity: torch.Tensor, sites: Sequence[str], method: str, **info: Any
) -> Pathway:
    """The pathway of :func:`global_threshold`, with the requested sparsity and cut in ``info``."""
    masks, cut = global_threshold(scores, sparsity)
    return Pathway.from_masks(
        masks, sites, method, requested_sparsity=sparsity.float(), threshold=cut.float().cpu(), **info
    )


def count_true(mask: torch.Tensor) -> torch.Tensor:
    """Number of True elements per image: (B,) int64, on the mask's device.

    On the CPU numpy counts; torch's boolean sum is about ten times slower there.
    """
    rows = mask.flatten(1)
    if rows.device.type != "cpu":
        return rows.sum(1)
    return torch.from_numpy(np.count_nonzero(rows.numpy(), axis=1).astype(np.int64))


_NUMPY_SELECTABLE = (torch.float16, torch.float32, torch.float64)


def kth_smallest(per_site: Sequence[torch.Tensor], k: torch.Tensor) -> torch.Tensor:
    """The (k+1)-th smallest score of each image, all sites pooled (k is 0-based, one per image).

    NaN counts as largest. On the CPU each image's scores are concatenated and selected with numpy
    (``np.partition``, SIMD-sorted since numpy 2), one image per thread: four to eight times faster
    than torch's ``topk`` or ``kthvalue`` there, and no (B, total) buffer, whose fresh pages alone
    cost as much as the selection. Elsewhere :func:`sampled_kth` on the pooled scores.
    """
    k = k.to(torch.long).cpu()
    if all(s.device.type == "cpu" and s.dtype in _NUMPY_SELECTABLE for s in per_site):
        arrays = [s.detach().flatten(1).numpy() for s in per_site]

        def select(b: int) -> np.generic:
            row = np.concatenate([a[b] for a in arrays])
            row.partition(int(k[b]))
            return row[int(k[b])]

        return torch.from_numpy(np.array(map_images(select, len(k))))
    return sampled_kth(_pooled(per_site), k)


def sampled_kth(flat: torch.Tensor, k: torch.Tensor, samples: int = 65536) -> torch.Tensor:
    """Exact (k+1)-th smallest value of each row, by a sampled bracket; for GPUs.

    ``torch.kthvalue`` gives each row to one thread block, which leaves most of a GPU idle on a few
    rows of millions of scores. Here a sorted random sample of each row brackets the wanted order
    statistic between two sample values ``lo < hi``; a few element-wise passes over all rows count
    the scores below, at and between them, and only the scores strictly between them (a few per
    thousand) are selected from. Rows where the bracket misses, or that contain NaN, use
    ``kthvalue``. The result is the same order statistic, whatever the sample.
    """
    batch, n = flat.shape
    k = k.to(torch.long).cpu()
    if n <= 4 * samples:
        return _kthvalue_rows(flat, k)
    device = flat.device
    kd = k.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    sample = flat.gather(1, torch.randint(n, (batch, samples), device=device, generator=gen)).sort(1).values
    share = kd.double() / (n - 1)
    margin = 4.0 * torch.sqrt(samples * share * (1 - share)) + 16.0
    centre = share * (samples - 1)
    lo = sample.gather(1, (centre - margin).floor().clamp(0, samples - 1).long().view(-1, 1))
    hi = sample.gather(1, (centre + margin).ceil().clamp(0, samples - 1).long().view(-1, 1))
    below = count_true(flat < lo)
    at_lo = count_true(flat == lo)
    between = (flat > lo) & (flat < hi)
    inside = count_true(between)
    at_hi = torch.where(hi.view(-1) > lo.view(-1), count_true(flat == hi), 0)
    rank = kd - below  # the wanted value's rank among the scores >= lo
    on_lo = (rank >= 0) & (rank < at_lo)
    rank_inside = rank - at_lo
    on_inside = (rank_inside >= 0) & (rank_inside < inside)
    on_hi = (rank_inside >= inside) & (rank_inside < inside + at_hi)
    valid = ~torch.isnan(flat).any(1)
    on_lo, on_inside, on_hi = on_lo & valid, on_inside & valid, on_hi & valid
    out = torch.where(on_lo, lo.view(-1), hi.view(-1))
    rows = on_inside.nonzero().view(-1).tolist()
    if rows:
        # row-major order: the selected scores come row by row, in the order of ``rows``
        values = flat.masked_select(between & on_inside.view(-1, 1)).split(inside[rows].tolist())
        out[rows] = torch.stack([v.kthvalue(int(r) + 1).values for v, r in zip(values, rank_inside[rows].tolist())])
    missed = (~(on_lo | on_inside | on_hi)).nonzero().view(-1).tolist()
    if missed:
        out[missed] = _kthvalue_rows(flat[missed], k[missed])
    return out


def _kthvalue_rows(flat: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    if not bool((k == k[0]).all()):
        return torch.cat([flat[b : b + 1].kthvalue(int(k[b]) + 1, dim=1).values for b in range(len(k))])
    return flat.kthvalue(int(k[0]) + 1, dim=1).values


def map_images(fn: Callable[[int], T], count: int) -> list[T]:
    """``[fn(0), ..., fn(count - 1)]``, one image per CPU thread.

    For per-image work that torch or numpy does in one long single-threaded kernel (a selection, a
    permutation), which releases the GIL: the threads run it side by side.
    """
    workers = max(1, min(count, torch.get_num_threads()))
    if workers == 1:
        return [fn(b) for b in range(count)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, range(count)))


def per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) values shaped to broadcast against a (B, ...) tensor."""
    return values.view(-1, *([1] * (like.dim() - 1)))
