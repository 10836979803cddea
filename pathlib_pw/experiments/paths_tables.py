"""Tables of the pathway analysis (path overlap, dead neurons, sparsity sweep) from cached results of
:mod:`pathlib_pw.experiments.paths`: what the notebooks show.

NaN marks undefined values (an empty path's dead share, an empty union's Jaccard); means skip them.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from pathlib_pw.statistics import BOOTSTRAP_SEED, RESAMPLES, bootstrap_interval

if TYPE_CHECKING:
    import pandas as pd


def _mean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _has(results: Any, key: str) -> bool:
    """Whether the results hold ``key`` (a dict of arrays or a cached results object alike)."""
    try:
        results[key]
    except KeyError:
        return False
    return True


def _level_index(results: Any, level: float, key: str = "overlap_levels") -> int:
    levels = [float(v) for v in results[key]]
    if float(level) not in levels:
        raise ValueError(f"level must be one of {levels}, got {level!r}")
    return levels.index(float(level))


def jaccard_matrix(results: Any, level: float, criteria: Any = None, chance: bool = False) -> pd.DataFrame:
    """Mean Jaccard overlap (percent) over images between every pair of criteria at ``level``; with
    ``chance``, the overlap two paths of the same sizes would have by chance, each drawn among the
    neurons its criterion does not remove for free (:func:`pathlib_pw.metrics.chance_jaccard`)."""
    import pandas as pd

    labels = list(results["criteria"])
    values = _mean(results["jaccard_chance" if chance else "jaccard"][:, _level_index(results, level)], axis=0) * 100
    frame = pd.DataFrame(values, index=labels, columns=labels)
    return frame if criteria is None else frame.loc[list(criteria), list(criteria)]


def overlap_table(results: Any, level: float, criteria: Any = None) -> pd.DataFrame:
    """Every pair of ``criteria`` (default all) at ``level``: the mean overlap (percent) over images
    and its standard deviation, the chance overlap of paths of the same sizes drawn among the neurons
    each criterion does not remove for free (:func:`pathlib_pw.metrics.chance_jaccard`), and the
    excess over chance: mean with its 95 % bootstrap interval over images (paired: each image's
    overlap minus its own chance level), and on how many images the overlap exceeds chance."""
    import pandas as pd

    labels = list(results["criteria"])
    chosen = labels if criteria is None else list(criteria)
    missing = [c for c in chosen if c not in labels]
    if missing:
        raise ValueError(f"criteria must be among {labels}, got {missing}")
    o = _level_index(results, level)
    rows = {}
    for i, a in enumerate(chosen):
        for b in chosen[i + 1 :]:
            ia, ib = labels.index(a), labels.index(b)
            observed = 100 * results["jaccard"][:, o, ia, ib].astype(np.float64)
            chance = 100 * results["jaccard_chance"][:, o, ia, ib].astype(np.float64)
            ok = ~(np.isnan(observed) | np.isnan(chance))
            excess = observed[ok] - chance[ok]
            mean, low, high = bootstrap_interval(excess) if ok.any() else (np.nan, np.nan, np.nan)
            rows[(a, b)] = {
                "overlap (%)": observed[ok].mean() if ok.any() else np.nan,
                "sd": observed[ok].std(ddof=1) if ok.sum() > 1 else np.nan,
                "chance (%)": chance[ok].mean() if ok.any() else np.nan,
                "above chance": mean,
                "95% low": low,
                "95% high": high,
                "images above chance": f"{int((excess > 0).sum())} of {int(ok.sum())}",
            }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["path A", "path B"])
    return table


def jaccard_per_site(results: Any, level: float, pairs: Any, chance: bool = False) -> pd.DataFrame:
    """Mean per-site Jaccard (percent) for the given ``(criterion_a, criterion_b)`` pairs; rows are
    sites. With ``chance``, the per-site chance overlap instead (:func:`jaccard_matrix`)."""
    import pandas as pd

    labels = list(results["criteria"])
    o = _level_index(results, level)
    key = "jaccard_chance_site" if chance else "jaccard_site"
    data = {f"{a} / {b}": _mean(results[key][:, o, labels.index(a), labels.index(b)], axis=0) * 100 for a, b in pairs}
    return pd.DataFrame(data, index=list(results["sites"]))


def dead_share_table(results: Any, level: float) -> pd.DataFrame:
    """Per criterion at ``level`` (percent): realized sparsity (mean over images), dead share of the
    path (mean and sd), median output change, and the share of images whose predicted class the path
    keeps (NaN where the cache holds no ``class_kept``)."""
    import pandas as pd

    j = _level_index(results, level, "levels")
    dead = results["dead_share"][:, :, j].astype(np.float64) * 100
    return pd.DataFrame(
        {
            "realized sparsity": _mean(results["realized"][:, :, j], axis=0),
            "dead share of path": _mean(dead, axis=0),
            "dead share sd": dead.std(0, ddof=1) if len(dead) > 1 else np.full(dead.shape[1], np.nan),
            "median output change": np.median(results["output_change"][:, :, j].astype(np.float64), 0) * 100,
            # caches recorded without the nulls (dgr_retries, paths.NULL_KEYS) hold no class_kept
            "class kept": _mean(results["class_kept"][:, :, j], axis=0) * 100 if _has(results, "class_kept") else np.nan,
        },
        index=list(results["criteria"]),
    )


def dead_share_per_site(results: Any, level: float) -> pd.DataFrame:
    """Mean dead share (percent) of each criterion's path per site at ``level``; rows are sites."""
    import pandas as pd

    o = _level_index(results, level)
    values = _mean(results["dead_share_site"][:, :, o], axis=0).T * 100
    return pd.DataFrame(values, index=list(results["sites"]), columns=list(results["criteria"]))


