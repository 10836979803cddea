"""The paper's claims, their decision rules, our numbers and the verdicts, in one place.

Every claim the book checks is a :class:`Claim` in :data:`CLAIMS`, in the order of the intro's table.
A claim names its chapter, states the paper's claim and the rule that decides it (in words, before
any number), and evaluates itself from the cached results of a profile into an :class:`Evaluation`:
the verdict (one of :data:`VERDICTS`), a short qualifier, our numbers and the paper's. The intro's
claims table (:func:`table_markdown`) and every chapter's verdict line (:func:`verdict_markdown`) are
rendered from it, so they cannot disagree.

Each rule is a small function of the numbers (``*_rule`` below), tested on hand-made numbers, so that
a rule can be revised (for example with activity-aware nulls) in one place. Evaluators read cached
results (:func:`pathlib_pw.experiments.load_or_run`); a stale ``book`` cache is an error, never a
silent recomputation. The vocabulary (:data:`VERDICTS`) and :class:`Evaluation` live in
:mod:`pathlib_pw.verdicts`, below the experiments, so that a tables module can return an
:class:`Evaluation` (``lerf_tables.evaluate_claim``, ``roar_tables.evaluate_claim``).

Usage::

    from pathlib_pw import claims
    claims.evaluate("path_overlap").verdict
    print(claims.verdict_markdown("path_overlap", "book"))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pathlib_pw.verdicts import VERDICTS, Evaluation, Verdict

if TYPE_CHECKING:
    from pathlib_pw.runner.contract import Profile

__all__ = [
    "CLAIMS",
    "VERDICTS",
    "Claim",
    "Evaluation",
    "Verdict",
    "chapter_claims",
    "claim",
    "evaluate",
    "table_markdown",
    "verdict_markdown",
    "verdict_text",
]

HOLDS, PARTLY, NOT_ON_OURS, INCONCLUSIVE, NOT_TESTABLE = VERDICTS

# the paper's tolerance: a path keeps the output when it changes the class's probability by at most 15 %
KEEP = 15.0


@dataclass(frozen=True)
class Claim:
    """One claim of the paper as the book checks it.

    ``key``: its name in :data:`CLAIMS`; ``chapter``: the notebook stem under ``book/`` that shows
    the evidence, ``chapter_title`` its link text; ``statement``: the claim as the paper makes it
    (short, for the table); ``rule``: the decision rule in words (stated before any number);
    ``evaluate``: the profile's cached results -> :class:`Evaluation`.
    """

    key: str
    chapter: str
    chapter_title: str
    statement: str
    rule: str
    evaluate: Callable[[Profile], Evaluation]


def _load(experiment: str, profile: Profile) -> Any:
    """The cached results of ``experiment``; the ``book`` profile's caches are committed, so a stale
    one is an error here rather than an hour of recomputation."""
    from pathlib_pw import experiments
    from pathlib_pw.runner import cache

    if profile == "book":
        directory = cache.results_root() / profile / experiment
        if not cache.is_current(directory, experiment, experiments.get_config(experiment, profile)):
            raise RuntimeError(
                f"the {profile!r} cache of {experiment!r} is missing or stale; "
                f"recompute it with `python -m pathlib_pw run {experiment} --profile {profile}`"
            )
    return experiments.load_or_run(experiment, profile, progress=False)


def _pct(value: float, digits: int = 1) -> str:
    return "0 %" if value == 0 else f"{value:.{digits}f} %"


def _names(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ---------------------------------------------------------------------------------------------------
# Local linearity: the claim behind PathwayGrad

LINEARITY_LEVEL = 50.0  # the operating point (paths.OPERATING_POINT), where NeuronMCT keeps the output


def local_linearity_rule(vs_controls: Mapping[str, Mapping[str, tuple[float, float]]]) -> tuple[Verdict, str]:
    """``vs_controls[c][k]``: the 95 % interval (low, high) of the median over the photos of the
    per-photo ratio of contribution path ``c``'s first-order error to size-matched control ``k``'s.
    Wholly below 1: ``c`` is more linear than ``k``; wholly above 1: less linear."""
    if not vs_controls or any(not against for against in vs_controls.values()):
        raise ValueError(f"vs_controls must name at least one contribution path, each with controls, got {dict(vs_controls)}")
    beaten = {c: [k for k, (_, high) in against.items() if high < 1] for c, against in vs_controls.items()}
    if all(len(beaten[c]) == len(against) for c, against in vs_controls.items()):
        return HOLDS, ""
    if any(beaten.values()):
        return PARTLY, "; ".join(f"{c} more linear than {_names(b)} only" if b else f"{c} than none" for c, b in beaten.items())
    more = sorted({k for against in vs_controls.values() for k, (low, _) in against.items() if low > 1})
    if not more:
        return NOT_ON_OURS, "no control of the same size is less linear"
    return NOT_ON_OURS, f"no control of the same size is less linear; {_names(more)} clearly more"


def _local_linearity(profile: Profile) -> Evaluation:
    from pathlib_pw.experiments import linearity_tables as tables
    from pathlib_pw.experiments.local_linearity import CONTRIBUTION, FULL

    results = _load("local_linearity", profile)
    level = LINEARITY_LEVEL if LINEARITY_LEVEL in [float(v) for v in results["sparsities"]] else float(results["sparsities"][0])
    grey = tables.REFERENCE_GREY_LEVEL
    summary = tables.summary_table(results, grey)
    measured = [str(c) for c in results["criteria"]]
    contribution = [c for c in CONTRIBUTION if c in measured]  # the smoke profile runs NeuronMCT only
    controls = [c for c in measured if c not in CONTRIBUTION]
    vs_controls = {c: {k: tables.error_ratio(results, c, k, level, grey)[1:] for k in controls} for c in contribution}
    vs_full = {c: tables.error_ratio(results, c, FULL, level, grey) for c in contribution}
    verdict, qualifier = local_linearity_rule(vs_controls)

    def error(path: str, at: float | None) -> float:
        return float(summary.loc[("-" if at is None else f"{at:g} %", path), "first-order error (%)"])

    least = min(controls, key=lambda k: error(k, level))
    controls_beat_full = sum(tables.error_ratio(results, k, FULL, level, grey)[2] < 1 for k in controls)
    return Evaluation(
        verdict,
        qualifier,
        ours=f"{len(results['names'])} photos, {results['radius'].shape[-1]} random directions, a ball of {grey:g} grey level "
        f"per pixel value (RMS), at {level:g} %: first-order error of the logit (median) "
        + "".join(f"{c} {error(c, level):.1f} %, " for c in contribution)
        + f"the controls {min(error(k, level) for k in controls):.1f}-{max(error(k, level) for k in controls):.1f} % "
        f"(least: {least}), the full network {error(FULL, None):.1f} %. Against the full network "
        + ", ".join(f"{c}'s ratio is {r:.2f} ({lo:.2f}-{hi:.2f})" for c, (r, lo, hi) in vs_full.items())
        + f", and {controls_beat_full} of {len(controls)} controls are clearly below 1 too: removing neurons "
        "straightens the logit whichever neurons go",
        paper="a theorem (not available to us): contribution pathways are locally linear in an L2 ball around the input",
        numbers={
            **{f"{c} error": error(c, level) for c in contribution},
            "full network error": error(FULL, None),
            **{f"{c} ratio to full": vs_full[c][0] for c in contribution},
            **{f"{c} vs {k} high": v[1] for c in contribution for k, v in vs_controls[c].items()},
            **{f"{c} vs {k} low": v[0] for c in contribution for k, v in vs_controls[c].items()},
        },
    )


# ---------------------------------------------------------------------------------------------------
# Path overlap

CONTRIBUTION = ("NeuronIntGrad", "NeuronMCT")
PRUNERS = ("Greedy", "Random", "DGR(init=r)", "DGR(init=1)")
# the activity-aware controls of the sweep: they drop the dead neurons for free, as contribution criteria do
CONTROLS = ("Random (dead first)", "Activation (dead first)")
FAR_MORE = 2.0  # "far more": more than twice
OVERLAP_LEVELS = (50.0, 90.0)  # the book's operating point (paths.OPERATING_POINT) and the authors' 90 %


def path_overlap_rule(
    contribution: Mapping[float, tuple[float, float]],
    pruners: Mapping[float, Mapping[str, float]],
    factor: float = FAR_MORE,
) -> tuple[Verdict, str]:
    """Per sparsity level: ``contribution[level]`` = (mean, 95 % low) of the NeuronIntGrad / NeuronMCT
    overlap minus its chance level over the photos; ``pruners[level]``: per pruner, the larger excess
    over chance of either contribution path's overlap with it. A level supports the claim for a pruner
    when the contribution excess is above chance (its 95 % low > 0) and more than ``factor`` times the
    pruner's excess (or the pruner's is at most 0)."""
    if set(contribution) != set(pruners) or not contribution:
        raise ValueError(
            f"contribution and pruners must have the same non-empty levels, got {sorted(contribution)} and {sorted(pruners)}"
        )
    failures, chance_levels, supported = [], [], 0
    for level in sorted(contribution):
        excess, low = contribution[level]
        if not low > 0:
            chance_levels.append(level)
            continue
        not_far = [p for p, e in pruners[level].items() if not excess > factor * max(e, 0.0)]
        supported += len(pruners[level]) - len(not_far)
        if not_far:
            failures.append(f"not far more than with {_names(not_far)} at {level:g} %")
    if not failures and not chance_levels:
        return HOLDS, ""
    if supported == 0:
        return NOT_ON_OURS, "no more than chance" if len(chance_levels) == len(contribution) else "; ".join(failures)
    reasons = ([f"no more than chance at {_names([f'{v:g} %' for v in chance_levels])}"] if chance_levels else []) + failures
    return PARTLY, "; ".join(reasons)


def _path_overlap(profile: Profile) -> Evaluation:
    from pathlib_pw.experiments import paths_tables as tables
    from pathlib_pw.reference import authors_overlap

    results = _load("paths", profile)
    levels = [v for v in OVERLAP_LEVELS if v in [float(x) for x in results["overlap_levels"]]]
    contribution, pruners, raw = {}, {}, {}
    for level in levels:
        table = tables.overlap_table(results, level, (*CONTRIBUTION, *PRUNERS))
        pair = table.loc[CONTRIBUTION]
        contribution[level] = (float(pair["above chance"]), float(pair["95% low"]))
        pruners[level] = {p: max(float(table.loc[(c, p), "above chance"]) for c in CONTRIBUTION) for p in PRUNERS}
        raw[level] = (float(pair["overlap (%)"]), float(pair["chance (%)"]))
    verdict, qualifier = path_overlap_rule(contribution, pruners)
    authors = authors_overlap(corrected=True)[0]
    authors_pruners = {p: max(float(authors.loc[c, p]) for c in CONTRIBUTION) for p in PRUNERS}
    ours = "; ".join(
        f"at {level:g} %: NeuronIntGrad / NeuronMCT {raw[level][0]:.1f} % (chance {raw[level][1]:.1f} %, "
        f"excess {contribution[level][0]:.1f} points); the largest excess with a pruner "
        f"{max(pruners[level].values()):.1f} points ({max(pruners[level], key=lambda p: pruners[level][p])})"
        for level in levels
    )
    return Evaluation(
        verdict,
        qualifier,
        ours=ours,
        paper=f"NeuronIntGrad / NeuronMCT {float(authors.loc['NeuronIntGrad', 'NeuronMCT']):.1f} % at 90 %; with "
        f"Greedy, Random, DGR(init=r) at most {max(v for p, v in authors_pruners.items() if p != 'DGR(init=1)'):.1f} %; "
        f"with DGR(init=1) {authors_pruners['DGR(init=1)']:.1f} % (no chance level given)",
        numbers={
            **{f"excess at {v:g}": contribution[v][0] for v in levels},
            **{f"excess low at {v:g}": contribution[v][1] for v in levels},
            **{f"{p} excess at {v:g}": e for v in levels for p, e in pruners[v].items()},
        },
    )


# ---------------------------------------------------------------------------------------------------
# Dead neurons: two claims


def contribution_dead_rule(largest_dead: float) -> tuple[Verdict, str]:
    """``largest_dead``: the largest dead share (%) of a contribution path at any swept sparsity."""
    return (HOLDS, "by construction") if largest_dead == 0 else (NOT_ON_OURS, "")


def _contribution_dead(profile: Profile) -> Evaluation:
    from pathlib_pw.experiments import paths_tables as tables
    from pathlib_pw.reference import authors_overlap

    results = _load("paths", profile)
    dead = tables.sweep_table(results, "dead_share") * 100
    largest = float(dead[list(CONTRIBUTION)].to_numpy().max())
    free = tables.free_share(results) * 100
    verdict, qualifier = contribution_dead_rule(largest)
    authors = authors_overlap(corrected=True)[1]
    return Evaluation(
        verdict,
        qualifier,
        ours=("0 %" if largest == 0 else f"up to {largest:.1f} %")
        + f" at every swept sparsity: a dead neuron scores 0, and both criteria drop every zero-score neuron "
        f"first (NeuronMCT {free['NeuronMCT']:.1f} %, NeuronIntGrad {free['NeuronIntGrad']:.1f} % of all neurons)",
        paper=f"{_pct(max(float(authors[c]) for c in CONTRIBUTION))} (VGG16, 90 %)",
        numbers={"contribution dead share": largest, **{f"{c} free share": float(free[c]) for c in CONTRIBUTION}},
    )


MOSTLY = 50.0  # "mostly dead": more than half of the path


def pathological_pruner_rule(at_levels: Mapping[float, tuple[float, float]]) -> tuple[Verdict, str]:
    """``at_levels``: per sparsity level, Greedy's (dead share %, median output change %). The paper's
    argument needs one level where the pruner's path keeps the output (change at most 15 %) while
    mostly dead (more than half)."""
    if not at_levels:
        raise ValueError("at_levels must name at least one level")
    if any(dead > MOSTLY and change <= KEEP for dead, change in at_levels.values()):
        return HOLDS, ""
    kept = [level for level, (_, change) in at_levels.items() if change <= KEEP]
    if kept:
        return PARTLY, f"its path keeps the output at {_names([f'{v:g} %' for v in kept])} but is not mostly dead there"
    if any(dead > MOSTLY for dead, _ in at_levels.values()):
        return NOT_ON_OURS, "its path does not keep the output at either level"
    return NOT_ON_OURS, ""


def _pathological_pruner(profile: Profile) -> Evaluation:
    from pathlib_pw.experiments import paths_tables as tables
    from pathlib_pw.reference import authors_overlap

    results = _load("paths", profile)
    levels = [v for v in OVERLAP_LEVELS if v in [float(x) for x in results["levels"]]]
    dead = tables.sweep_table(results, "dead_share") * 100
    change = tables.sweep_table(results, "output_change", "median") * 100
    at = {v: (float(dead.loc[v, "Greedy"]), float(change.loc[v, "Greedy"])) for v in levels}
    verdict, qualifier = pathological_pruner_rule(at)
    others = {
        label: float(dead.loc[90.0, label])
        for label in ("Greedy (original code)", "Greedy (ties by position)")
        if label in dead.columns and 90.0 in dead.index
    }
    authors = authors_overlap(corrected=True)[1]
    return Evaluation(
        verdict,
        qualifier,
        ours="Greedy (ties at random): "
        + "; ".join(f"at {v:g} % {d:.1f} % dead, median output change {c:.0f} %" for v, (d, c) in at.items())
        + "".join(f"; {label} {value:.1f} % dead at 90 %" for label, value in others.items()),
        paper=f"Greedy {float(authors['Greedy']):.1f} % dead at 90 % (VGG16), with the output kept",
        numbers={
            **{f"Greedy dead at {v:g}": d for v, (d, _) in at.items()},
            **{f"Greedy change at {v:g}": c for v, (_, c) in at.items()},
            **{f"{label} dead at 90": value for label, value in others.items()},
        },
    )


# ---------------------------------------------------------------------------------------------------
# Sparsity sweep: the 15 % point, the output kept, concentrated maps


def fifteen_percent_point_rule(change_at_90: float) -> tuple[Verdict, str]:
    """``change_at_90``: NeuronMCT's median output change (%) at 90 % sparsity."""
    return (HOLDS, "") if change_at_90 <= KEEP else (NOT_ON_OURS, "")


