"""Tables of the sanity checks from cached results of :mod:`pathlib_pw.experiments.sanity`: what the
notebook shows."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
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


def chance_levels(results: Any, metric: str, columns: Sequence[str] | None = None) -> pd.Series:
    """Per map (``columns``, default all): the mean similarity between the trained maps of two
    different photos (every unordered pair, constant maps left out). What a map of that method scores
    against an unrelated map of its kind: sparse maps score a high SSIM against any sparse map. Needs
    the trained maps (``sanity.Config(keep_trained_maps=True)``)."""
    import pandas as pd

    from pathlib_pw.sanity import similarity

    try:
        maps = results["trained_maps"]
    except KeyError:
        raise ValueError("results hold no trained maps: run the experiment with keep_trained_maps=True") from None
    labels = [str(m) for m in results["methods"]]
    chosen = labels if columns is None else list(columns)
    unknown = [c for c in chosen if c not in labels]
    if unknown:
        raise ValueError(f"columns must be among {labels}, got {unknown}")
    out = {}
    for column in chosen:
        m = labels.index(column)
        values = [
            similarity(maps[i, m].astype(np.float32), maps[j, m].astype(np.float32), metrics=(metric,))[metric]
            for i in range(len(maps))
            for j in range(i + 1, len(maps))
        ]
        out[column] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return pd.Series(out, name=f"chance {metric}")


def against_gradients(
    results: Any, metric: str, stage: str, reference: str = "Gradients", chance: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Per map: mean similarity after ``stage`` and its 95 % bootstrap interval over the photos, and
    the same for its paired difference to ``reference``'s (photos where either map is constant are
    left out of that map's row; ``n`` counts the photos used). With ``chance`` (per map, e.g.
    :func:`chance_levels`), each similarity ``s`` is first rescaled to ``(s - chance) / (1 - chance)``:
    0 at the chance level, 1 for an unchanged map. Maps without a chance level are left out."""
    import pandas as pd

    from pathlib_pw.statistics import bootstrap_interval

    photos = per_photo(results, metric, stage)
    if chance is not None:
        photos = pd.DataFrame(
            {c: (photos[c] - chance[c]) / (1.0 - chance[c]) for c in photos.columns if c in chance}, index=photos.index
        )
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
