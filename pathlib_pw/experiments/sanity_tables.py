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
