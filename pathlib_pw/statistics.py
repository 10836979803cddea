"""Intervals the book puts beside every mean over a few images or models: a percentile bootstrap
over images (skewed per-image values, paired columns) and Student-t over a handful of retrained
models (too few values for a bootstrap)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats

__all__ = ["BOOTSTRAP_SEED", "RESAMPLES", "bootstrap_interval", "t_interval"]

RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def bootstrap_interval(
    values: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    statistic: Literal["mean", "median"] = "mean",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``statistic`` over the first axis (the images) and its 95 % percentile bootstrap interval:
    ``resamples`` draws of as many images with replacement (the same draws for every column, so
    paired columns stay paired). NaN bounds for fewer than two images."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] == 0:
        raise ValueError(f"values must have at least one image along the first axis, got shape {values.shape}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be an int >= 1, got {resamples!r}")
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be one of ['mean', 'median'], got {statistic!r}")
    n = values.shape[0]
    centre = values.mean(0) if statistic == "mean" else np.median(values, 0)
    if n < 2:
        nan = np.full_like(centre, np.nan)
        return centre, nan, nan
    rng = np.random.default_rng(seed)
    if statistic == "mean":
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)  # (R, n)
        draws = (counts @ values.reshape(n, -1) / n).reshape(resamples, *values.shape[1:])
    else:
        draws = np.median(values[rng.integers(0, n, size=(resamples, n))], axis=1)
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return centre, low, high


def t_interval(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and its 95 % Student-t interval along ``axis`` (NaN bounds for fewer than two values)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    mean = values.mean(axis)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    half = stats.t.ppf(0.975, n - 1) * values.std(axis, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half
