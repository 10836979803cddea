"""Tables of the pathway-decoding chapter from cached results of :mod:`pathlib_pw.experiments.decoding`:
what the notebook shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# the paper's two groups: contribution criteria decode to class-relevant features, pruners do not
CONTRIBUTION = ("NeuronIntGrad", "NeuronMCT")
PRUNERS = ("DGR(init=1)", "DGR(init=r)", "Greedy", "Greedy (original code)")


def level_index(results: Any, level: float) -> int:
    levels = [float(v) for v in results["sparsities"]]
    if float(level) not in levels:
        raise ValueError(f"level must be one of {levels}, got {level!r}")
    return levels.index(float(level))


def paths(results: Any) -> list[str]:
    return [str(p) for p in results["paths"]]


def _pair_means(matrix: np.ndarray, n_paths: int, n_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd over seed pairs of a (P*S, P*S) matrix, per pair of paths; the diagonal blocks
    leave out each decoding's similarity to itself (within a path: across seeds)."""
    blocks = matrix.reshape(n_paths, n_seeds, n_paths, n_seeds).transpose(0, 2, 1, 3).astype(np.float64)
    mean, sd = np.zeros((n_paths, n_paths)), np.zeros((n_paths, n_paths))
    off = ~np.eye(n_seeds, dtype=bool)
    for a in range(n_paths):
        for b in range(n_paths):
            values = blocks[a, b][off] if a == b else blocks[a, b].ravel()
            if values.size == 0:
                mean[a, b] = sd[a, b] = np.nan
            else:
                mean[a, b], sd[a, b] = values.mean(), values.std()
    return mean, sd


def similarity_matrix(results: Any, level: float, metric: str = "cosine") -> pd.DataFrame:
    """Mean similarity between the decodings of every pair of paths at ``level`` (over all seed
    pairs; on the diagonal, across the seeds of one path). ``metric``: ``"cosine"`` (the full
    network's penultimate features) or ``"ssim"`` (pixels)."""
    import pandas as pd

    if metric not in ("cosine", "ssim"):
        raise ValueError(f"metric must be 'cosine' or 'ssim', got {metric!r}")
    labels = paths(results)
    mean, _ = _pair_means(results[metric][level_index(results, level)], len(labels), len(results["seeds"]))
    return pd.DataFrame(mean, index=labels, columns=labels)


CHANGED = 0.02  # |pixel - 0.5| above this: changed by the optimization (the start is 0.5 +- 0.0025, sd)


def changed_pixels(results: Any) -> np.ndarray:
    """Share of the pixels (any colour) the optimization moved away from the grey start, per decoding
    (levels, paths, seeds)."""
    images = np.asarray(results["images"], dtype=np.float32)
    return (np.abs(images - 0.5) > CHANGED).any(-1).mean((-2, -1))


def path_table(results: Any, level: float) -> pd.DataFrame:
    """Per path at ``level``, on the photo: realized sparsity, kept share of the last site, how much
    the target logit depends on the input through the path (sum of |d logit / d x|; 0: the path is
    cut), and the logit and probability of the target through the path."""
    import pandas as pd

    j = level_index(results, level)
    frame = pd.DataFrame(
        {
            "realized sparsity (%)": results["realized"][j],
            "kept in last site (%)": 100 * results["last_site_kept"][j],
            "input gradient": results["input_gradient"][j],
            "logit through path": results["photo_logit_own"][j],
            "p through path": results["photo_prob_own"][j],
        },
        index=paths(results),
    )
    frame.index.name = "path"
    return frame


