"""The hook in the threshold functions: :func:`checkpoint` records one threshold decision per image under
:func:`~pathlib_pw.decisions.recording`, or under :func:`~pathlib_pw.decisions.replaying` checks it
against its record (which neurons changed, how many, how near the cut) and returns the recorded masks.

Callers reach it as ``decisions.checkpoint(...)`` through the package, so that the attribute is resolved
at call time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from pathlib_pw.decisions.records import Check, Record
from pathlib_pw.decisions.session import _IMAGES, _SCOPE, _SESSION, MIN_CHANGES, Rounding, _active_rounding
from pathlib_pw.decisions.sketches import _cells_for, difference, minhash, overlap_estimate, sketch

_MIN_CELLS = 24  # sketch cells per decision at least: decodes a handful of differences at any size


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
