"""Tables of the LeRF / MoRF chapter from cached results of :mod:`pathlib_pw.experiments.lerf`: what the
notebook shows. AUCs follow the authors' rule (trapezoids over the removed percent, y(0) = 0); intervals
are 95 % Student-t intervals over images, and comparisons between two methods are paired per image."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from pathlib_pw.attribution_methods import ACCUMULATED, PATHWAY_GRAD
from pathlib_pw.criteria import CRITERIA
from pathlib_pw.experiments.attribution import PAPER_METHODS
from pathlib_pw.reference import authors_table
from pathlib_pw.removal import area_under_curve

if TYPE_CHECKING:
    import pandas as pd

# the authors' method names (lerf_authors.csv, the labels of the paper's figures) -> our registry names
AUTHORS_NAMES = {
    **{label: PATHWAY_GRAD + m if m in CRITERIA else m for label, m in PAPER_METHODS.items()},
    "NeuronIntGrad*": PATHWAY_GRAD + ACCUMULATED,
}
LABELS = {
    "gradients": "Gradients",
    "guided_backprop": "Guided Backprop",
    "gradcam": "Grad-CAM",
    "input_mct": "InputMCT",
    "input_intgrad": "InputIntGrad",
    "pathway_grad/neuron_mct": "PathwayGrad, NeuronMCT",
    "pathway_grad/neuron_intgrad": "PathwayGrad, NeuronIntGrad",
    "pathway_grad/neuron_intgrad_accumulated": "PathwayGrad, NeuronIntGrad*",
    "random": "random (control)",
    "sobel": "Sobel edges (control)",
}
# The authors' ImageNet NeuronIntGrad row repeats their Birdsnap row value for value (PAPER.md, known slips)
COPY_SLIP = ("imagenet", "NeuronIntGrad")


def _index(results: Mapping[str, np.ndarray], key: str, value: str) -> int:
    values = [str(v) for v in results[key]]
    if value not in values:
        raise ValueError(f"{key[:-1]} must be one of {values}, got {value!r}")
    return values.index(value)


def label(method: str) -> str:
    """The method's name on the page (``name@90``: the name, at 90 % sparsity)."""
    name, _, level = method.partition("@")
    return f"{LABELS.get(name, name)}, {float(level):g} %" if level else LABELS.get(name, name)


def aucs(results: Mapping[str, np.ndarray], order: str, removal: str = "mean/float32") -> np.ndarray:
    """(images, methods): each image's area under its removal curve, the authors' rule."""
    curves = results["curves"][:, :, _index(results, "orders", order), _index(results, "removals", removal)]
    return area_under_curve(results["percents"].astype(np.float64), curves.astype(np.float64)).numpy()