SWEPT = ("output_change", "signed_change", "class_kept", "realized", "dead_share")
STATS = ("mean", "std", "median")


def sweep_table(results: Any, quantity: str = "output_change", stat: str = "mean") -> pd.DataFrame:
    """The ``stat`` (one of ``STATS``, over images) of a swept quantity (one of ``SWEPT``) per
    criterion (columns) and requested sparsity (rows)."""
    import pandas as pd

    if quantity not in SWEPT:
        raise ValueError(f"quantity must be one of {list(SWEPT)}, got {quantity!r}")
    if stat not in STATS:
        raise ValueError(f"stat must be one of {list(STATS)}, got {stat!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if stat == "std":
            values = np.nanstd(results[quantity], axis=0).T
        elif stat == "median":
            values = np.nanmedian(results[quantity], axis=0).T
        else:
            values = _mean(results[quantity], axis=0).T
    return pd.DataFrame(values, index=[float(v) for v in results["levels"]], columns=list(results["criteria"]))


def free_share(results: Any) -> pd.Series:
    """Per criterion, the mean share of all neurons its threshold removes even at 0 % requested
    sparsity (a contribution criterion's zero-score neurons, the dead-first controls' dead ones)."""
    import pandas as pd

    return pd.Series(results["free_share"].astype(np.float64).mean(0), index=list(results["criteria"]), name="free share")


def sweep_summary(results: Any, criterion: str) -> pd.DataFrame:
    """One criterion across the swept sparsities (rows): the median output change (percent) with its
    95 % bootstrap interval over images, the mean (unbounded above, so dominated by the images whose
    probability rises), the median signed change, and the share of images whose predicted class the
    path keeps."""
    import pandas as pd

    labels = list(results["criteria"])
    if criterion not in labels:
        raise ValueError(f"criterion must be one of {labels}, got {criterion!r}")
    c = labels.index(criterion)
    median, low, high = (frame[criterion] for frame in sweep_interval(results, "output_change", [criterion]))
    return pd.DataFrame(
        {
            "median change (%)": median,
            "95% low": low,
            "95% high": high,
            "mean change (%)": 100 * results["output_change"][:, c].astype(np.float64).mean(0),
            "median signed change (%)": np.median(100 * results["signed_change"][:, c].astype(np.float64), 0),
            "class kept (%)": 100 * results["class_kept"][:, c].astype(np.float64).mean(0),
        },
        index=pd.Index([float(v) for v in results["levels"]], name="sparsity (%)"),
    )


def sweep_interval(
    results: Any, quantity: str = "output_change", criteria: Any = None, statistic: str = "median"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A swept quantity (one of ``SWEPT``; percent) per requested sparsity (rows) and criterion
    (columns): the ``statistic`` (``median`` or ``mean``) over the images and its 95 % bootstrap
    interval, three frames. A bootstrap interval of a non-negative quantity stays non-negative."""
    import pandas as pd

    if quantity not in SWEPT or quantity == "realized":
        raise ValueError(f"quantity must be one of {[q for q in SWEPT if q != 'realized']}, got {quantity!r}")
    labels = list(results["criteria"])
    chosen = labels if criteria is None else list(criteria)
    missing = [c for c in chosen if c not in labels]
    if missing:
        raise ValueError(f"criteria must be among {labels}, got {missing}")
    values = 100 * results[quantity][:, [labels.index(c) for c in chosen]].astype(np.float64)  # (images, crit, levels)
    index = pd.Index([float(v) for v in results["levels"]], name="sparsity (%)")
    centre, low, high = (
        pd.DataFrame(frame.T, index=index, columns=chosen)
        for frame in bootstrap_interval(values, statistic=statistic)  # type: ignore[arg-type]
    )
    return centre, low, high


def path_summary(results: Any, level: float, reference: str, criteria: Any = None) -> pd.DataFrame:
    """Each criterion's path at the overlap ``level`` beside ``reference``'s: realized sparsity (mean),
    dead share (mean, with the photos' base rate), its overlap with ``reference`` and that pair's
    chance level (means), the excess over chance with its 95 % bootstrap interval (paired per photo),
    and the output change and signed change (medians), all in percent."""
    import pandas as pd

    labels = list(results["criteria"])
    chosen = [c for c in (labels if criteria is None else list(criteria)) if c != reference]
    missing = [c for c in [reference, *chosen] if c not in labels]
    if missing:
        raise ValueError(f"criteria and reference must be among {labels}, got {missing}")
    j = _level_index(results, level, "levels")
    rows = {}
    for name in chosen:
        c = labels.index(name)
        pair = overlap_table(results, level, [reference, name]).iloc[0]
        rows[name] = {
            "realized sparsity": float(results["realized"][:, c, j].mean()),
            "dead share": 100 * float(results["dead_share"][:, c, j].mean()),
            f"overlap with {reference}": float(pair["overlap (%)"]),
            "chance": float(pair["chance (%)"]),
            "excess": float(pair["above chance"]),
            "excess 95% low": float(pair["95% low"]),
            "excess 95% high": float(pair["95% high"]),
            "median output change": 100 * float(np.median(results["output_change"][:, c, j])),
            "median signed change": 100 * float(np.median(results["signed_change"][:, c, j])),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["base rate"] = 100 * float(results["base_sparsity"].mean())
    return table


RANDOM_LIKE = 1.0  # percentage points: a random path's overlap excess and dead share lie this close to chance


def random_like(summary: pd.DataFrame, margin: float = RANDOM_LIKE) -> pd.Series:
    """Per row of a :func:`path_summary` table: whether the neurons the path keeps look like a random
    choice of its size, by two signs a random path gives: its overlap with the reference exceeds
    chance by at most ``margin`` percentage points either way (mean over the photos), and its dead
    share equals the photos' base rate within ``margin`` points. Whether the path keeps the output
    is a separate question (a trained pruner can keep it with randomly placed neurons)."""
    import pandas as pd

    base = summary.attrs["base rate"]
    at_chance = summary["excess"].abs() <= margin
    at_base = (summary["dead share"] - base).abs() <= margin
    return pd.Series(at_chance & at_base, index=summary.index, name="like a random path")


def operating_range(
    results: Any, criterion: str, change: float = 0.15, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float, float]:
    """The largest swept sparsity at which ``criterion``'s median output change over the images stays
    at or below ``change``, and the 95 % range of that sparsity over bootstrap resamples of the images
    (NaN where no swept sparsity qualifies): (point, low, high)."""
    labels = list(results["criteria"])
    if criterion not in labels:
        raise ValueError(f"criterion must be one of {labels}, got {criterion!r}")
    levels = np.array([float(v) for v in results["levels"]])
    values = results["output_change"][:, labels.index(criterion)].astype(np.float64)  # (images, levels)

    def largest(medians: np.ndarray) -> np.ndarray:
        ok = medians <= change  # (..., levels)
        return np.where(ok.any(-1), np.where(ok, levels, -np.inf).max(-1), np.nan)

    n = values.shape[0]
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    spread = largest(np.median(values[draws], axis=1))
    low, high = (np.nan, np.nan) if np.isnan(spread).all() else np.nanpercentile(spread, [2.5, 97.5])
    return float(largest(np.median(values, 0))), float(low), float(high)


def dgr_kept_prediction(results: Any) -> pd.Series:
    """Per DGR criterion, the number of images whose best iterate kept the prediction (out of all)."""
    import pandas as pd

    kept = results["dgr_kept_prediction"]
    counts = {
        label: f"{int(np.nansum(kept[:, c]))} of {kept.shape[0]}"
        for c, label in enumerate(results["criteria"])
        if not np.isnan(kept[:, c]).all()
    }
    return pd.Series(counts, name="kept the prediction")


def emptied_sites(results: Any, criterion: str, level: float) -> pd.DataFrame:
    """The sites where ``criterion``'s path at ``level`` keeps no neuron in at least one image: how
    many images, and the site's share of all neurons (percent). A path's dead share is undefined
    there (nothing kept), which leaves a gap in a per-site curve."""
    import pandas as pd

    labels = list(results["criteria"])
    if criterion not in labels:
        raise ValueError(f"criterion must be one of {labels}, got {criterion!r}")
    kept = results["kept_site"][:, labels.index(criterion), _level_index(results, level)]  # (images, sites)
    empty = (kept == 0).sum(0)
    sizes = results["site_sizes"].astype(np.float64)
    frame = pd.DataFrame(
        {"images with the site emptied": empty, "share of all neurons (%)": 100 * sizes / sizes.sum()},
        index=list(results["sites"]),
    )
    return frame[frame["images with the site emptied"] > 0]


def per_image(results: Any, quantity: str, criterion: str, level: float) -> pd.Series:
    """``quantity`` (one of ``SWEPT``) of ``criterion`` at the swept ``level`` for each image (every
    quantity but the realized sparsity in percent)."""
    import pandas as pd

    labels = list(results["criteria"])
    if criterion not in labels:
        raise ValueError(f"criterion must be one of {labels}, got {criterion!r}")
    if quantity not in SWEPT:
        raise ValueError(f"quantity must be one of {list(SWEPT)}, got {quantity!r}")
    values = results[quantity][:, labels.index(criterion), _level_index(results, level, "levels")].astype(np.float64)
    return pd.Series(values if quantity == "realized" else 100 * values, index=[str(n) for n in results["names"]], name=quantity)


def removed_living_share(results: Any, criterion: str, level: float) -> pd.Series:
    """Per image, the share (percent) of the neurons alive in the unpruned network that ``criterion``'s
    path at the swept ``level`` removes, from the realized sparsity, the path's dead share and the
    base sparsity: living removed = removed - (dead - dead kept)."""
    import pandas as pd

    removed = per_image(results, "realized", criterion, level).to_numpy() / 100
    dead_kept = (1 - removed) * per_image(results, "dead_share", criterion, level).to_numpy() / 100
    dead = results["base_sparsity"].astype(np.float64)
    living_removed = removed - (dead - dead_kept)
    return pd.Series(100 * living_removed / (1 - dead), index=[str(n) for n in results["names"]], name="living removed")


def retry_table(results: Any, level: float, variants: Any, others: Any) -> pd.DataFrame:
    """Per criterion in ``variants`` (e.g. DGR(init=r) with our and the authors' retries): the images
    whose path kept the prediction, and at ``level`` the dead share, median output change and mean Jaccard
    overlap (percent) with each criterion in ``others``."""
    labels = list(results["criteria"])
    missing = [c for c in [*variants, *others] if c not in labels]
    if missing:
        raise ValueError(f"criteria must be among {labels}, got {missing}")
    table = dead_share_table(results, level).loc[list(variants), ["dead share of path", "median output change"]]
    table.insert(0, "kept the prediction", dgr_kept_prediction(results).reindex(list(variants)))
    overlaps = jaccard_matrix(results, level)
    for other in others:
        table[f"overlap with {other}"] = overlaps.loc[list(variants), other]
    return table


def pair_overlap(results: Any, a: str, b: str, level: float) -> pd.Series:
    """Per image, the Jaccard overlap (percent) of ``a``'s and ``b``'s paths at ``level``."""
    import pandas as pd

    labels = list(results["criteria"])
    missing = [c for c in (a, b) if c not in labels]
    if missing:
        raise ValueError(f"criteria must be among {labels}, got {missing}")
    values = 100 * results["jaccard"][:, _level_index(results, level), labels.index(a), labels.index(b)].astype(np.float64)
    return pd.Series(values, index=[str(n) for n in results["names"]], name=f"{a} / {b}")
