"""Tables of the local-linearity experiment (:mod:`.local_linearity`) for the book and the claims registry.

A photo's number for a path is the median over the random directions; across the photos, the median
with its 95 % bootstrap interval. Paths are compared per photo, on the same directions, by the ratio
of their first-order errors (below 1: the first path is more linear).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pathlib_pw.experiments.local_linearity import FULL
from pathlib_pw.statistics import bootstrap_interval

REFERENCE_GREY_LEVEL = 1.0  # the verdict's radius: one 8-bit grey level per pixel value (RMS)


def grey_index(results: Mapping[str, np.ndarray], grey_level: float) -> int:
    levels = [float(v) for v in results["grey_levels"]]
    if grey_level not in levels:
        raise ValueError(f"grey_level must be one of {levels}, got {grey_level!r}")
    return levels.index(grey_level)


def per_photo(
    results: Mapping[str, np.ndarray], measure: str, path: str, sparsity: float | None = None, grey_level: float | None = None
) -> np.ndarray:
    """The photos' values of ``measure`` for ``path`` (``FULL`` or a criterion label at ``sparsity``):
    the median over the directions (and at ``grey_level`` for the measures that have radii)."""
    if path == FULL:
        values = np.asarray(results[f"{measure}_full"], dtype=np.float64)
    else:
        labels = [str(c) for c in results["criteria"]]
        levels = [float(s) for s in results["sparsities"]]
        if path not in labels:
            raise ValueError(f"path must be {FULL!r} or one of {labels}, got {path!r}")
        if sparsity not in levels:
            raise ValueError(f"sparsity must be one of {levels}, got {sparsity!r}")
        values = np.asarray(results[measure], dtype=np.float64)[:, labels.index(path), levels.index(sparsity)]
    if measure in ("relative_error", "gradient_cosine", "flip_share"):
        if grey_level is None:
            raise ValueError(f"{measure} needs a grey_level")
        values = values[:, grey_index(results, grey_level)]
    if measure == "radius":
        values = values / grey_unit(results)
    if values.ndim == 1:
        return values
    # a photo whose every direction is undefined (a logit that never moves) stays NaN, without a warning
    defined = np.isfinite(values).any(-1)
    out = np.full(len(values), np.nan)
    out[defined] = np.nanmedian(values[defined], axis=-1)
    return out


def grey_unit(results: Mapping[str, np.ndarray]) -> float:
    """The L2 radius (pixel units of the 0-1 image) of a ball of one grey level per pixel value (RMS)."""
    return float(results["radii"][0] / results["grey_levels"][0])


def paths_of(results: Mapping[str, np.ndarray]) -> list[tuple[str, float | None]]:
    """Every measured path: the full network, then each criterion at each sparsity."""
    return [(FULL, None)] + [(str(c), float(s)) for s in results["sparsities"] for c in results["criteria"]]


def summary_table(results: Mapping[str, np.ndarray], grey_level: float = REFERENCE_GREY_LEVEL) -> pd.DataFrame:
    """Per path: realized sparsity, median output change, and the medians over the photos of the
    first-order error (with its 95 % interval), the gradient cosine and the flipped share at
    ``grey_level``, the exact linear radius (in thousandths of a grey level: it is that small) and
    the gradient norm relative to the full network's."""
    full_norm = per_photo(results, "gradient_norm", FULL)
    rows = {}
    for path, level in paths_of(results):
        error = per_photo(results, "relative_error", path, level, grey_level) * 100
        med, low, high = bootstrap_interval(error, statistic="median")
        norm = per_photo(results, "gradient_norm", path, level) / full_norm
        row = {
            "realized sparsity (%)": 0.0 if level is None else float(np.mean(per_photo(results, "realized", path, level))),
            "median output change (%)": 0.0
            if level is None
            else float(np.median(per_photo(results, "output_change", path, level)) * 100),
            "first-order error (%)": float(med),
            "95% low": float(low),
            "95% high": float(high),
            "gradient cosine": float(np.median(per_photo(results, "gradient_cosine", path, level, grey_level))),
            "flipped (% of kept)": float(np.median(per_photo(results, "flip_share", path, level, grey_level)) * 100),
            "linear radius (1/1000 grey level)": float(np.median(per_photo(results, "radius", path, level))) * 1000,
            "gradient norm (% of full)": float(np.median(norm)) * 100,
        }
        rows[(f"{level:g} %" if level is not None else "-", path)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["sparsity", "path"]
    return table


def error_ratio(
    results: Mapping[str, np.ndarray], path: str, other: str, sparsity: float, grey_level: float = REFERENCE_GREY_LEVEL
) -> tuple[float, float, float]:
    """The median over the photos of the ratio of ``path``'s first-order error to ``other``'s (the
    full network when ``other`` is ``FULL``) at ``grey_level``, with its 95 % bootstrap interval;
    photos where either error is undefined (a logit that does not move) are left out."""
    a = per_photo(results, "relative_error", path, sparsity, grey_level)
    b = per_photo(results, "relative_error", other, None if other == FULL else sparsity, grey_level)
    ok = np.isfinite(a) & np.isfinite(b) & (b > 0)
    if not ok.any():
        return math.nan, math.nan, math.nan
    med, low, high = bootstrap_interval(a[ok] / b[ok], statistic="median")
    return float(med), float(low), float(high)


def comparison_table(
    results: Mapping[str, np.ndarray], paths: Sequence[str], sparsity: float, grey_level: float = REFERENCE_GREY_LEVEL
) -> pd.DataFrame:
    """Each of ``paths`` against the full network and every other criterion at ``sparsity``: the
    median error ratio and its interval, and whether the other path keeps the output (median change
    at most 15 %)."""
    rows = {}
    others = [FULL] + [str(c) for c in results["criteria"]]
    for path in paths:
        for other in others:
            if other == path:
                continue
            ratio, low, high = error_ratio(results, path, other, sparsity, grey_level)
            change = 0.0 if other == FULL else float(np.median(per_photo(results, "output_change", other, sparsity)) * 100)
            rows[(path, other)] = {
                "error ratio": ratio,
                "95% low": low,
                "95% high": high,
                "other's median output change (%)": change,
            }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["path", f"against (at {sparsity:g} %)"]
    return table


def curve_frames(
    results: Mapping[str, np.ndarray], measure: str, sparsity: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """For the figures: ``measure`` (``relative_error`` in percent, ``gradient_cosine`` or
    ``flip_share`` in percent) against the radius in grey levels, one column per path (the full
    network and every criterion at ``sparsity``): the median over the photos and its 95 % bootstrap
    interval (low, high)."""
    scale = 1.0 if measure == "gradient_cosine" else 100.0
    paths = [(FULL, None)] + [(str(c), sparsity) for c in results["criteria"]]
    med, low, high = ({} for _ in range(3))
    for path, level in paths:
        values = np.stack([per_photo(results, measure, path, level, float(g)) for g in results["grey_levels"]], 1) * scale
        m, lo, hi = bootstrap_interval(values, statistic="median")
        med[path], low[path], high[path] = m, lo, hi
    index = pd.Index([float(g) for g in results["grey_levels"]], name="radius (grey levels per pixel value, RMS)")
    return tuple(pd.DataFrame(frame, index=index) for frame in (med, low, high))


def movement_matched(results: Mapping[str, np.ndarray], path: str, control: str, sparsity: float) -> tuple[int, int]:
    """The comparison at equal logit movement instead of equal input distance: per photo, ``path``'s
    first-order error at the smallest radius against ``control``'s at the largest radius where the
    control's first-order movement (radius x gradient norm) is still at most the path's. Returns
    (photos where ``path`` is the more linear, photos compared); a photo where even the control's
    largest radius moves the logit more, or where an error is undefined, is not compared."""
    grey = [float(g) for g in results["grey_levels"]]
    moves = {p: per_photo(results, "gradient_norm", p, sparsity) for p in (path, control)}
    own = per_photo(results, "relative_error", path, sparsity, grey[0])
    theirs = {g: per_photo(results, "relative_error", control, sparsity, g) for g in grey}
    wins = compared = 0
    for i in range(len(results["names"])):
        allowed = [g for g in grey if g * moves[control][i] <= grey[0] * moves[path][i]]
        if not allowed:
            continue
        other = theirs[max(allowed)][i]
        if np.isfinite(own[i]) and np.isfinite(other):
            compared += 1
            wins += int(own[i] < other)
    return wins, compared