def _fifteen_percent_point(profile: Profile) -> Evaluation:
    from pathlib_pw.experiments import paths_tables as tables

    results = _load("paths", profile)
    summary = tables.sweep_summary(results, "NeuronMCT")
    at90 = float(summary.loc[90.0, "median change (%)"])
    every = float((tables.sweep_table(results, "output_change", "median") * 100).loc[90.0].min())
    point, low, high = tables.operating_range(results, "NeuronMCT", KEEP / 100)
    verdict, qualifier = fifteen_percent_point_rule(at90)
    return Evaluation(
        verdict,
        qualifier,
        ours=f"the 15 % point is {point:.0f} % (95 % range {low:.0f}-{high:.0f} %); at 90 % the NeuronMCT path changes "
        f"the output by {at90:.0f} % (median; 95 % interval {float(summary.loc[90.0, '95% low']):.0f}-"
        f"{float(summary.loc[90.0, '95% high']):.0f} %), every path by {math.floor(every)} % or more",
        paper="VGG16: 90 %",
        numbers={
            "NeuronMCT at 90": at90,
            "15 % point": point,
            "15 % point low": low,
            "15 % point high": high,
            "least change at 90": every,
        },
    )


def output_kept_rule(at_points: Mapping[str, Mapping[str, float]]) -> tuple[Verdict, str]:
    """``at_points``: per contribution criterion, the median output change (%) of each compared path
    (pruners and activity-aware controls) at the criterion's 15 % point; an empty mapping where the
    criterion's path keeps the output at no swept sparsity above 0 %."""
    compared = {c: changes for c, changes in at_points.items() if changes}
    if not compared:
        return NOT_ON_OURS, "no contribution path keeps the output"
    keepers = sorted({p for changes in compared.values() for p, change in changes.items() if change <= KEEP})
    pairs = [(c, p) for c, changes in compared.items() for p in changes]
    kept = [(c, p) for c, changes in compared.items() for p, change in changes.items() if change <= KEEP]
    if len(kept) == len(pairs):
        return NOT_ON_OURS, "every other path keeps it too"
    missing = [c for c, changes in at_points.items() if not changes]
    if not kept and not missing:
        return HOLDS, ""
    reasons = ([f"not against {_names(keepers)}"] if keepers else []) + [f"{c} keeps it at no sparsity" for c in missing]
    return PARTLY, "; ".join(reasons)