def decoding_table(results: Any, level: float) -> pd.DataFrame:
    """Per path at ``level``, its decodings (means over the seeds): the logit through the path and
    through the full network, the full network's probability of the target and how often it
    predicts it, the cosine of the full network's penultimate features to the photo's, across seeds
    and to other paths' decodings, and the share of pixels changed."""
    import pandas as pd

    j = level_index(results, level)
    labels = paths(results)
    target = int(results["target"])
    cos_mean, _ = _pair_means(results["cosine"][j], len(labels), len(results["seeds"]))
    others = np.array([np.nanmean(np.delete(cos_mean[p], p)) for p in range(len(labels))])
    frame = pd.DataFrame(
        {
            "logit through path": results["logit_own"][j].mean(1),
            "logit, full network": results["logit_full"][j].mean(1),
            "p, full network": results["prob_full"][j].mean(1),
            "predicted as target": (results["top1_full"][j] == target).mean(1),
            "cosine to photo": results["photo_cosine"][j].mean(1),
            "cosine across seeds": np.diagonal(cos_mean),
            "cosine to other paths": others,
            "pixels changed (%)": 100 * changed_pixels(results)[j].mean(1),
        },
        index=labels,
    )
    frame.index.name = "path"
    return frame


def group_summary(results: Any, level: float) -> pd.DataFrame:
    """The paper's claim in numbers at ``level``: the full network's probability of the target on the
    decodings, and their cosine to the photo, for the contribution paths, the pruners and the
    original network (mean, min and max over paths and seeds)."""
    import pandas as pd

    j = level_index(results, level)
    labels = paths(results)
    groups = {
        "original network": [p for p in labels if p == "Original network"],
        "contribution paths": [p for p in labels if p in CONTRIBUTION],
        "pruner paths": [p for p in labels if p in PRUNERS],
    }
    rows = {}
    for name, members in groups.items():
        if not members:
            continue
        index = [labels.index(p) for p in members]
        prob, cos = results["prob_full"][j][index].ravel(), results["photo_cosine"][j][index].ravel()
        rows[name] = {
            "paths": ", ".join(members),
            "decodings": prob.size,
            "p, full network (mean)": prob.mean(),
            "p (min)": prob.min(),
            "p (max)": prob.max(),
            "cosine to photo (mean)": cos.mean(),
            "cosine (min)": cos.min(),
            "cosine (max)": cos.max(),
        }
    return pd.DataFrame(rows).T


def top_neuron_table(results: Any) -> pd.DataFrame:
    """The top neuron of each path (first sparsity): site, channel, and the share of the path's total
    score (kept neurons of all sites) that the neuron and its channel hold."""
    import pandas as pd

    channels = results["top_channel"].astype(int)
    frame = pd.DataFrame(
        {
            "site": results["top_site"],
            "channel": [str(c) if c >= 0 else "none (all scores 0)" for c in channels],
            "share of path score": results["top_share"],
            "channel share": results["top_channel_share"],
        },
        index=[str(p) for p in results["top_paths"]],
    )
    frame.index.name = "path"
    return frame


__all__ = [
    "CONTRIBUTION",
    "PRUNERS",
    "changed_pixels",
    "decoding_table",
    "group_summary",
    "level_index",
    "path_table",
    "similarity_matrix",
    "top_neuron_table",
]


# ---- the sweep (:mod:`pathlib_pw.experiments.decoding_sweep`) -------------------------------------

RANDOM = "Random"
# per decoding, (photos, sparsities, paths); the two "excess" measures subtract the region's area
SWEEP_MEASURES = (
    "box_excess",
    "gradcam_excess",
    "concentration",
    "prob_own",
    "prob_full",
    "photo_cosine",
    "photo_prob_path",
    "output_change",
    "realized",
    "change",
)
# the two measures of the claim (on the object, sparse) and the paths a contribution path must beat
DECIDING = ("box_excess", "concentration")
RIVALS = (*PRUNERS, RANDOM)
# a decoding that changed the image by less than this share of the full network's decoding (same
# photo) decoded nothing: its path connects (almost) no pixel to the logit, and the shares of a
# vanishing change are noise. Its "where" and "how concentrated" are left out (NaN)
DECODED = 0.01