def interval(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and its 95 % Student-t interval along ``axis`` (NaN bounds for fewer than two values)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    mean = values.mean(axis)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    half = stats.t.ppf(0.975, n - 1) * values.std(axis, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def auc_table(results: Mapping[str, np.ndarray], removal: str = "mean/float32") -> pd.DataFrame:
    """Methods x (LeRF, MoRF): mean AUC over images with its 95 % interval, and MoRF - LeRF."""
    import pandas as pd

    columns: dict[str, np.ndarray] = {}
    for order, name in (("least", "LeRF"), ("most", "MoRF")):
        mean, low, high = interval(aucs(results, order, removal))
        columns[f"{name} AUC"], columns[f"{name} 95% low"], columns[f"{name} 95% high"] = mean, low, high
    table = pd.DataFrame(columns, index=[label(str(m)) for m in results["methods"]])
    table.index.name = "method"
    return table


def paired_differences(results: Mapping[str, np.ndarray], method: str, order: str, removal: str = "mean/float32") -> pd.DataFrame:
    """For every other method: mean of (other AUC - ``method``'s AUC) per image, its 95 % interval and
    the share of images where ``method`` is better (lower AUC under LeRF, higher under MoRF)."""
    import pandas as pd

    values = aucs(results, order, removal)
    m = _index(results, "methods", method)
    rows = {}
    for j, other in enumerate(str(o) for o in results["methods"]):
        if j == m:
            continue
        diff = values[:, j] - values[:, m]
        mean, low, high = interval(diff)
        better = diff > 0 if order == "least" else diff < 0
        rows[label(other)] = {
            "difference": mean,
            "95% low": low,
            "95% high": high,
            "method better (share of images)": better.mean(),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "compared with"
    return table


def ranking(results: Mapping[str, np.ndarray], order: str) -> pd.DataFrame:
    """Methods x removals: each method's rank by mean AUC (1 = best: lowest under LeRF, highest under MoRF)."""
    import pandas as pd

    removals = [str(r) for r in results["removals"]]
    means = np.stack([aucs(results, order, r).mean(0) for r in removals], 1)
    ranks = stats.rankdata(means if order == "least" else -means, axis=0).astype(int)
    return pd.DataFrame(ranks, index=[label(str(m)) for m in results["methods"]], columns=removals)


def rank_agreement(results: Mapping[str, np.ndarray], order: str, a: str, b: str) -> float:
    """Kendall's tau between the methods' mean AUCs under removals ``a`` and ``b``."""
    mean_a, mean_b = aucs(results, order, a).mean(0), aucs(results, order, b).mean(0)
    return float(stats.kendalltau(mean_a, mean_b).statistic)


def curve_frames(
    results: Mapping[str, np.ndarray], order: str, removal: str = "mean/float32"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, half-width of the 95 % interval): percent removed x method, for a figure."""
    import pandas as pd

    curves = results["curves"][:, :, _index(results, "orders", order), _index(results, "removals", removal)]
    mean, low, _ = interval(curves)
    columns = [label(str(m)) for m in results["methods"]]
    index = pd.Index(results["percents"].astype(int), name="pixels removed (%)")
    return pd.DataFrame(mean.T, index=index, columns=columns), pd.DataFrame((mean - low).T, index=index, columns=columns)


def authors_wide(name: str, dataset: str, index: str, values: str) -> pd.DataFrame:
    """One dataset of the authors' removal table ``name`` (``"lerf"`` or ``"roar"``): the ``index``
    column (percent removed) x method (our labels, in registry order), cells from ``values``."""
    table = authors_table(name)
    datasets = sorted(set(table["dataset"]))
    if dataset not in datasets:
        raise ValueError(f"dataset must be one of {datasets}, got {dataset!r}")
    wide = table[table["dataset"] == dataset].pivot(index=index, columns="method", values=values)
    wide = wide[[m for m in AUTHORS_NAMES if m in wide.columns]]
    wide.columns = [label(AUTHORS_NAMES[m]) for m in wide.columns]
    wide.index.name = "pixels removed (%)"
    return wide


def authors_curves(dataset: str) -> pd.DataFrame:
    """The authors' LeRF curves (lerf_authors.csv): percent x method (our labels), one dataset."""
    return authors_wide("lerf", dataset, "percent_least_relevant_pixels_removed", "abs_fractional_output_change")


def authors_aucs() -> pd.DataFrame:
    """Method x dataset: the AUC of each of the authors' LeRF curves, by the same rule as ours."""
    import pandas as pd

    table = authors_table("lerf")
    columns = {}
    for dataset in sorted(set(table["dataset"])):
        wide = authors_curves(dataset)
        columns[dataset] = pd.Series(
            area_under_curve(wide.index.to_numpy(np.float64), wide.to_numpy(np.float64).T).numpy(), index=wide.columns
        )
    frame = pd.DataFrame(columns)
    frame.index.name = "method"
    return frame


def copy_slip() -> bool:
    """Whether the authors' ImageNet NeuronIntGrad curve equals their Birdsnap one value for value."""
    imagenet, birdsnap = authors_curves("imagenet"), authors_curves("birdsnap")
    column = label(AUTHORS_NAMES[COPY_SLIP[1]])
    return bool(np.array_equal(imagenet[column].to_numpy(), birdsnap[column].to_numpy()))