def _output_kept(profile: Profile) -> Evaluation:
    from pathlib_pw.experiments import paths_tables as tables

    results = _load("paths", profile)
    change = tables.sweep_table(results, "output_change", "median") * 100
    compared = [p for p in (*PRUNERS, *CONTROLS) if p in change.columns]
    points = {c: tables.operating_range(results, c, KEEP / 100)[0] for c in CONTRIBUTION}
    at_points = {
        c: ({} if math.isnan(s) or s <= 0 else {p: float(change.loc[s, p]) for p in compared}) for c, s in points.items()
    }
    verdict, qualifier = output_kept_rule(at_points)
    parts = []
    for c in ("NeuronMCT", "NeuronIntGrad"):
        s = points[c]
        if at_points[c]:
            least = min(at_points[c], key=lambda p: at_points[c][p])
            parts.append(
                f"at {s:.0f} % ({c}'s 15 % point): {c} {change.loc[s, c]:.1f} %, the other paths "
                f"{math.floor(at_points[c][least])} % or more (least: {least})"
            )
    numbers = {f"{p} at {c}'s point": v for c, changes in at_points.items() for p, v in changes.items()}
    return Evaluation(
        verdict,
        qualifier,
        ours="; ".join(parts) or "no contribution path keeps the output above 0 %",
        paper="(qualitative)",
        numbers={**numbers, **{f"{c} point": s for c, s in points.items()}},
    )


