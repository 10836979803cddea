"""Tables of the sanity checks from cached results of :mod:`pathlib_pw.experiments.sanity`: what the
notebook shows."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def similarity_table(results: Any, metric: str, kind: str = "cascading", stat: str = "mean") -> pd.DataFrame:
    """Stages x methods: the ``stat`` (``mean``, ``std`` or ``count`` of defined values) over images.

    ``kind`` is ``"cascading"`` or ``"independent"``. NaN entries (a constant map) are left out.
    """
    import pandas as pd

    metrics = [str(m) for m in results["metrics"]]
    if metric not in metrics:
        raise ValueError(f"metric must be one of {metrics}, got {metric!r}")
    if kind not in ("cascading", "independent"):
        raise ValueError(f"kind must be 'cascading' or 'independent', got {kind!r}")
    stats: dict[str, Callable[..., np.ndarray]] = {
        "mean": np.nanmean,
        "std": np.nanstd,
        "count": lambda v, axis: np.isfinite(v).sum(axis),
    }
    if stat not in stats:
        raise ValueError(f"stat must be one of {sorted(stats)}, got {stat!r}")
    values = results[kind][..., metrics.index(metric)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        table = stats[stat](values, axis=0)
    index = results["stages" if kind == "cascading" else "independent_stages"]
    return pd.DataFrame(table, index=[str(s) for s in index], columns=[str(m) for m in results["methods"]])


def per_photo(results: Any, metric: str, stage: str, kind: str = "cascading") -> pd.DataFrame:
    """Photos x columns: each map's similarity to the trained map after ``stage`` (NaN: a constant map)."""
    import pandas as pd

    metrics = [str(m) for m in results["metrics"]]
    if metric not in metrics:
        raise ValueError(f"metric must be one of {metrics}, got {metric!r}")
    stages = [str(s) for s in results["stages" if kind == "cascading" else "independent_stages"]]
    if stage not in stages:
        raise ValueError(f"stage must be one of {stages}, got {stage!r}")
    values = results[kind][:, stages.index(stage), :, metrics.index(metric)]
    return pd.DataFrame(values, index=[str(n) for n in results["names"]], columns=[str(m) for m in results["methods"]])


def against_gradients(results: Any, metric: str, stage: str, reference: str = "Gradients") -> pd.DataFrame:
    """Per map: mean similarity after ``stage`` and its 95 % bootstrap interval over the photos, and
    the same for its paired difference to ``reference``'s (photos where either map is constant are
    left out of that map's row; ``n`` counts the photos used)."""
    import pandas as pd

    from pathlib_pw.statistics import bootstrap_interval

    photos = per_photo(results, metric, stage)
    if reference not in photos:
        raise ValueError(f"reference must be one of {list(photos.columns)}, got {reference!r}")
    rows = {}
    for column in photos.columns:
        pair = photos[[column, reference]].dropna().to_numpy()
        if len(pair) == 0:
            rows[column] = dict.fromkeys(("mean", "low", "high", "difference", "difference low", "difference high", "n"), np.nan)
            continue
        mean, low, high = bootstrap_interval(pair[:, 0])
        diff, dlow, dhigh = bootstrap_interval(pair[:, 0] - pair[:, 1])
        rows[column] = {
            "mean": float(mean),
            "low": float(low),
            "high": float(high),
            "difference": float(diff),
            "difference low": float(dlow),
            "difference high": float(dhigh),
            "n": len(pair),
        }
    return pd.DataFrame(rows).T


def interval_curves(results: Any, metric: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stages x columns: the mean over photos and its 95 % bootstrap interval (low, high), each
    column over the photos where its map is defined; for curves with bands."""
    import pandas as pd

    from pathlib_pw.statistics import bootstrap_interval

    stages = [str(s) for s in results["stages"]]
    means, lows, highs = (pd.DataFrame(index=stages, columns=[str(m) for m in results["methods"]], dtype=float) for _ in range(3))
    for stage in stages:
        photos = per_photo(results, metric, stage)
        for column in photos.columns:
            values = photos[column].dropna().to_numpy()
            if len(values):
                means.loc[stage, column], lows.loc[stage, column], highs.loc[stage, column] = map(
                    float, bootstrap_interval(values)
                )
    return means, lows, highs
