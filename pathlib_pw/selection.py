"""Per-image selection kernels over pooled scores: order statistics, counts, per-image threads.

The threshold rules (:mod:`pathlib_pw.thresholds`) need one order statistic per image over millions
of scores; these kernels pick the fastest exact way per device (a sampled bracket in numpy, one
image per thread, on the CPU; a sampled bracket over the pooled scores on a GPU). The Performance
page has the measurements behind each choice.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")
S = TypeVar("S", float, torch.Tensor)

__all__ = [
    "above_kth",
    "add_all",
    "any_true",
    "count_true",
    "kth_smallest",
    "kthvalue_rows",
    "map_images",
    "per_image",
    "pooled",
    "sampled_kth",
    "split_like",
]


def pooled(per_site: Sequence[torch.Tensor]) -> torch.Tensor:
    """All sites of each image side by side: (B, total neurons)."""
    return torch.cat([t.flatten(1) for t in per_site], dim=1)


def split_like(flat: torch.Tensor, per_site: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Undo :func:`_pooled`: one tensor per site, shaped like ``per_site``."""
    out, start = [], 0
    for t in per_site:
        size = t[0].numel()
        out.append(flat[:, start : start + size].view(t.shape))
        start += size
    return out


def count_true(mask: torch.Tensor) -> torch.Tensor:
    """Number of True elements per image: (B,) int64, on the mask's device.

    On the CPU numpy counts: torch's boolean sum is much slower there (Performance page).
    """
    return _count_true(mask, by_numpy=mask.device.type == "cpu")


def any_true(mask: torch.Tensor) -> torch.Tensor:
    """Whether each image's mask holds a True: (B,) bool on the mask's device.

    On the CPU numpy's ``any``, which stops at a row's first True (torch's reads every element, and
    ten times slower than numpy counts them)."""
    rows = mask.flatten(1)
    if mask.device.type != "cpu":
        return rows.any(1)
    return torch.from_numpy(rows.numpy().any(1))


def _count_true(mask: torch.Tensor, by_numpy: bool) -> torch.Tensor:
    """:func:`count_true` with the device's choice made by the caller, so that the tests run the
    GPU's branch (torch's sum) on the CPU too."""
    rows = mask.flatten(1)
    if not by_numpy:
        return rows.sum(1)
    # row by row: numpy's count over a whole row is SIMD, its count along an axis 12 times slower
    return torch.tensor([np.count_nonzero(row) for row in rows.numpy()], dtype=torch.int64)


_NUMPY_SELECTABLE = (torch.float16, torch.float32, torch.float64)


def kth_smallest(per_site: Sequence[torch.Tensor], k: torch.Tensor) -> torch.Tensor:
    """The (k+1)-th smallest score of each image, all sites pooled (k is 0-based, one per image).

    NaN counts as largest. On the CPU, one image per thread, :func:`_bracketed_kth` on that image's
    scores site by site (no concatenated copy, no (B, total) buffer): faster there than sorting the
    image's scores, than torch's ``topk`` or ``kthvalue``, and than ``np.partition``, whose selection
    took 40 times longer on some images with many tied scores (Performance page). Elsewhere
    :func:`sampled_kth` on the pooled scores.
    """
    return _select(per_site, k, masks=False)[0]