def concentration_rule(full_network: float, shares: Mapping[str, Sequence[float]]) -> tuple[Verdict, str]:
    """``full_network``: the top-5 % share of the full network's gradient; ``shares``: per path, the
    share of its PathwayGrad map at increasing sparsity, NaN where the path no longer connects the
    input to the output (an all-zero map): only the values before the first NaN count."""
    rising, higher, disconnects = [], [], False
    for values in shares.values():
        connected: list[float] = []
        for value in values:
            if math.isnan(value):
                disconnects = True
                break
            connected.append(float(value))
        chain = [full_network, *connected]
        rising.append(len(chain) > 1 and all(b > a for a, b in zip(chain, chain[1:])))
        higher.append(len(chain) > 1 and chain[-1] > full_network)
    if rising and all(rising):
        return HOLDS, "until the path disconnects" if disconnects else ""
    if any(higher):
        return PARTLY, "not at every step"
    return NOT_ON_OURS, ""


def _concentration(profile: Profile) -> Evaluation:
    from pathlib_pw.metrics import map_concentration

    maps = _load("maps_vs_sparsity", profile)
    methods = [str(m) for m in maps["methods"]]
    levels = [float(s) for s in maps["sparsities"]]
    share = map_concentration(maps["maps"][0])  # (methods, levels)
    full = float(map_concentration(maps["gradients"][0]))
    shares = {m: [float(v) for v in share[i]] for i, m in enumerate(methods)}
    verdict, qualifier = concentration_rule(full, shares)
    top = float(max(v for values in shares.values() for v in values if not math.isnan(v)))
    cut = [
        f"{m} at {levels[values.index(next(v for v in values if math.isnan(v)))]:.0f} %"
        for m, values in shares.items()
        if any(math.isnan(v) for v in values)
    ]
    return Evaluation(
        verdict,
        qualifier,
        ours=f"top-5 % share of the map rises from {full:.2f} (full network) to {top:.2f}"
        + (f", until the path disconnects ({_names(cut)})" if cut else ""),
        paper="one image, qualitative",
        numbers={"full network": full, **{f"{m} at {s:g}": v for m, values in shares.items() for s, v in zip(levels, values)}},
    )


# ---------------------------------------------------------------------------------------------------
# Qualitative comparison


def qualitative_rule() -> tuple[Verdict, str]:
    """The claim is a visual impression: nothing to compute decides it."""
    return NOT_TESTABLE, "a visual impression"


