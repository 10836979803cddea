"""Tables of the ROAR/KAR chapter from cached results of :mod:`pathlib_pw.experiments.roar`: what the
notebook shows. AUCs follow the authors' rule (:func:`pathlib_pw.roar.roar_auc`: trapezoids over the
removed share, the clean model's accuracy at 0). Each seed is one explained model (split, base model,
tie order, retraining): intervals are 95 % Student-t intervals over the seeds (five: too few for a
bootstrap), and comparisons between two methods are paired by seed. A method whose map is constant on
some images ranks their pixels by the tie rule alone: it is left out of rankings (:func:`ranking`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from pathlib_pw.attribution.registry import PATHWAY_GRAD
from pathlib_pw.experiments.lerf_tables import GRADIENT_BASELINES, authors_wide, label
from pathlib_pw.roar import roar_auc
from pathlib_pw.statistics import t_interval
from pathlib_pw.verdicts import Evaluation, Verdict

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "accuracy_frames",
    "auc_table",
    "aucs",
    "degenerate",
    "evaluate_claim",
    "fill_table",
    "authors_aucs",
    "authors_curves",
    "label",
    "leak_table",
    "paired_differences",
    "ranking",
    "t_interval",
    "tie_table",
]

MODE_NAMES = {"roar": "ROAR", "kar": "KAR"}
FILL_NAMES = {"mean": "mean fill", "road": "ROAD fill"}
RANDOM_CONTROL = "random"


def _mode(results: Mapping[str, np.ndarray], mode: str) -> int:
    modes = [str(m) for m in results["modes"]]
    if mode not in modes:
        raise ValueError(f"mode must be one of {modes}, got {mode!r}")
    return modes.index(mode)


def _method(results: Mapping[str, np.ndarray], method: str) -> int:
    methods = [str(m) for m in results["methods"]]
    if method not in methods:
        raise ValueError(f"method must be one of {methods}, got {method!r}")
    return methods.index(method)


def degenerate(results: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Method (registry name) -> on how many maps (train and test images, all seeds) it is constant,
    for the methods where that happens at least once."""
    counts = np.asarray(results["constant_maps"]).sum(1)
    return {str(m): int(c) for m, c in zip(results["methods"], counts) if c}


def _accuracy(results: Mapping[str, np.ndarray], mode: str, fill: str) -> np.ndarray:
    """(methods, percents, seeds): the test accuracies of one mode and fill."""
    fills = [str(f) for f in results["fills"]]
    if fill not in fills:
        raise ValueError(f"fill must be one of {fills}, got {fill!r}")
    return results["accuracy"][:, _mode(results, mode), fills.index(fill)]


def aucs(results: Mapping[str, np.ndarray], mode: str, fill: str = "mean") -> np.ndarray:
    """(methods, seeds): each retraining series' area under its curve, the clean accuracy of the same seed at 0."""
    accuracy = _accuracy(results, mode, fill)
    return roar_auc(results["percents"].astype(np.float64), np.moveaxis(accuracy, 1, 2), results["baseline"][None, :])


