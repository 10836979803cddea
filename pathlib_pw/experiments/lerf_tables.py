"""Tables of the LeRF / MoRF chapter from cached results of :mod:`pathlib_pw.experiments.lerf`: what the
notebook shows. AUCs follow the authors' rule (trapezoids over the removed percent, y(0) = 0).

Statistics: per-image AUCs are skewed (a few images change a lot), so intervals are 95 % percentile
bootstrap intervals of the mean over images (``RESAMPLES`` resamples, seeded), and comparisons between
two methods resample the images in pairs. A method whose map is constant on an image ranks that
image's pixels by the tie rule alone: it is left out of rankings, rank correlations and the choice of
the best baseline, and listed with its count (:func:`degenerate`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from pathlib_pw.attribution.registry import ACCUMULATED, PATHWAY_GRAD
from pathlib_pw.criteria import CRITERIA
from pathlib_pw.experiments.attribution import PAPER_METHODS
from pathlib_pw.reference import authors_table
from pathlib_pw.removal import area_under_curve
from pathlib_pw.statistics import bootstrap_interval
from pathlib_pw.verdicts import Evaluation, Verdict

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
# The authors' ImageNet NeuronIntGrad row repeats their Birdsnap row value for value (book/methods.md, known slips)
COPY_SLIP = ("imagenet", "NeuronIntGrad")
DEFAULT_REMOVAL = "mean/float32/random"  # the authors' fill, our float maps, ties at random


def _index(results: Mapping[str, np.ndarray], key: str, value: str) -> int:
    values = [str(v) for v in results[key]]
    if value not in values:
        raise ValueError(f"{key[:-1]} must be one of {values}, got {value!r}")
    return values.index(value)


def label(method: str) -> str:
    """The method's name on the page (``name@90``: the name, at 90 % sparsity)."""
    name, _, level = method.partition("@")
    return f"{LABELS.get(name, name)}, {float(level):g} %" if level else LABELS.get(name, name)


def aucs(results: Mapping[str, np.ndarray], order: str, removal: str = DEFAULT_REMOVAL) -> np.ndarray:
    """(images, methods): each image's area under its removal curve, the authors' rule."""
    curves = results["curves"][:, :, _index(results, "orders", order), _index(results, "removals", removal)]
    return area_under_curve(results["percents"].astype(np.float64), curves.astype(np.float64)).numpy()