def above_kth(per_site: Sequence[torch.Tensor], k: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """:func:`kth_smallest`'s cut, per site the mask of the scores above it (``s > cut``, as torch
    compares), and the number of scores above it per image ((B,) int64, on the masks' device).

    On the CPU the bracket's own pass writes the masks and counts them: the comparison with its upper
    bound is most of every mask, and only the values it kept (about 1 %) are compared with the cut; a
    call that ends in another branch compares and counts in numpy (the same IEEE ``>``). That spares a
    full pass over the scores and one over the masks (optimization log). Elsewhere the cut of
    :func:`sampled_kth`, torch's comparison and :func:`count_true`.
    """
    cut, above, counts = _select(per_site, k, masks=True)
    assert above is not None and counts is not None
    return cut, above, counts


def _select(
    per_site: Sequence[torch.Tensor], k: torch.Tensor, masks: bool
) -> tuple[torch.Tensor, list[torch.Tensor] | None, torch.Tensor | None]:
    """:func:`kth_smallest`, and with ``masks`` :func:`above_kth`'s masks and counts (else None)."""
    k = k.to(torch.long).cpu()
    _check_ranks(k, per_site[0].shape[0] if per_site else 0, sum(s[0].numel() for s in per_site))
    if all(s.device.type == "cpu" and s.dtype in _NUMPY_SELECTABLE for s in per_site):
        arrays = [s.detach().flatten(1).numpy() for s in per_site]
        if not masks:
            values = map_images(lambda b: _bracketed_kth([a[b] for a in arrays], int(k[b])), len(k))
            return torch.from_numpy(np.array(values)), None, None
        above = [torch.empty(s.shape, dtype=torch.bool) for s in per_site]
        outs = [m.view(m.shape[0], -1).numpy() for m in above]
        found = map_images(lambda b: _bracketed_above([a[b] for a in arrays], int(k[b]), [o[b] for o in outs]), len(k))
        return torch.from_numpy(np.array([v for v, _ in found])), above, torch.tensor([c for _, c in found], dtype=torch.int64)
    cut = sampled_kth(pooled(per_site), k)
    if not masks:
        return cut, None, None
    above = [s > per_image(cut.to(s.device), s) for s in per_site]
    return cut, above, add_all(count_true(m) for m in above)


def _sorted_kth(parts: Sequence[np.ndarray], k: int) -> np.generic:
    """The (k+1)-th smallest of the parts together by a full sort (numpy's sort puts NaN last)."""
    return _sorted(np.concatenate(parts))[k]


def _sorted(row: np.ndarray) -> np.ndarray:
    """``row`` sorted in place; float16 sorted as float32 (exact): numpy's vectorized float16 sort
    misplaces values among many infinities on AVX-512 CPUs (``[-2] + [-inf] * 543`` starts with -2)."""
    if row.dtype == np.float16:
        return np.sort(row.astype(np.float32)).astype(np.float16)
    row.sort()
    return row


def _bracket(share: S, samples: int) -> tuple[S, S]:
    """Where the value of relative rank ``share`` (k / (n - 1), a float or a tensor of them) falls
    among ``samples`` sorted sample values, and the bracket's half-width around it: four standard
    deviations of the sample's count below that value, plus 16 values."""
    return share * (samples - 1), 4.0 * (samples * share * (1 - share)) ** 0.5 + 16.0


def _partition(values: np.ndarray, ranks: list[int]) -> None:
    """``values`` rearranged in place so that ``values[r]`` is what a sort would put there, for each r in
    ``ranks`` (numpy's introselect; NaN last, as its sort puts it)."""
    values.partition(ranks)


def _bracketed_kth(parts: Sequence[np.ndarray], k: int, samples: int = 65536) -> np.generic:
    """The (k+1)-th smallest value of the 1-d arrays ``parts`` taken together (NaN largest), exactly.

    :func:`sampled_kth`'s bracket in numpy for one image: a sample of at least ``samples`` values
    (every ``n // samples``-th value from a random start in each part: an even sample read in order,
    where random positions cost a cache miss each) gives ``lo <= hi`` around rank k, two of its
    order statistics; one pass per part counts the values below ``lo`` and keeps those in ``[lo, hi]``
    (about 1 % of them), and the wanted one is selected among those. Both selections partition
    (numpy's introselect, NaN last as in its sort) rather than sort: three times faster on 65,536
    values, and the same order statistics. A bound the sample holds twice may be a large block of
    tied values (the dead neurons' zeros): its values are counted, not kept. A NaN compares false
    both ways, so the same counts find one without a pass of its own. A bracket that misses rank k,
    or a NaN anywhere, falls back to sorting every value: the result is the same order statistic
    whatever the sample, the sample only decides how fast it comes (only the sign of a zero may differ
    from the sort's, which places equal zeros in no set order: they compare equal, every threshold
    decision is the same).
    """
    return _bracketed(parts, k, samples, None)[0]


def _bracketed_above(
    parts: Sequence[np.ndarray], k: int, above: Sequence[np.ndarray], samples: int = 65536
) -> tuple[np.generic, int]:
    """:func:`_bracketed_kth`'s value, each ``above[i]`` (a boolean array shaped like ``parts[i]``) set
    to ``parts[i] > value``, and how many values that is. Where the bracket answers, its comparison
    with ``hi`` becomes the mask and its count, and only the kept values are compared with the value;
    elsewhere numpy compares and counts."""
    value, count = _bracketed(parts, k, samples, above)
    if count is None:
        count = sum(int(np.count_nonzero(np.greater(p, value, out=out))) for p, out in zip(parts, above))
    return value, count


def _bracketed(
    parts: Sequence[np.ndarray], k: int, samples: int, above: Sequence[np.ndarray] | None
) -> tuple[np.generic, int | None]:
    """:func:`_bracketed_kth`'s value, and, where ``above`` was filled with ``parts[i] > value`` on the
    way (only where the value is one of the kept ones), the number of values above it (else None)."""
    n = sum(p.size for p in parts)
    if n <= 4 * samples:
        return _sorted_kth(parts, k), None
    stride = n // samples
    rng = np.random.default_rng(0)
    sample = np.concatenate([p[int(rng.integers(0, min(stride, p.size))) :: stride] for p in parts if p.size])
    m = len(sample)
    centre, margin = _bracket(k / (n - 1), m)
    bounds = [max(0, int(np.floor(centre - margin))), min(m - 1, int(np.ceil(centre + margin)))]
    _partition(sample, bounds)
    lo, hi = sample[bounds[0]], sample[bounds[1]]
    # a value the sample holds twice may be a large tied block (the dead neurons' zeros): counted, not kept
    tied_lo, tied_hi = np.count_nonzero(sample == lo) > 1, np.count_nonzero(sample == hi) > 1
    below, at_lo, at_hi = 0, 0, 0
    above_hi = 0  # with ``above``: the values its comparison with hi put there
    unordered = 0  # values neither >= lo nor <= hi: NaN (lo < hi), or a NaN bound
    inside, where = [], []
    # boolean buffers reused for every part, not a fresh site-sized temporary per comparison; with
    # ``above`` the last comparison (up to hi) is written there, and inverted it is the mask above hi
    largest = max(p.size for p in parts)
    keep_buffer, test_buffer = np.empty(largest, dtype=bool), np.empty(largest, dtype=bool)
    for i, p in enumerate(parts):
        keep = keep_buffer[: p.size]
        test = test_buffer[: p.size] if above is None or lo == hi else above[i]
        if lo == hi:
            not_below = int(np.count_nonzero(np.greater_equal(p, lo, out=keep)))
            part_below = int(np.count_nonzero(np.less(p, lo, out=test)))
            below += part_below
            unordered += p.size - not_below - part_below
            at_lo += int(np.count_nonzero(np.equal(p, lo, out=test)))
            continue
        # from lo: > lo where lo is a tied block (counted apart), else >= lo; upto: < hi where hi is, else <= hi
        from_lo = int(np.count_nonzero((np.greater if tied_lo else np.greater_equal)(p, lo, out=keep)))
        part_at_lo = int(np.count_nonzero(np.equal(p, lo, out=test))) if tied_lo else 0
        part_at_hi = int(np.count_nonzero(np.equal(p, hi, out=test))) if tied_hi else 0
        upto = int(np.count_nonzero((np.less if tied_hi else np.less_equal)(p, hi, out=test)))
        keep &= test
        if above is None:
            kept = p[keep]
        else:
            positions = np.flatnonzero(keep)
            kept = p[positions]
            where.append(positions)
            np.logical_not(test, out=test)
            above_hi += p.size - upto
        # every ordered value is from lo or up to hi, or both (lo < hi): those both are the ones kept
        unordered += p.size - from_lo - upto + kept.size
        below += p.size - from_lo - part_at_lo
        at_lo += part_at_lo
        at_hi += part_at_hi
        inside.append(kept)
    if unordered:
        return _sorted_kth(parts, k), None
    rank = k - below
    if 0 <= rank < at_lo:
        return lo, None
    rank -= at_lo
    values = np.concatenate(inside) if inside else sample[:0]
    if len(values) <= rank < len(values) + at_hi:
        return hi, None
    if not 0 <= rank < len(values):
        return _sorted_kth(parts, k), None
    _partition(values, [rank])
    value = values[rank]
    if above is None:
        return value, None
    # the mask is "above hi" (or "at or above hi" where hi is a tied block, which lies above the
    # value: the value is a kept one, below hi); of the kept values those above the value join it
    count = above_hi
    for out, positions, kept in zip(above, where, inside):
        joining = positions[kept > value]
        out[joining] = True
        count += joining.size
    return value, count


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
    _check_ranks(k, batch, n)
    if n <= 4 * samples:
        return kthvalue_rows(flat, k)
    device = flat.device
    kd = k.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    sample = flat.gather(1, torch.randint(n, (batch, samples), device=device, generator=gen)).sort(1).values
    centre, margin = _bracket(kd.double() / (n - 1), samples)
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
        out[missed] = kthvalue_rows(flat[missed], k[missed])
    return out


def _check_ranks(k: torch.Tensor, batch: int, n: int) -> None:
    """A ValueError unless ``k`` holds one 0-based rank per image, each in 0 .. n - 1."""
    if k.shape != (batch,):
        raise ValueError(f"k must hold one rank per image ({batch}), got shape {tuple(k.shape)}")
    if batch and (int(k.min()) < 0 or int(k.max()) >= n):
        bad = int(k.min()) if int(k.min()) < 0 else int(k.max())
        raise ValueError(f"k must be a 0-based rank from 0 to n - 1 = {n - 1} (n = {n} scores per image), got k = {bad}")


def kthvalue_rows(flat: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``torch.kthvalue`` per row: the (k[b]+1)-th smallest of row b (one call when all k agree)."""
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


def add_all(values: Iterable[torch.Tensor]) -> torch.Tensor:
    """The tensors added up in order: ``sum(values)`` with a tensor's type, the same float sums."""
    return functools.reduce(operator.add, values)


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` for the block, restored after (also after an error)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
