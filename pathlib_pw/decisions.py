"""Threshold decisions, recorded and replayed: cached results that can be checked on any machine.

Every mask in pathlib_pw comes out of a threshold decision: per image, scores in, keep-mask out
(:func:`pathlib_pw.thresholds.global_threshold`, :func:`~pathlib_pw.thresholds.remove_lowest`). Float sums
differ between CPUs, thread counts, batch splits and GPUs; a neuron whose score sits near the cut may
land on the other side, and in an iterative criterion (Greedy's 99 rounds) one changed neuron changes
every later round. A cached result can therefore not be recomputed bit for bit on another machine,
and a plain tolerance on the final numbers either fails there or hides real changes.

Under :func:`recording`, each decision about the recorded images is summarized per image: the kept
count per site, the cut, and an invertible sketch of the kept set (an invertible Bloom lookup table;
Goodrich and Mitzenmacher 2011) a few kilobytes in size. Under :func:`replaying`, a recomputation's
decisions are compared with those records: the neurons that differ are recovered exactly from the
two sketches; at most the criterion's ``capacity`` may differ, each with a score within its ``band``
of the cut (:class:`Rounding`); then the recorded mask is restored, so that everything downstream
(the next Greedy round, maps, output changes, overlaps) runs on the recorded masks and can be compared
with tight tolerances. A criterion whose masks rounding reshuffles beyond repair (DGR with gates
starting at 1, whose gates barely separate) is ``"chaotic"``: its kept set is compared by an estimated
overlap and not restored, and the numbers derived from it get tolerances derived from that overlap.

Decisions are keyed by ``scope | image | ordinal``: experiments name the images of a batch
(:func:`images`, e.g. their index in the experiment) and the part of the computation (:func:`scope`,
e.g. the criterion or the randomization stage), so a replay may batch the images differently.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

__all__ = [
    "EXACT",
    "Check",
    "DecisionLog",
    "ReplayReport",
    "Rounding",
    "Sketch",
    "checkpoint",
    "criterion",
    "images",
    "recording",
    "replaying",
    "rows",
    "scope",
    "widened",
]


@dataclasses.dataclass(frozen=True)
class Rounding:
    """How far rounding may move one criterion's threshold decisions.

    ``kind``: ``"exact"`` (no float decides the mask, e.g. Random: every neuron must agree),
    ``"threshold"`` (scores against a cut: at most ``capacity`` x neurons (and never fewer than
    ``MIN_CHANGES``) may change per decision,
    each with ``|score - cut| <= band x scale``, scale = max(|cut|, the image's mean |score|)) or
    ``"chaotic"`` (the kept set must overlap the recorded one by at least ``overlap``, Jaccard).
    """

    kind: Literal["exact", "threshold", "chaotic"]
    capacity: float = 0.0
    band: float = 0.0
    overlap: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("exact", "threshold", "chaotic"):
            raise ValueError(f"kind must be one of ['exact', 'threshold', 'chaotic'], got {self.kind!r}")


EXACT = Rounding("exact")
# a threshold decision over a small net (the digits CNN's 3,584 neurons) still sees a few scores within
# rounding of the cut: 2 flipped on a build without SIMD, where the capacity alone would allow 1
MIN_CHANGES = 3
_MIN_CELLS = 24  # sketch cells per decision at least: decodes a handful of differences at any size
_MINHASH_BINS = 1024
_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1


# ---- the sketches -------------------------------------------------------------------------------

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


# ---- records ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    """One decision about one image, as recorded."""

    kind: str
    neurons: int
    kept: int
    site_kept: np.ndarray
    cut: float
    complement: bool  # the sketch holds the removed neurons (fewer than the kept ones)
    sketch: Sketch | None  # None for chaotic decisions
    signature: np.ndarray  # minhash for chaotic, else empty


@dataclasses.dataclass
class DecisionLog:
    """Recorded decisions by key ``scope|image|ordinal``; saved beside a cached result."""

    records: dict[str, Record] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, keys: Sequence[str]) -> DecisionLog:
        return DecisionLog({k: self.records[k] for k in keys if k in self.records})

    def save(self, path: Path) -> None:
        keys = list(self.records)
        recs = [self.records[k] for k in keys]
        empty = Sketch(np.zeros(0, np.uint8), np.zeros(0, np.uint32), np.zeros(0, np.uint16))
        sketches = [r.sketch or empty for r in recs]

        def ragged(arrays: list[np.ndarray], dtype: type) -> tuple[np.ndarray, np.ndarray]:
            flat: np.ndarray = (
                np.concatenate([np.asarray(a).reshape(-1) for a in arrays]).astype(dtype) if arrays else np.zeros(0, dtype)
            )
            return flat, np.cumsum([0] + [np.asarray(a).size for a in arrays])

        site_kept, site_offsets = ragged([r.site_kept for r in recs], np.int64)
        count, cell_offsets = ragged([k.count for k in sketches], np.uint8)
        cell_keys, _ = ragged([k.keys for k in sketches], np.uint32)
        checks, _ = ragged([k.checks for k in sketches], np.uint16)
        signatures, signature_offsets = ragged([r.signature for r in recs], np.uint32)
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                keys=np.array(keys, dtype=str),
                kind=np.array([r.kind for r in recs], dtype=str),
                neurons=np.array([r.neurons for r in recs], dtype=np.int64),
                kept=np.array([r.kept for r in recs], dtype=np.int64),
                cut=np.array([r.cut for r in recs], dtype=np.float64),
                complement=np.array([r.complement for r in recs], dtype=bool),
                site_kept=site_kept,
                site_offsets=site_offsets,
                cell_count=count,
                cell_keys=cell_keys,
                cell_checks=checks,
                cell_offsets=cell_offsets,
                signatures=signatures,
                signature_offsets=signature_offsets,
            )

    @classmethod
    def load(cls, path: Path) -> DecisionLog:
        with np.load(path) as d:
            data = {k: d[k] for k in d.files}
        records = {}

        def part(values: str, offsets: str, i: int) -> np.ndarray:
            return data[values][data[offsets][i] : data[offsets][i + 1]]

        for i, key in enumerate(data["keys"].tolist()):
            count = part("cell_count", "cell_offsets", i)
            records[key] = Record(
                kind=str(data["kind"][i]),
                neurons=int(data["neurons"][i]),
                kept=int(data["kept"][i]),
                site_kept=part("site_kept", "site_offsets", i),
                cut=float(data["cut"][i]),
                complement=bool(data["complement"][i]),
                sketch=Sketch(count, part("cell_keys", "cell_offsets", i), part("cell_checks", "cell_offsets", i))
                if count.size
                else None,
                signature=part("signatures", "signature_offsets", i),
            )
        return cls(records)


@dataclasses.dataclass
class Check:
    """The outcome of one replayed decision."""

    key: str
    kind: str
    changed: int = 0  # neurons whose recomputed decision differs from the recorded one
    allowed: int = 0
    worst_band: float = 0.0  # the largest |score - cut| / scale among the changed neurons
    band: float = 0.0
    overlap: float | None = None  # chaotic: estimated Jaccard of recomputed and recorded kept sets
    overlap_low: float | None = None  # ... minus three standard errors
    restored: bool = True  # the recorded mask was restored
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclasses.dataclass
class ReplayReport:
    """What a replay saw: one :class:`Check` per decision, and the recorded decisions it never met."""

    checks: list[Check] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    unused: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unused and all(c.ok for c in self.checks)

    @property
    def changed(self) -> int:
        """Neurons changed by rounding and restored to the recorded decision, all decisions together."""
        return sum(c.changed for c in self.checks if c.kind != "chaotic" and c.changed > 0)

    def problems(self) -> list[str]:
        out = [f"{c.key}: {c.problem}" for c in self.checks if c.problem]
        out += [
            f"{k}: no recorded decision (the cache holds records for other images or parts; an experiment numbers its "
            f"images from config.inputs.offset in decisions.images)"
            for k in self.missing
        ]
        out += [f"{k}: recorded but not made by the recomputation" for k in self.unused]
        return out

    def chaotic(self) -> dict[str, Check]:
        return {c.key: c for c in self.checks if c.kind == "chaotic"}


# ---- the active recording or replay ----------------------------------------------------------------


@dataclasses.dataclass
class _Session:
    mode: Literal["record", "replay"]
    log: DecisionLog
    wanted: frozenset[str] | None = None  # record: only these image keys
    report: ReplayReport = dataclasses.field(default_factory=ReplayReport)
    used: set[str] = dataclasses.field(default_factory=set)
    ordinals: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)


_SESSION: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("pathlib_pw_decisions", default=None)
_SCOPE: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("pathlib_pw_scope", default=())
_IMAGES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("pathlib_pw_images", default=None)
_ROUNDING: contextvars.ContextVar[Rounding] = contextvars.ContextVar("pathlib_pw_rounding", default=EXACT)
_WIDENED: contextvars.ContextVar[float] = contextvars.ContextVar("pathlib_pw_widened", default=1.0)


@contextlib.contextmanager
def _set(var: contextvars.ContextVar, value: object) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def scope(name: str) -> contextlib.AbstractContextManager[None]:
    """Name the part of a computation whose decisions follow (nested scopes join with ``/``)."""
    if "|" in name:
        raise ValueError(f"name must not contain '|', got {name!r}")
    return _set(_SCOPE, _SCOPE.get() + (name,))


def images(keys: Sequence[object]) -> contextlib.AbstractContextManager[None]:
    """Name the images of the batch whose decisions follow, one key per row (e.g. their index)."""
    names = tuple(str(k) for k in keys)
    if any("|" in k for k in names):
        raise ValueError("image keys must not contain '|'")
    return _set(_IMAGES, names)


def rows(index: slice) -> contextlib.AbstractContextManager[None]:
    """The named images restricted to ``index`` (a chunk of the batch); no-op when none are named."""
    current = _IMAGES.get()
    return _set(_IMAGES, None if current is None else current[index])


def criterion(rounding: Rounding) -> contextlib.AbstractContextManager[None]:
    """The rounding class of the criterion whose decisions follow."""
    return _set(_ROUNDING, rounding)


def widened(factor: float) -> contextlib.AbstractContextManager[None]:
    """Every threshold criterion's capacity and band times ``factor`` inside the block, for records and
    replays alike: a measurement of how far rounding really moves the decisions (the sketches then
    decode ``factor`` times more changes), never a verification (scripts/measure_rounding.py)."""
    if not (isinstance(factor, (int, float)) and factor >= 1):
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    return _set(_WIDENED, float(factor))


def _active_rounding() -> Rounding:
    rounding, factor = _ROUNDING.get(), _WIDENED.get()
    if rounding.kind != "threshold" or factor == 1.0:
        return rounding
    return dataclasses.replace(rounding, capacity=rounding.capacity * factor, band=rounding.band * factor)


@contextlib.contextmanager
def recording(only: Sequence[object] | None = None) -> Iterator[DecisionLog]:
    """Record the decisions made inside the block (for the image keys in ``only``, default all)."""
    session = _Session("record", DecisionLog(), None if only is None else frozenset(str(k) for k in only))
    with _set(_SESSION, session), _set(_SCOPE, ()), _set(_IMAGES, None):
        yield session.log


@contextlib.contextmanager
def replaying(log: DecisionLog, complete: bool = True) -> Iterator[ReplayReport]:
    """Check the decisions made inside the block against ``log`` and restore the recorded masks.

    With ``complete``, recorded decisions that the block did not make are reported as ``unused``.
    """
    session = _Session("replay", log)
    with _set(_SESSION, session), _set(_SCOPE, ()), _set(_IMAGES, None):
        yield session.report
    if complete:
        session.report.unused = [k for k in log.records if k not in session.used]


def replayed_keys(report: ReplayReport) -> list[str]:
    return [c.key for c in report.checks]


# ---- the hook in the threshold functions ------------------------------------------------------------


def _flat(tensors: Sequence[torch.Tensor], b: int) -> np.ndarray:
    return np.concatenate([t[b].detach().reshape(-1).cpu().numpy() for t in tensors])


def checkpoint(
    scores: Sequence[torch.Tensor],
    masks: list[torch.Tensor],
    cut: torch.Tensor,
    near_zero: Sequence[torch.Tensor] | None = None,
    scale: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Record or replay one threshold decision per image; returns the masks to use.

    ``scores`` and ``masks`` are per site (B, ...); ``cut`` (B,) the score at the cut. ``near_zero``
    (optional, per site): neurons whose decision also hangs on a value within rounding of zero (an
    activation that may be exactly 0 on one machine and tiny on another). ``scale`` (B,): the band's
    unit (default max(|cut|, mean |score|)). Outside :func:`recording` / :func:`replaying` the masks
    pass through unchanged.
    """
    session = _SESSION.get()
    if session is None:
        return masks
    batch = masks[0].shape[0]
    keys = _IMAGES.get()
    if keys is None:
        keys = tuple(str(b) for b in range(batch))
    if len(keys) != batch:
        raise ValueError(f"{len(keys)} image keys are named (decisions.images) but the decision is about {batch} images")
    prefix = "/".join(_SCOPE.get())
    rounding = _active_rounding()
    sizes = [m[0].numel() for m in masks]
    bounds = np.cumsum([0] + sizes)
    repaired: dict[int, torch.Tensor] = {}
    for b, image in enumerate(keys):
        ordinal = session.ordinals[(prefix, image)]
        session.ordinals[(prefix, image)] += 1
        key = f"{prefix}|{image}|{ordinal}"
        if session.mode == "record":
            if session.wanted is None or image in session.wanted:
                session.log.records[key] = _record(masks, b, float(cut[b]), rounding, bounds)
            continue
        record = session.log.records.get(key)
        if record is None:
            session.report.missing.append(key)
            continue
        session.used.add(key)
        check, flips = _replay(key, record, masks, b, rounding, bounds)
        if flips is not None and len(flips):
            check.worst_band = _worst_band(scores, masks, near_zero, scale, cut, b, flips, bounds)
            if check.worst_band > rounding.band:
                check.problem = (
                    f"{len(flips)} neurons changed, one of them {check.worst_band:.3g} x scale from the cut "
                    f"(allowed: {rounding.band:g})"
                )
            for site in np.unique(np.searchsorted(bounds, flips, side="right") - 1):
                local = flips[(flips >= bounds[site]) & (flips < bounds[site + 1])] - bounds[site]
                m = repaired.get(site)
                if m is None:
                    m = repaired[site] = masks[site].clone()
                row = m[b].view(-1)
                where = torch.as_tensor(local, dtype=torch.long, device=row.device)
                row[where] = ~row[where]
        session.report.checks.append(check)
    if repaired:
        masks = [repaired.get(s, m) for s, m in enumerate(masks)]
    return masks


def _record(masks: list[torch.Tensor], b: int, cut: float, rounding: Rounding, bounds: np.ndarray) -> Record:
    flat = _flat(masks, b)
    neurons = flat.size
    kept = int(np.count_nonzero(flat))
    site_kept = np.array([np.count_nonzero(flat[bounds[s] : bounds[s + 1]]) for s in range(len(bounds) - 1)])
    if rounding.kind == "chaotic":
        return Record("chaotic", neurons, kept, site_kept, cut, False, None, minhash(np.flatnonzero(flat)))
    complement = kept > neurons // 2
    members = np.flatnonzero(~flat if complement else flat)
    allowed = 0 if rounding.kind == "exact" else math.ceil(rounding.capacity * neurons)
    return Record(
        rounding.kind, neurons, kept, site_kept, cut, complement, sketch(members, _cells(allowed)), np.zeros(0, np.uint32)
    )


def _cells(changes: int) -> int:
    """Sketch cells that decode a difference of ``changes`` neurons."""
    return _cells_for(max(_MIN_CELLS, math.ceil(1.3 * changes) + 12))


def _replay(
    key: str, record: Record, masks: list[torch.Tensor], b: int, rounding: Rounding, bounds: np.ndarray
) -> tuple[Check, np.ndarray | None]:
    flat = _flat(masks, b)
    check = Check(key, record.kind, band=rounding.band)
    if record.kind != rounding.kind:
        check.problem = f"recorded as a {record.kind} decision, recomputed as a {rounding.kind} one"
        return check, None
    if flat.size != record.neurons:
        check.problem = f"{flat.size} neurons recomputed, {record.neurons} recorded"
        return check, None
    check.allowed = 0 if record.kind == "exact" else max(MIN_CHANGES, math.ceil(rounding.capacity * record.neurons))
    if record.kind == "chaotic":
        check.restored = False
        j, se = overlap_estimate(minhash(np.flatnonzero(flat)), record.signature)
        check.overlap, check.overlap_low = j, max(0.0, j - 3 * se)
        kept = int(np.count_nonzero(flat))
        check.changed = abs(kept - record.kept)
        if j < rounding.overlap:
            check.problem = (
                f"kept set overlaps the recorded one by {j:.3f} (Jaccard, estimated; at least {rounding.overlap} required)"
            )
        return check, None
    members = np.flatnonzero(~flat if record.complement else flat)
    assert record.sketch is not None
    decoded = difference(sketch(members, record.sketch.cells), record.sketch, record.neurons)
    if decoded is None:
        kept = int(np.count_nonzero(flat))
        check.changed = -1
        check.problem = (
            f"the kept set differs from the recorded one in more neurons than rounding can explain "
            f"(at most {check.allowed} may change; {kept} kept now, {record.kept} recorded)"
        )
        if record.sketch.cells < _cells(check.allowed):
            check.problem += (
                "; this record's sketch decodes fewer changes than the criterion now allows (it was recorded "
                "with a smaller capacity): recompute the cache with --force"
            )
        return check, None
    flips = np.array(sorted(decoded[0] + decoded[1]), dtype=np.int64)
    check.changed = len(flips)
    if check.changed > check.allowed:
        check.problem = f"{check.changed} neurons changed (at most {check.allowed} may, {rounding.kind})"
    return check, flips


def _worst_band(
    scores: Sequence[torch.Tensor],
    masks: list[torch.Tensor],
    near_zero: Sequence[torch.Tensor] | None,
    scale: torch.Tensor | None,
    cut: torch.Tensor,
    b: int,
    flips: np.ndarray,
    bounds: np.ndarray,
) -> float:
    """The largest |score - cut| / scale among the changed neurons (0 for those near zero)."""
    s = _flat(scores, b).astype(np.float64)
    c = float(cut[b])
    if scale is None:
        finite = s[np.isfinite(s)]
        unit = max(abs(c), float(np.abs(finite).mean()) if finite.size else 0.0)
    else:
        unit = float(scale[b])
    distance = np.abs(s[flips] - c) / unit if unit > 0 else np.where(s[flips] == c, 0.0, np.inf)
    if near_zero is not None:
        distance = np.where(_flat(near_zero, b)[flips], 0.0, distance)
    return float(distance.max())


def summary(report: ReplayReport) -> Mapping[str, object]:
    """Counts for a report line: decisions, neurons changed and restored, chaotic overlaps."""
    chaotic = [c.overlap for c in report.checks if c.kind == "chaotic" and c.overlap is not None]
    return {
        "decisions": len(report.checks),
        "changed": report.changed,
        "worst_band": max((c.worst_band for c in report.checks), default=0.0),
        "chaotic_min_overlap": min(chaotic) if chaotic else None,
    }