def region_areas(results: Any) -> pd.DataFrame:
    """Per photo: the share of the image inside the object box and inside the Grad-CAM region
    (what a change spread evenly would put there)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "box area": results["region_box"].mean((1, 2)),
            "Grad-CAM region area": results["region_gradcam"].mean((1, 2)),
        },
        index=[str(n) for n in results["names"]],
    )


def sweep_values(results: Any, measure: str) -> np.ndarray:
    """(photos, sparsities, paths) of one of :data:`SWEEP_MEASURES`."""
    if measure not in SWEEP_MEASURES:
        raise ValueError(f"measure must be one of {list(SWEEP_MEASURES)}, got {measure!r}")
    if measure == "box_excess":
        values = results["box_share"] - results["region_box"].mean((1, 2))[:, None, None]
    elif measure == "gradcam_excess":
        values = results["gradcam_share"] - results["region_gradcam"].mean((1, 2))[:, None, None]
    else:
        values = np.asarray(results[measure])
    if measure in ("box_excess", "gradcam_excess", "concentration"):
        values = np.where(decoded(results), values, np.nan)
    return values


def decoded(results: Any) -> np.ndarray:
    """(photos, sparsities, paths): whether the decoding changed the image by at least
    :data:`DECODED` of what the full network's decoding of the same photo changed."""
    original = paths(results).index("Original network")
    change = np.asarray(results["change"], dtype=np.float64)
    return change >= DECODED * change[:, :, original : original + 1]


def sweep_table(results: Any, measure: str) -> pd.DataFrame:
    """Rows (photo, sparsity), columns the paths: one of :data:`SWEEP_MEASURES`."""
    import pandas as pd

    values = sweep_values(results, measure)
    names = [str(n) for n in results["names"]]
    levels = [float(v) for v in results["sparsities"]]
    index = pd.MultiIndex.from_product([names, levels], names=["photo", "sparsity"])
    return pd.DataFrame(values.reshape(len(names) * len(levels), -1), index=index, columns=paths(results))


def sweep_wins(results: Any) -> pd.DataFrame:
    """Per sparsity and deciding measure, photo by photo: the lowest contribution decoding's value
    minus the highest rival's (:data:`RIVALS`) on the same photo, then the smallest of these over the
    photos (above 0: the contribution paths win on every photo), and whether they win in both
    measures. A contribution path that decoded nothing (:func:`decoded`) cannot win (NaN margin); a
    rival that decoded nothing is left out; with no rival left on a photo there is nothing to win
    against (NaN margin)."""
    import pandas as pd

    labels = paths(results)
    ours = [labels.index(p) for p in CONTRIBUTION if p in labels]
    rivals = [labels.index(p) for p in RIVALS if p in labels]
    if not ours or not rivals:
        raise ValueError(f"results must hold a contribution path {CONTRIBUTION} and a rival {RIVALS}; paths: {labels}")
    levels = [float(v) for v in results["sparsities"]]
    margins: dict[str, Any] = {}
    for measure in DECIDING:
        values = sweep_values(results, measure)  # (photos, levels, paths)
        rival = np.where(np.isnan(values[:, :, rivals]), -np.inf, values[:, :, rivals])
        best = rival.max(2)
        per_photo = values[:, :, ours].min(2) - np.where(np.isfinite(best), best, np.nan)
        margins[f"{measure} margin"] = per_photo.min(0)  # NaN on any photo: no win
        argbest = rival.argmax(2)
        margins[f"{measure} best rival"] = [
            ", ".join(sorted({labels[rivals[int(b)]] for i, b in enumerate(argbest[:, j]) if np.isfinite(rival[i, j, b])}))
            or "none decoded"
            for j in range(len(levels))
        ]
    table = pd.DataFrame(margins, index=pd.Index(levels, name="sparsity"))
    table["contribution paths win"] = (table[[f"{m} margin" for m in DECIDING]] > 0).all(axis=1)
    return table