def _qualitative(profile: Profile) -> Evaluation:
    import numpy as np

    from pathlib_pw.metrics import map_concentration

    results = _load("qualitative", profile)
    methods = [str(m) for m in results["methods"]]
    sparsities = [float(s) for s in results["sparsities"]]
    share = np.nanmean(map_concentration(results["maps"]), 0)  # settings x methods
    grad, mct, ig = (methods.index(m) for m in ("Gradients", "NeuronMCT", "NeuronIntGrad"))
    verdict, qualifier = qualitative_rule()
    sparse = f"at {sparsities[1]:.0f} % a few points ({share[1, mct]:.2f} and {share[1, ig]:.2f})" if len(sparsities) > 1 else ""
    return Evaluation(
        verdict,
        qualifier,
        ours=f"at {sparsities[0]:.0f} % like gradient maps, a little more concentrated (top-5 % share "
        f"{share[0, mct]:.2f} and {share[0, ig]:.2f} against {share[0, grad]:.2f} for Gradients); " + sparse,
        paper="9 images per model, qualitative",
        numbers={"Gradients": float(share[0, grad]), "NeuronMCT": float(share[0, mct]), "NeuronIntGrad": float(share[0, ig])},
    )


# ---------------------------------------------------------------------------------------------------
# Sanity checks

MEASURES = ("spearman_abs", "ssim")
MARGIN = 0.3  # "far more similar than Gradients": by more than this, in both measures
Interval = tuple[float, float]


def sanity_rule(
    guided_backprop: Mapping[str, Interval],
    pathway_grad: Mapping[str, Mapping[str, Interval]],
    margin: float = MARGIN,
) -> tuple[Verdict, str]:
    """95 % intervals (low, high) of each map's similarity minus Gradients' after the classifier is
    randomized, per measure (absolute Spearman, SSIM): Guided Backprop's, and each PathwayGrad map's
    (by path and sparsity). A map stays far more similar when its interval lies above ``margin`` in
    both measures, falls like Gradients when its interval lies at or below ``margin`` in each."""

    def part(far: bool, like: bool) -> bool | None:
        return True if far else False if like else None

    guided_far = all(low > margin for low, _ in guided_backprop.values())
    guided_like = any(high <= margin for _, high in guided_backprop.values())
    pathway = [iv for maps in pathway_grad.values() for iv in maps.values()]
    pathway_like = bool(pathway) and all(high <= margin for _, high in pathway)
    # a map whose interval lies above the margin in some measure does not fall like Gradients
    pathway_far = [name for name, maps in pathway_grad.items() if any(low > margin for low, _ in maps.values())]
    insensitive, falls = part(guided_far, guided_like), part(pathway_like, bool(pathway_far))
    if insensitive is None or falls is None:
        open_parts = (["Guided Backprop's"] if insensitive is None else []) + (["PathwayGrad's"] if falls is None else [])
        undecided = [name for name, maps in pathway_grad.items() if any(low <= margin < high for low, high in maps.values())]
        which = f": {', '.join(undecided)}" if falls is None and undecided else ""
        return INCONCLUSIVE, f"{' and '.join(open_parts)} interval contains the {margin} margin{which}"
    if insensitive and falls:
        return HOLDS, ""
    if not insensitive and not falls:
        return NOT_ON_OURS, ""
    if not insensitive:
        return PARTLY, "Guided Backprop changes"
    return PARTLY, "PathwayGrad stays more than the margin above Gradients: " + ", ".join(pathway_far)


def _after_classifier(results: Any, chance: bool = False) -> dict[str, Any]:
    """Per measure, every map against Gradients after the classifier; ``chance``: rescaled by each
    map's chance level first (the rule's numbers; needs the trained maps)."""
    from pathlib_pw.experiments.sanity_tables import against_gradients, chance_levels

    stage = str(results["stages"][1])
    columns = ["Gradients", "GBP", *_pathway_columns(results)]
    return {
        m: against_gradients(results, m, stage, chance=chance_levels(results, m, columns) if chance else None) for m in MEASURES
    }


def _pathway_columns(results: Any) -> list[str]:
    return [str(c) for c in results["methods"] if str(c).split(" @ ")[0] in ("NeuronMCT", "NeuronIntGrad")]


def _sanity_checks(profile: Profile) -> Evaluation:
    from pathlib_pw.reference import authors_sanity

    own = _load("sanity_own_class", profile)
    trained = _load("sanity", profile)
    after = _after_classifier(own, chance=True)
    raw = _after_classifier(own)
    columns = _pathway_columns(own)

    def interval(table: Any, column: str) -> Interval:
        return float(table.loc[column, "difference low"]), float(table.loc[column, "difference high"])

    sparsity = float(own.config["sparsity"])

    def label(column: str) -> str:
        name, _, level = column.partition(" @ ")
        return f"{name} at {level or f'{sparsity:g} %'}"

    guided = {m: interval(after[m], "GBP") for m in MEASURES}
    pathway = {label(c): {m: interval(after[m], c) for m in MEASURES} for c in columns}
    verdict, qualifier = sanity_rule(guided, pathway)
    beside = _after_classifier(trained)["spearman_abs"]
    spearman = raw["spearman_abs"]
    authors = authors_sanity("spearman_abs").iloc[1]

    return Evaluation(
        verdict,
        qualifier,
        ours=f"{len(own['names'])} photos, the randomized model's class, after the classifier, absolute Spearman: "
        + ", ".join(f"{label(c)} {spearman.loc[c, 'mean']:.2f}" for c in columns)
        + f"; Gradients {spearman.loc['Gradients', 'mean']:.2f}; Guided Backprop {spearman.loc['GBP', 'mean']:.2f} "
        f"(the trained model's class: "
        + ", ".join(f"{label(c)} {beside.loc[c, 'mean']:.2f}" for c in columns)
        + f"; Gradients {beside.loc['Gradients', 'mean']:.2f}). Rescaled by chance, minus Gradients: "
        + ", ".join(
            f"{label(c)} {after['spearman_abs'].loc[c, 'difference']:.2f} [{pathway[label(c)]['spearman_abs'][0]:.2f}, "
            f"{pathway[label(c)]['spearman_abs'][1]:.2f}]"
            for c in columns
        ),
        paper=f"ResNet50: PathwayGrad Spearman {authors['NeuronMCT']:.2f} and {authors['NeuronIntGrad']:.2f} after the "
        f"classifier is randomized, Gradients {authors['Gradients']:.2f}; Guided Backprop {authors['GBP']:.2f}",
        numbers={
            **{f"Guided Backprop {m} {end}": v for m, iv in guided.items() for end, v in zip(("low", "high"), iv)},
            **{
                f"{c}, {m} {end}": v
                for c, maps in pathway.items()
                for m, iv in maps.items()
                for end, v in zip(("low", "high"), iv)
            },
        },
    )


