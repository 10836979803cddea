"""The authors' published numbers (``data/reference/``, provenance in its README)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "data" / "reference"
TABLES = ("path_overlap_vgg16_sparsity90", "sanity_checks_resnet50", "roar", "lerf")

# The poster's overlap figure swaps the labels Greedy and Random (PAPER.md section 5).
SWAPPED_OVERLAP_LABELS = {"Greedy": "Random", "Random": "Greedy"}


def authors_table(name: str) -> pd.DataFrame:
    """One of ``TABLES`` as a DataFrame."""
    if name not in TABLES:
        raise ValueError(f"name must be one of {list(TABLES)}, got {name!r}")
    return pd.read_csv(REFERENCE_DIR / f"{name}_authors.csv")


def authors_overlap(corrected: bool = True) -> tuple[pd.DataFrame, pd.Series]:
    """The poster's Jaccard matrix (percent, symmetric) and dead share per method at 90 % sparsity.

    ``corrected=True`` undoes the Greedy/Random label swap; ``False`` keeps the labels as printed.
    """
    table = authors_table("path_overlap_vgg16_sparsity90")
    pairs = table[table.quantity == "jaccard"].copy()
    if corrected:
        for col in ("method_a", "method_b"):
            pairs[col] = pairs[col].map(lambda m: SWAPPED_OVERLAP_LABELS.get(m, m))
    methods = list(dict.fromkeys(list(pairs.method_a) + list(pairs.method_b)))
    order = [m for m in ("NeuronIntGrad", "NeuronMCT", "DGR(init=1)", "DGR(init=r)", "Greedy", "Random") if m in methods]
    matrix = pd.DataFrame(100.0, index=order, columns=order)
    for row in pairs.itertuples():
        matrix.loc[row.method_a, row.method_b] = matrix.loc[row.method_b, row.method_a] = row.value_percent
    dead = table[table.quantity == "dead_share_of_path"].set_index("method_a").value_percent
    return matrix, dead


def authors_sanity(metric: str) -> pd.DataFrame:
    """The authors' ResNet50 cascading-randomization curves: stages (their order) x methods, for ``metric``
    (``spearman_signed``, ``spearman_abs`` or ``ssim``), mean over their 1000 images."""
    table = authors_table("sanity_checks_resnet50")
    metrics = sorted(table.metric.unique())
    if metric not in metrics:
        raise ValueError(f"metric must be one of {metrics} (the authors published no HOG numbers), got {metric!r}")
    rows = table[table.metric == metric]
    return rows.pivot(index="randomized_up_to", columns="method", values="mean_over_1000_images").reindex(
        list(dict.fromkeys(rows.randomized_up_to))
    )