def degenerate(results: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Method (registry name) -> on how many images its map is constant (every pixel tied), for the
    methods where that happens at least once."""
    counts = np.asarray(results["constant_maps"]).sum(0)
    return {str(m): int(c) for m, c in zip(results["methods"], counts) if c}


def ranked_methods(results: Mapping[str, np.ndarray]) -> list[str]:
    """The methods that enter rankings: those whose map is never constant."""
    excluded = degenerate(results)
    return [str(m) for m in results["methods"] if str(m) not in excluded]


def best_of(results: Mapping[str, np.ndarray], candidates: Sequence[str], order: str, removal: str = DEFAULT_REMOVAL) -> str:
    """The candidate with the best mean AUC (lowest under LeRF, highest under MoRF), among those whose
    map is never constant."""
    eligible = [m for m in candidates if m in ranked_methods(results)]
    if not eligible:
        raise ValueError(f"candidates must include a method whose map is never constant, got {list(candidates)}")
    means = aucs(results, order, removal).mean(0)
    methods = [str(m) for m in results["methods"]]
    best = min if order == "least" else max
    return best(eligible, key=lambda m: means[methods.index(m)])


def auc_table(results: Mapping[str, np.ndarray], removal: str = DEFAULT_REMOVAL) -> pd.DataFrame:
    """Methods x (LeRF, MoRF): mean AUC over images with its 95 % bootstrap interval, the median, and
    on how many images the method's map is constant."""
    import pandas as pd

    columns: dict[str, np.ndarray] = {}
    for order, name in (("least", "LeRF"), ("most", "MoRF")):
        values = aucs(results, order, removal)
        mean, low, high = bootstrap_interval(values)
        columns[f"{name} AUC"], columns[f"{name} 95% low"], columns[f"{name} 95% high"] = mean, low, high
        columns[f"{name} median"] = np.median(values, 0)
    columns["constant maps"] = np.asarray(results["constant_maps"]).sum(0)
    table = pd.DataFrame(columns, index=[label(str(m)) for m in results["methods"]])
    table.index.name = "method"
    return table


def paired_differences(
    results: Mapping[str, np.ndarray], method: str, order: str, removal: str = DEFAULT_REMOVAL
) -> pd.DataFrame:
    """For every other method: mean of (other AUC - ``method``'s AUC) per image, its 95 % paired
    bootstrap interval, the median difference and the share of images where ``method`` is better
    (lower AUC under LeRF, higher under MoRF; a tie counts for neither)."""
    import pandas as pd

    values = aucs(results, order, removal)
    m = _index(results, "methods", method)
    others = [j for j in range(values.shape[1]) if j != m]
    diff = values[:, others] - values[:, [m]]
    mean, low, high = bootstrap_interval(diff)
    better = diff > 0 if order == "least" else diff < 0
    table = pd.DataFrame(
        {
            "difference": mean,
            "95% low": low,
            "95% high": high,
            "median": np.median(diff, 0),
            "method better (share of images)": better.mean(0),
        },
        index=[label(str(results["methods"][j])) for j in others],
    )
    table.index.name = "compared with"
    return table


def ranking(results: Mapping[str, np.ndarray], order: str, removals: Sequence[str] | None = None) -> pd.DataFrame:
    """Methods x removals: each method's rank by mean AUC (1 = best: lowest under LeRF, highest under
    MoRF), among the methods whose map is never constant."""
    import pandas as pd

    removals = [str(r) for r in results["removals"]] if removals is None else list(removals)
    keep = [_index(results, "methods", m) for m in ranked_methods(results)]
    means = np.stack([aucs(results, order, r).mean(0)[keep] for r in removals], 1)
    ranks = stats.rankdata(means if order == "least" else -means, axis=0).astype(int)
    return pd.DataFrame(ranks, index=[label(str(results["methods"][j])) for j in keep], columns=removals)


def rank_agreement(results: Mapping[str, np.ndarray], order: str, a: str, b: str) -> float:
    """Kendall's tau between the methods' mean AUCs under removals ``a`` and ``b``, among the methods
    whose map is never constant."""
    keep = [_index(results, "methods", m) for m in ranked_methods(results)]
    mean_a, mean_b = aucs(results, order, a).mean(0)[keep], aucs(results, order, b).mean(0)[keep]
    return float(stats.kendalltau(mean_a, mean_b).statistic)


def tie_rules(results: Mapping[str, np.ndarray], method: str, order: str, precision: str = "float32") -> pd.DataFrame:
    """One method's AUC (mean over images, 95 % bootstrap interval) with the mean fill under each tie
    rule the results hold: ties at the top of the image (the index rule), at the bottom, and at random."""
    import pandas as pd

    names = {"first": "ties at the top (index rule)", "last": "ties at the bottom", "random": "ties at random"}
    m = _index(results, "methods", method)
    rows = {}
    for rule, name in names.items():
        removal = f"mean/{precision}/{rule}"
        if removal in [str(r) for r in results["removals"]]:
            mean, low, high = bootstrap_interval(aucs(results, order, removal)[:, m])
            rows[name] = {"AUC": float(mean), "95% low": float(low), "95% high": float(high)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = f"{label(method)}, {precision}"
    return table


def tie_table(results: Mapping[str, np.ndarray], order: str, removal: str = DEFAULT_REMOVAL) -> pd.DataFrame:
    """Per method: the share of the pixels removed at the largest percent that the tie rule chose
    (mean over images, and on how many images it exceeds half), and the spread (sd) of an image's
    AUC over the tie orders (mean over images)."""
    import pandas as pd

    o, r = _index(results, "orders", order), _index(results, "removals", removal)
    share, spread = results["tie_share"][:, :, o, r], results["tie_spread"][:, :, o, r]
    return pd.DataFrame(
        {
            "removed pixels chosen by ties": share.mean(0),
            "images where ties chose most": (share > 0.5).sum(0),
            "AUC sd over tie orders": spread.mean(0),
        },
        index=pd.Index([label(str(m)) for m in results["methods"]], name="method"),
    )


def curve_frames(
    results: Mapping[str, np.ndarray], order: str, removal: str = DEFAULT_REMOVAL
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(mean, 95 % low, 95 % high): percent removed x method, for a figure (bootstrap over images)."""
    import pandas as pd

    curves = results["curves"][:, :, _index(results, "orders", order), _index(results, "removals", removal)]
    columns = [label(str(m)) for m in results["methods"]]
    index = pd.Index(results["percents"].astype(int), name="pixels removed (%)")
    return tuple(pd.DataFrame(v.T, index=index, columns=columns) for v in bootstrap_interval(curves))


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


GRADIENT_BASELINES = ("gradients", "guided_backprop", "input_mct", "input_intgrad")
WELL_POWERED = 100  # images: with this many, an interval containing 0 means no effect of the claimed size


def lerf_rule(lows: Mapping[str, float], digits_images: int) -> tuple[Verdict, str]:
    """The LeRF claim's decision from the lower 95 % bounds of (best gradient baseline - PathwayGrad)
    per setting (``lows``; the digits setting's key starts with "digits") and the digits' image count."""
    above = [s for s, low in lows.items() if low > 0]
    if above and len(above) == len(lows):
        return "holds", ""
    if above:
        return "holds partly", "only " + " and ".join(above)
    digits = [low for s, low in lows.items() if s.startswith("digits")]
    if digits and digits_images >= WELL_POWERED:
        return "does not hold on our model", ""
    return "inconclusive at this sample size", ""


def _setting(results: Mapping[str, np.ndarray], method: str) -> dict[str, float]:
    best = best_of(results, GRADIENT_BASELINES, "least")
    m, b = _index(results, "methods", method), _index(results, "methods", best)
    values = aucs(results, "least")
    mean, low, high = bootstrap_interval(values[:, b] - values[:, m])
    return {
        "pathway": float(values[:, m].mean()),
        "baseline": float(values[:, b].mean()),
        "difference": float(mean),
        "low": float(low),
        "high": float(high),
        "best": float(b),
    }


def evaluate_claim(digits: Mapping[str, np.ndarray], photos: Mapping[str, np.ndarray]) -> Evaluation:
    """The LeRF claim decided on the cached results (rule: ``pathlib_pw.claims``, key "lerf")."""
    pg = PATHWAY_GRAD + "neuron_mct"
    settings = {"digits": (digits, pg), "the photos at 50 %": (photos, pg)}
    if pg + "@90" in [str(m) for m in photos["methods"]]:
        settings["the photos at 90 %"] = (photos, pg + "@90")
    found = {name: _setting(results, method) for name, (results, method) in settings.items()}
    verdict, qualifier = lerf_rule({name: f["low"] for name, f in found.items()}, len(digits["names"]))
    parts = []
    for name, f in found.items():
        results = settings[name][0]
        best = label(str(results["methods"][int(f["best"])]))
        parts.append(
            f"{name}: {f['pathway']:.2f} against {best} {f['baseline']:.2f} (difference {f['difference']:.2f}, "
            f"95 % [{f['low']:.2f}, {f['high']:.2f}])"
        )
    authors = authors_aucs()["imagenet"]
    gradient_labels = [label(m) for m in GRADIENT_BASELINES]
    return Evaluation(
        verdict,
        qualifier,
        ours="LeRF AUC, ties at random: " + "; ".join(parts),
        paper=f"ImageNet, ResNet50: PathwayGrad (NeuronMCT) {authors[label(pg)]:.2f} against "
        f"{authors[gradient_labels].min():.2f} to {authors[gradient_labels].max():.2f} for the gradient baselines",
        numbers={f"{name} {k}": v for name, f in found.items() for k, v in f.items()},
    )
