"""Bit-level summaries of sets of neuron indices: the invertible sketch whose difference decodes to the
neurons two sets disagree on (an invertible Bloom lookup table; Goodrich and Mitzenmacher 2011), and a
MinHash signature whose agreement estimates two sets' Jaccard overlap (for chaotic criteria).

Every hash is a fixed function of the index alone (splitmix64's finalizer), so a sketch recorded on one
machine decodes against one computed on another: the recorded ``decisions.npz`` files depend on it bit
for bit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

_MINHASH_BINS = 1024
_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix(x: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64's finalizer of ``x + seed * golden`` (uint64, wrapping)."""
    z = x.astype(np.uint64) + np.uint64((seed * _GOLDEN) & _M64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mix_int(x: int, seed: int) -> int:
    """:func:`_mix` of one Python int."""
    z = (x + seed * _GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


_CHECK_SEED = 7
_MINHASH_SEED = 11


def _cell_sums(cells: np.ndarray, values: np.ndarray, size: int, bits: int) -> np.ndarray:
    """Per-cell sums of ``values`` (< 2**32) modulo 2**bits, exact (two 16-bit halves in float64)."""
    lo = np.bincount(cells, weights=(values & np.uint64(0xFFFF)).astype(np.float64), minlength=size)
    hi = np.bincount(cells, weights=(values >> np.uint64(16)).astype(np.float64), minlength=size)
    return (lo.astype(np.uint64) + (hi.astype(np.uint64) << np.uint64(16))) & np.uint64((1 << bits) - 1)


def _cells_for(n_cells: int) -> int:
    return 3 * max(1, math.ceil(n_cells / 3))


@dataclasses.dataclass
class Sketch:
    """Invertible sketch of a set of neuron indices (< 2**32): per cell the element count modulo
    2**8, the sum of the elements modulo 2**32 and the sum of a 16-bit check hash modulo 2**16, in
    three partitions (each element in one cell of each). 7 bytes a cell."""

    count: np.ndarray  # uint8
    keys: np.ndarray  # uint32
    checks: np.ndarray  # uint16

    @property
    def cells(self) -> int:
        return self.count.size


def sketch(indices: np.ndarray, n_cells: int) -> Sketch:
    """The :class:`Sketch` of a set of non-negative int indices, with about ``n_cells`` cells.

    The difference of two sketches decodes to the symmetric difference of their sets when it holds
    fewer than about ``n_cells / 1.3`` elements (:func:`difference`).
    """
    n_cells = _cells_for(n_cells)
    q = n_cells // 3
    idx = np.asarray(indices, dtype=np.uint64)
    check = _mix(idx, _CHECK_SEED) & np.uint64(0xFFFF)
    count = np.zeros(n_cells, dtype=np.uint64)
    keys = np.zeros(n_cells, dtype=np.uint64)
    checks = np.zeros(n_cells, dtype=np.uint64)
    for p in range(3):
        cells = (_mix(idx, p) % np.uint64(q)).astype(np.int64) + p * q
        count += np.bincount(cells, minlength=n_cells).astype(np.uint64)
        keys += _cell_sums(cells, idx, n_cells, 32)
        checks += _cell_sums(cells, check, n_cells, 16)
    return Sketch(
        (count & np.uint64(0xFF)).astype(np.uint8),
        (keys & np.uint64(_M32)).astype(np.uint32),
        (checks & np.uint64(0xFFFF)).astype(np.uint16),
    )


def difference(fresh: Sketch, recorded: Sketch, limit: int = 1 << 32) -> tuple[list[int], list[int]] | None:
    """The elements only in the fresh set and only in the recorded set (both below ``limit``), or
    None when more differ than the sketches can resolve."""
    if fresh.cells != recorded.cells:
        raise ValueError(f"sketches of different sizes: {fresh.cells} and {recorded.cells} cells")
    n_cells = fresh.cells
    q = n_cells // 3
    count = [(c + 128) % 256 - 128 for c in ((fresh.count.astype(np.int64) - recorded.count.astype(np.int64)) % 256).tolist()]
    keys = ((fresh.keys.astype(np.int64) - recorded.keys.astype(np.int64)) & _M32).tolist()
    checks = ((fresh.checks.astype(np.int64) - recorded.checks.astype(np.int64)) & 0xFFFF).tolist()
    only_fresh: list[int] = []
    only_recorded: list[int] = []
    stack = [c for c in range(n_cells) if count[c] in (1, -1)]
    while stack:
        c = stack.pop()
        sign = count[c]
        if sign not in (1, -1):
            continue
        key = keys[c] if sign == 1 else (-keys[c]) & _M32
        check = _mix_int(key, _CHECK_SEED) & 0xFFFF
        # pure: one element (or its removal) alone in the cell; a mixed cell passes all three tests
        # with a probability of about 2**-16 / q x limit / 2**32
        if key >= limit or _mix_int(key, c // q) % q + (c // q) * q != c:
            continue
        if check != (checks[c] if sign == 1 else (-checks[c]) & 0xFFFF):
            continue
        (only_fresh if sign == 1 else only_recorded).append(key)
        for p in range(3):
            cell = _mix_int(key, p) % q + p * q
            count[cell] = (count[cell] - sign + 128) % 256 - 128
            keys[cell] = (keys[cell] - sign * key) & _M32
            checks[cell] = (checks[cell] - sign * check) & 0xFFFF
            if count[cell] in (1, -1):
                stack.append(cell)
    if any(count) or any(keys) or any(checks):
        return None
    return sorted(only_fresh), sorted(only_recorded)


def minhash(indices: np.ndarray, bins: int = _MINHASH_BINS) -> np.ndarray:
    """One-permutation MinHash (Li, Owen and Zhang 2012): per bin the 32-bit fingerprint of the
    smallest hash of the set's elements in that bin, ``2**32 - 1`` for an empty bin."""
    h = _mix(np.asarray(indices, dtype=np.uint64), _MINHASH_SEED)
    bits = int(math.log2(bins))
    which = (h >> np.uint64(64 - bits)).astype(np.int64)
    value = h & np.uint64((1 << (64 - bits)) - 1)
    lowest = np.full(bins, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(lowest, which, value)
    out = (_mix(lowest, 3) & np.uint64(_M32)).astype(np.uint32)
    out[lowest == np.iinfo(np.uint64).max] = _M32
    return out


def overlap_estimate(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Estimated Jaccard overlap of two sets from their :func:`minhash` signatures, and its standard error."""
    used = (a != _M32) | (b != _M32)
    if not used.any():
        return 1.0, 0.0
    j = float(((a == b) & used).sum() / used.sum())
    return j, math.sqrt(max(j * (1 - j), 1.0 / used.sum()) / used.sum())