# ---------------------------------------------------------------------------------------------------
# LeRF and ROAR: decided by their tables modules (lerf_tables.evaluate_claim, roar_tables.evaluate_claim)


def _lerf(profile: Profile) -> Evaluation:
    from pathlib_pw.experiments import lerf_tables

    return lerf_tables.evaluate_claim(_load("lerf_digits", profile), _load("lerf", profile))


def _roar(profile: Profile) -> Evaluation:
    from pathlib_pw.experiments import roar_tables

    return roar_tables.evaluate_claim(_load("roar", profile), _load("roar_mask", profile))


# ---------------------------------------------------------------------------------------------------
# Pathway decoding


def decoding_rule(wins: Mapping[float, bool]) -> tuple[Verdict, str]:
    """``wins``: per sparsity, whether both contribution paths' decodings beat every rival's in both
    measures on every photo (``decoding_tables.sweep_wins``)."""
    if not wins:
        raise ValueError("wins must hold at least one sparsity")
    won = [level for level, win in wins.items() if win]
    if len(won) == len(wins):
        return HOLDS, ""
    if not won:
        return NOT_ON_OURS, ""
    return PARTLY, f"at {' and '.join(f'{level:g}' for level in won)} % only"


def _decoding(profile: Profile) -> Evaluation:
    from pathlib_pw.experiments import decoding_tables as tables

    results = _load("decoding_sweep", profile)
    wins = tables.sweep_wins(results)
    verdict, qualifier = decoding_rule({float(k): bool(v) for k, v in wins["contribution paths win"].items()})
    labels = tables.paths(results)
    box = tables.sweep_values(results, "box_excess")

    level = 90.0 if 90.0 in wins.index else float(wins.index[-1])
    j = [float(v) for v in results["sparsities"]].index(level)

    def at(label: str) -> str:
        return "/".join(f"{v:+.2f}" for v in box[:, j, labels.index(label)])

    return Evaluation(
        verdict,
        qualifier,
        ours=f"{len(results['names'])} photos, {len(wins)} sparsities ({wins.index.min():g}-{wins.index.max():g} %), one "
        f"decoding per path: the contribution paths win at {int(wins['contribution paths win'].sum())} of them. At "
        f"{level:g} %, share of the change on the object minus the box's area (per photo): NeuronIntGrad "
        f"{at('NeuronIntGrad')}, NeuronMCT {at('NeuronMCT')}, DGR(init=1) {at('DGR(init=1)')}",
        paper="VGG16, one image, 98 % (qualitative)",
        numbers={
            **{f"{m} {level:g}": float(wins.loc[level, m]) for level in wins.index for m in wins.columns if "margin" in m},
        },
    )


# ---------------------------------------------------------------------------------------------------
# The registry