def accuracy_frames(results: Mapping[str, np.ndarray], mode: str, fill: str = "mean") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, half-width of the 95 % interval) of the test accuracy in %: removed % (0: clean) x method."""
    import pandas as pd

    accuracy = _accuracy(results, mode, fill)
    clean = np.broadcast_to(results["baseline"], (accuracy.shape[0], 1, accuracy.shape[2]))
    mean, low, _ = t_interval(100 * np.concatenate([clean, accuracy], 1), axis=2)
    columns = [label(str(m)) for m in results["methods"]]
    index = pd.Index([0, *results["percents"].astype(int).tolist()], name="pixels removed (%)")
    return pd.DataFrame(mean.T, index=index, columns=columns), pd.DataFrame((mean - low).T, index=index, columns=columns)


def auc_table(results: Mapping[str, np.ndarray], fill: str = "mean") -> pd.DataFrame:
    """Methods x modes: mean AUC over seeds with its 95 % interval, and the authors' CIFAR-10 ROAR AUC
    by the same rule where they report the method (lower is better for ROAR, higher for KAR)."""
    import pandas as pd

    columns: dict[str, object] = {}
    for mode in (str(m) for m in results["modes"]):
        mean, low, high = t_interval(aucs(results, mode, fill), axis=1)
        name = MODE_NAMES[mode]
        columns[f"{name} AUC"], columns[f"{name} 95% low"], columns[f"{name} 95% high"] = mean, low, high
    labels = [label(str(m)) for m in results["methods"]]
    table = pd.DataFrame(columns, index=labels)
    authors = authors_aucs()
    table["authors' ROAR AUC (CIFAR-10)"] = [authors.get(m, np.nan) for m in labels]
    table.index.name = "method"
    return table


def fill_table(results: Mapping[str, np.ndarray], mode: str) -> pd.DataFrame:
    """Methods x (fill, statistic) for one mode: mean AUC over the explained models with its 95 %
    interval under each fill, then on how many maps the method is constant and, for ROAR, the authors'
    CIFAR-10 area where they report the method."""
    import pandas as pd

    name = MODE_NAMES[str(results["modes"][_mode(results, mode)])]
    columns: dict[tuple[str, str], object] = {}
    for fill in (str(f) for f in results["fills"]):
        mean, low, high = t_interval(aucs(results, mode, fill), axis=1)
        for statistic, values in ((f"{name} AUC", mean), ("95% low", low), ("95% high", high)):
            columns[(FILL_NAMES[fill], statistic)] = values
    labels = [label(str(m)) for m in results["methods"]]
    columns[("", "constant maps")] = np.asarray(results["constant_maps"]).sum(1)
    if mode == "roar":
        authors = authors_aucs()
        columns[("", "authors' AUC (CIFAR-10)")] = [authors.get(m, np.nan) for m in labels]
    table = pd.DataFrame(columns, index=pd.Index(labels, name="method"))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def paired_differences(results: Mapping[str, np.ndarray], method: str, mode: str, fill: str = "mean") -> pd.DataFrame:
    """For every other method: mean of (other AUC - ``method``'s AUC) over seeds, its 95 % interval and
    the number of seeds where ``method`` is better (lower AUC under ROAR, higher under KAR)."""
    import pandas as pd

    values = aucs(results, mode, fill)
    m = _method(results, method)
    rows = {}
    for j, other in enumerate(str(o) for o in results["methods"]):
        if j == m:
            continue
        diff = values[j] - values[m]
        mean, low, high = t_interval(diff)
        better = diff > 0 if mode == "roar" else diff < 0
        rows[label(other)] = {"difference": mean, "95% low": low, "95% high": high, "seeds where better": int(better.sum())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "compared with"
    return table


def ranking(results: Mapping[str, np.ndarray], fill: str = "mean", methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Methods x modes: each method's rank by mean AUC (1 = best: lowest under ROAR, highest under
    KAR), among ``methods`` (default: every method whose map is never constant)."""
    import pandas as pd

    excluded = degenerate(results)
    names = [str(m) for m in results["methods"]]
    keep = [names.index(m) for m in (methods if methods is not None else [m for m in names if m not in excluded])]
    columns = {}
    for mode in (str(m) for m in results["modes"]):
        means = aucs(results, mode, fill).mean(1)[keep]
        columns[MODE_NAMES[mode]] = stats.rankdata(means if mode == "roar" else -means).astype(int)
    return pd.DataFrame(columns, index=[label(names[j]) for j in keep])


def tie_table(results: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Methods x (mode, removed %): the share of the removed pixels (the most relevant under ROAR, the
    least relevant under KAR) that the tie rule chose, mean over images and explained models."""
    import pandas as pd

    share = np.asarray(results["tie_share"]).mean(-1)  # (methods, modes, percents)
    columns = {
        (MODE_NAMES[str(mode)], f"{percent} %"): share[:, o, p]
        for o, mode in enumerate(results["modes"])
        for p, percent in enumerate(results["percents"].astype(int))
    }
    table = pd.DataFrame(columns, index=pd.Index([label(str(m)) for m in results["methods"]], name="method"))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def authors_curves() -> pd.DataFrame:
    """The authors' CIFAR-10 ROAR curves (roar_authors.csv): removed % x method (our labels), accuracy in %."""
    return authors_wide("roar", "cifar10", "percent_pixels_removed", "test_accuracy_percent")


def authors_aucs() -> pd.Series:
    """The AUC of each of the authors' CIFAR-10 ROAR curves, by the same rule as ours (accuracy as a share)."""
    import pandas as pd

    wide = authors_curves()
    percents = wide.index.to_numpy(np.float64)
    values = wide.to_numpy(np.float64).T / 100
    return pd.Series(roar_auc(percents[1:], values[:, 1:], values[:, 0]), index=wide.columns, name="authors' ROAR AUC")


def leak_table(pixels: Mapping[str, np.ndarray], mask: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Methods x (mode, removed %): mean test accuracy (%) over seeds of models retrained on the mask
    alone (``mask``: :mod:`pathlib_pw.experiments.roar_mask`) beside those retrained on the degraded
    images (``pixels``), at the shares both ran."""
    import pandas as pd

    if [str(m) for m in pixels["methods"]] != [str(m) for m in mask["methods"]]:
        raise ValueError("pixels and mask must hold the same methods")
    columns = {}
    for mode in (str(m) for m in mask["modes"]):
        for percent in mask["percents"].astype(int):
            for name, results in (("mask only", mask), ("pixels", pixels)):
                p = list(results["percents"].astype(int)).index(percent)
                acc = _accuracy(results, mode, "mean")[:, p].mean(1)
                columns[(f"{MODE_NAMES[mode]} {percent} %", name)] = 100 * acc
    table = pd.DataFrame(columns, index=[label(str(m)) for m in mask["methods"]])
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "method"
    return table


def control_passes(results: Mapping[str, np.ndarray], fill: str, methods: Sequence[str]) -> bool:
    """Whether a fill passes its control: every one of ``methods`` lowers the ROAR accuracy more than
    the per-image random ranking (mean ROAR area below the random ranking's). A fill that fails
    measures something other than which pixels matter (for example the removal mask's shape)."""
    means = aucs(results, "roar", fill).mean(1)
    return bool(all(means[_method(results, m)] < means[_method(results, RANDOM_CONTROL)] for m in methods))


def roar_rule(passing: Mapping[str, Mapping[str, tuple[float, float]]], fills: Sequence[str]) -> tuple[Verdict, str]:
    """The ROAR claim's decision. ``passing``: for each fill that passes its control, baseline ->
    (low, high) of the 95 % interval of (baseline's ROAR area - PathwayGrad's); ``fills``: every fill
    run. A baseline is beaten where low > 0 and beats PathwayGrad where high < 0."""
    if not passing:
        names = " and the ".join(FILL_NAMES.get(f, f) for f in fills)
        return (
            "not testable here",
            f"a per-image random ranking lowers the accuracy at least as much as a compared map under the {names}",
        )
    beaten = {fill: [b for b, (low, _) in found.items() if low > 0] for fill, found in passing.items()}
    better = {fill: [b for b, (_, high) in found.items() if high < 0] for fill, found in passing.items()}
    failed = [fill for fill in fills if fill not in passing]
    only = f"only the {' and '.join(passing)} fill passes its control" if failed else ""
    if all(len(beaten[f]) == len(passing[f]) for f in passing):
        return "holds", only
    if any(beaten.values()):
        partly = "; ".join(f"{fill} fill: lower than {', '.join(beaten[fill]) or 'none'}" for fill in passing)
        return "holds partly", partly + (f"; {only}" if only else "")
    if any(better.values()):
        return "does not hold on our model", only
    return "inconclusive at this sample size", only


def evaluate_claim(roar: Mapping[str, np.ndarray], roar_mask: Mapping[str, np.ndarray]) -> Evaluation:
    """The ROAR claim decided on the cached results (rule: ``pathlib_pw.claims``, key "roar")."""
    pg = PATHWAY_GRAD + "neuron_mct"
    held = [str(m) for m in roar["methods"]]
    baselines = [m for m in GRADIENT_BASELINES if m in held and m not in degenerate(roar)]
    fills = [str(f) for f in roar["fills"]]
    passing: dict[str, dict[str, tuple[float, float]]] = {}
    parts: list[str] = []
    numbers: dict[str, float] = {}
    for fill in fills:
        means = aucs(roar, "roar", fill).mean(1)
        table = paired_differences(roar, pg, "roar", fill)
        found = {label(b): (float(table.loc[label(b), "95% low"]), float(table.loc[label(b), "95% high"])) for b in baselines}
        if control_passes(roar, fill, [pg, *baselines]):
            passing[fill] = found
        values = [means[_method(roar, b)] for b in baselines]
        random = means[_method(roar, RANDOM_CONTROL)]
        parts.append(
            f"{FILL_NAMES[fill]}: PathwayGrad {means[_method(roar, pg)]:.3f}, the baselines {min(values):.3f} to "
            f"{max(values):.3f}, the random ranking {random:.3f}"
        )
        numbers |= {f"{fill} pathway": float(means[_method(roar, pg)]), f"{fill} random": float(random)}
        numbers |= {f"{fill} {b} low": low for b, (low, _) in found.items()}
        numbers |= {f"{fill} {b} high": high for b, (_, high) in found.items()}
    verdict, qualifier = roar_rule(passing, fills)
    at_50 = list(roar_mask["percents"].astype(int)).index(50)
    compared = [_method(roar_mask, m) for m in (pg, *baselines)]
    mask_only = _accuracy(roar_mask, "roar", "mean")[compared, at_50].mean(1)  # (compared,): mean over seeds
    numbers |= {"mask only low": float(mask_only.min()), "mask only high": float(mask_only.max())}
    authors = authors_aucs()
    pathway = authors[[c for c in authors.index if c.startswith("PathwayGrad")]]
    gradient = authors[[label(b) for b in GRADIENT_BASELINES if label(b) in authors.index]]
    return Evaluation(
        verdict,
        qualifier,
        ours=f"digits, {len(roar['seeds'])} explained models, ROAR area (lower: the map found the pixels that matter): "
        + "; ".join(parts)
        + f"; trained on these maps' removal masks alone (no pixel values), models reach {mask_only.min():.0%} to "
        f"{mask_only.max():.0%} at ROAR 50 %",
        paper=f"CIFAR-10, ResNet-8, one run: area {pathway.min():.2f} to {pathway.max():.2f} against "
        f"{gradient.min():.2f} to {gradient.max():.2f}",
        numbers=numbers,
    )