CLAIMS: dict[str, Claim] = {
    c.key: c
    for c in (
        Claim(
            "local_linearity",
            "local_linearity",
            "Local linearity",
            "The network restricted to a contribution pathway is locally linear around the input; the full network is not",
            "the target logit f through a path held fixed, at x + r d for random unit directions d (the same for "
            "every path) and a radius r of one 8-bit grey level per pixel value (RMS): the first-order error "
            "|f(x + r d) - f(x) - r grad f(x).d| over |f(x + r d) - f(x)|, median over the directions per photo. At the "
            "operating point (50 %), per photo the ratio of the NeuronMCT and the NeuronIntGrad path's error to each "
            "size-matched control's (Random, Random (dead first), Activation (dead first), Greedy, DGR(init=r)); the "
            "median ratio over the photos with its 95 % bootstrap interval. Holds if both contribution paths are more "
            "linear (interval below 1) than every control; holds partly if than some (named); does not hold on our "
            "model if than none. The full network is context, not the test: any path of half the neurons may be "
            "straighter than the whole network.",
            _local_linearity,
        ),
        Claim(
            "path_overlap",
            "path_overlap",
            "Path overlap",
            "Contribution paths overlap with each other far more than with pruners' paths",
            "at the operating point (50 %) and at the authors' 90 %, each pair's Jaccard overlap minus its chance "
            "level, per photo: the overlap two paths of the same sizes would have if each were drawn uniformly among "
            "the neurons its criterion keeps at 0 % sparsity (so both drop what their criterion drops for free, as "
            "the zero-score neurons). For the NeuronIntGrad / NeuronMCT pair, the mean excess with its 95 % "
            "bootstrap interval over the photos; for each pruner (Greedy, Random, DGR(init=r), DGR(init=1)), the "
            "larger mean excess of either contribution path with it. Holds if at both levels the contribution "
            "excess is above chance (interval above 0) and more than twice every pruner's (or the pruner's is at "
            "most 0); holds partly if at some level or for some pruners (named); does not hold on our model if "
            "for none.",
            _path_overlap,
        ),
        Claim(
            "contribution_dead",
            "dead_neurons",
            "Dead neurons",
            "Contribution paths hold no dead neuron",
            "the dead share of a path is the share of its kept neurons whose rectifier output is at most 0 in the "
            "unpruned network, mean over the photos. Holds if the NeuronMCT and NeuronIntGrad paths hold no dead "
            "neuron at any swept sparsity (by construction: a dead neuron scores 0 under both criteria and the "
            "zero-score neurons are removed first); does not hold on our model otherwise.",
            _contribution_dead,
        ),
        Claim(
            "pathological_pruner",
            "dead_neurons",
            "Dead neurons",
            "A pruner (Greedy) keeps the output with a path that is mostly dead neurons",
            "Greedy's path (intended, ties at random) at the operating point (50 %) and at the authors' 90 %: its "
            "dead share (mean over the photos) and its output change (median over the photos). Holds if at either "
            "level the path keeps the output (change at most 15 %) while more than half of it is dead; holds partly "
            "if it keeps the output but is not mostly dead; does not hold on our model if it keeps the output at "
            "neither level.",
            _pathological_pruner,
        ),
        Claim(
            "fifteen_percent_point",
            "sparsity_sweep",
            "Sparsity sweep",
            "At 90 % sparsity the NeuronMCT path changes the output by about 15 %",
            "the output change is the relative change of the predicted class's probability, median over the photos "
            "(the mean is unbounded above and carried by the photos whose probability rises). Holds if the NeuronMCT "
            "path's median change at 90 % is at most 15 % (the authors chose 90 % on VGG16 as the sparsity where it is "
            "about 15 %); does not hold on our model if it is more (the 15 % point, the sparsest swept level where "
            "the median is at most 15 %, lies elsewhere; its 95 % range over bootstrap resamples of the photos is given).",
            _fifteen_percent_point,
        ),
        Claim(
            "output_kept",
            "sparsity_sweep",
            "Sparsity sweep",
            "Contribution paths keep the output where other paths of the same size destroy it",
            "a path keeps the output when its median output change over the photos is at most 15 % (the paper's "
            "tolerance). At the 15 % point of NeuronMCT and of NeuronIntGrad (the sparsest swept level where that "
            "criterion's path keeps the output), the paths of the pruners (Greedy, Random, DGR(init=r), DGR(init=1)) "
            "and of two activity-aware controls (drop the dead neurons first, then at random or lowest |activation| "
            "first) at the same requested sparsity. Holds if none of them keeps the output at either point; holds "
            "partly if some do (named), or one contribution path keeps it at no sparsity above 0 %; does not hold on "
            "our model if every other path keeps it too, or neither contribution path keeps it above 0 %.",
            _output_kept,
        ),
        Claim(
            "concentration",
            "sparsity_sweep",
            "Sparsity sweep",
            "Sparser pathways give more concentrated PathwayGrad maps",
            "on the chapter's photo, the share of |map| held by the top 5 % of pixels, for the full network's "
            "gradient and for PathwayGrad through the NeuronMCT and NeuronIntGrad paths at each swept sparsity "
            "while the path still connects the input to the output (a map that is not all zero). Holds if, for "
            "both paths, the share rises at every step to a sparser path, starting above the full network's; "
            "holds partly if it ends higher than the full network's but not at every step; does not hold on our "
            "model if it does not end higher.",
            _concentration,
        ),
        Claim(
            "qualitative",
            "qualitative",
            "Qualitative comparison",
            "PathwayGrad maps are sharper and more on the object than the baselines",
            "'sharper and more on the object' is a visual impression: the paper gives neither a measure nor "
            "object masks for it, so nothing computed here can decide it. The top-5 % share of |map| below "
            "measures concentration, not being on the object; the [LeRF chapter](lerf.ipynb) measures what the "
            "maps are worth.",
            _qualitative,
        ),
        Claim(
            "sanity_checks",
            "sanity_checks",
            "Sanity checks",
            "PathwayGrad depends on the learned weights (its similarity falls like Gradients'); Guided Backprop " "does not",
            "after the classifier alone is randomized, on every photo, with the randomized model's own class "
            "(the authors' choice; the trained model's class is shown beside it), each map's similarity to the "
            "trained map (absolute Spearman and SSIM), rescaled by the method's chance level to (s - chance) / "
            "(1 - chance), where chance is the mean similarity between the trained maps of two different photos "
            "(sparse maps score a high SSIM against any sparse map), minus Gradients' rescaled similarity, paired "
            "per photo: its mean with a 95 % bootstrap interval over the photos. A map stays far more similar than "
            "Gradients when the interval lies above 0.3 in both measures; it falls like Gradients when the interval "
            "lies at or below 0.3 in each, and does not when it lies above 0.3 in some measure. "
            "Holds if Guided Backprop stays far more similar and both PathwayGrad maps (NeuronMCT and "
            "NeuronIntGrad paths) fall like Gradients in both measures at the operating point (50 %) and at the "
            "authors' 70 %; holds partly if one of the two parts holds; does not hold on our model if neither; "
            "inconclusive at this sample size if an interval that decides a part contains 0.3.",
            _sanity_checks,
        ),
        Claim(
            "lerf",
            "lerf",
            "LeRF and MoRF",
            "Removing the pixels PathwayGrad marks least relevant changes the output less than for any baseline "
            "but Grad-CAM (LeRF)",
            "mean fill, maps in float32, ties broken at random (5 tie orders). For each setting (digits, 539 "
            "images, 95 % path; photos, 9 images, 50 % and 90 % paths), compare PathwayGrad (NeuronMCT path) with "
            "the best gradient baseline (lowest mean LeRF AUC among Gradients, Guided Backprop, InputMCT, "
            "InputIntGrad whose maps are never constant): 95 % paired bootstrap interval of the mean difference "
            "(baseline - PathwayGrad) over images. Holds if the interval lies above 0 in every setting; holds "
            "partly if in some; does not hold on our model if in none and the digits interval does not lie above "
            "0; inconclusive only if no setting can decide (all intervals contain 0 and the digits have fewer than "
            "100 images).",
            _lerf,
        ),
        Claim(
            "roar",
            "roar",
            "ROAR and KAR",
            "ROAR: removing PathwayGrad's most relevant pixels and retraining lowers the accuracy more than the "
            "gradient baselines'",
            "digits, 5 explained models (split, base model, tie order and retraining seeded together). ROAR area = "
            "trapezoids of the test accuracy over the removed share 0..0.9, the clean accuracy at 0 (at most 0.9; "
            "lower: the map found the pixels that matter). A fill (the dataset mean, ROAD's imputation) can decide "
            "only if it passes its control: PathwayGrad and every baseline have a lower mean ROAR area than the "
            "per-image random ranking; otherwise it measures something other than relevance (written after an "
            "earlier single-model run had shown the mean fill failing it, before the ROAD numbers existed). "
            "Compare PathwayGrad (NeuronMCT path) with each gradient baseline (Gradients, Guided Backprop, InputMCT, InputIntGrad, maps never constant): 95 % "
            "Student-t interval (df 4) of the paired difference (baseline - PathwayGrad) over the explained models. "
            "Not testable here if no fill passes; holds if PathwayGrad is lower than every baseline under every "
            "passing fill; holds partly if lower than some; does not hold on our model if lower than none and some "
            "baseline is lower than PathwayGrad; inconclusive otherwise.",
            _roar,
        ),
        Claim(
            "decoding",
            "decoding",
            "Pathway decoding",
            "Pathway decoding: contribution paths decode to sparse, object-shaped, class-relevant images; "
            "pruners' paths to dense or noisy ones",
            "on each photo (two) and at each sparsity from the operating point to the authors' 98 % (50, 70, 85, "
            "90, 98 %), one decoding per path, two measures of what the paper says the images look like. On the "
            "object: the share of the decoding's change (|image - start|, from the seeded noise every decoding starts from) inside a box drawn by hand around the object "
            "the class names, minus the box's area (what a change spread evenly would put there). Sparse: the share "
            "of the change held by its top 5 % of pixels. The contribution paths win at a sparsity when both "
            "contribution decodings (NeuronMCT, NeuronIntGrad) score higher than every pruner's (DGR(init=1), "
            "DGR(init=r), Greedy, the authors' Greedy) and than a Random path's of the same size, in both measures "
            "and on both photos (compared photo by photo). A decoding that changed the image by less than 1 % of what the full network's "
            "decoding of the same photo changed decoded nothing (its path connects almost no pixel to the logit): "
            "a contribution path that decoded nothing cannot win there, a rival that decoded nothing is left out, "
            "and with no rival left there is nothing to win against. "
            "Holds if they win at every sparsity; holds partly if at some; does not hold on our "
            "model if at none. Class relevance cannot decide: each decoding raises the class through its own path "
            "(what it optimizes), and the full network's probability of the class on a decoding is compared with "
            "a grey image's, the control that shows it cannot separate the paths.",
            _decoding,
        ),
    )
}


def claim(key: str) -> Claim:
    """The claim named ``key``."""
    if key not in CLAIMS:
        raise ValueError(f"key must be one of {list(CLAIMS)}, got {key!r}")
    return CLAIMS[key]


def chapter_claims(chapter: str) -> list[Claim]:
    """The claims whose evidence is in ``chapter`` (a notebook stem), in the table's order."""
    return [c for c in CLAIMS.values() if c.chapter == chapter]


def evaluate(key: str, profile: Profile = "book") -> Evaluation:
    """Decide the claim named ``key`` on ``profile``'s cached results."""
    from pathlib_pw.runner.contract import PROFILES

    found = claim(key)
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    result = found.evaluate(profile)
    if not isinstance(result, Evaluation):
        raise TypeError(f"the evaluator of claim {key!r} must return an Evaluation, got {type(result).__name__}")
    return result


def verdict_text(evaluation: Evaluation) -> str:
    """The verdict with its qualifier, as the intro's table shows it."""
    return evaluation.text


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def verdict_markdown(key: str, profile: Profile = "book") -> str:
    """The chapter's verdict line: the verdict (and qualifier), the rule, then our numbers and the
    paper's. In a chapter with several claims it starts with the claim's statement."""
    found = claim(key)
    result = evaluate(key, profile)
    head = f"*{_sentence(found.statement)}* " if len(chapter_claims(found.chapter)) > 1 else ""
    qualifier = f" ({result.qualifier})" if result.qualifier else ""
    rule = found.rule[0].upper() + found.rule[1:]
    return (
        f"{head}**Verdict: {result.verdict}**{qualifier}. Rule: {_sentence(rule)} "
        f"Ours: {result.ours}; the paper: {_sentence(result.paper)}"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(profile: Profile = "book") -> str:
    """The intro's claims table (claim | the paper | ours | verdict | chapter), one row per claim."""
    rows = ["| claim | the paper | ours | verdict | chapter |", "|---|---|---|---|---|"]
    for found in CLAIMS.values():
        result = evaluate(found.key, profile)
        cells = [found.statement, result.paper, result.ours, result.text, f"[{found.chapter_title}]({found.chapter}.ipynb)"]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)
