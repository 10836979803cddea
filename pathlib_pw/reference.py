"""The authors' published numbers, shipped as package data in ``pathlib_pw/reference_data/``
(provenance in its ``README.md``) and read with :mod:`importlib.resources`, so an installed wheel has
them too."""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11
    from importlib.resources.abc import Traversable

REFERENCE_PACKAGE = "pathlib_pw"
REFERENCE_FOLDER = "reference_data"
TABLES = ("path_overlap_vgg16_sparsity90", "sanity_checks_resnet50", "roar", "lerf")

# The poster's overlap figure swaps the labels Greedy and Random (book/methods.md: the paper's experiments), and the
# authors' plotting script (plots.py) also swaps NeuronIntGrad and NeuronMCT in the overlap matrix and
# in the dead-share bars (issue 16: differences up to 0.25 percentage points).
SWAPPED_OVERLAP_LABELS = {"Greedy": "Random", "Random": "Greedy", "NeuronIntGrad": "NeuronMCT", "NeuronMCT": "NeuronIntGrad"}
# the dead-share bars: only NeuronIntGrad and NeuronMCT (Random's 59.51 % is VGG16's base dead rate)
SWAPPED_DEAD_SHARE_LABELS = {"NeuronIntGrad": "NeuronMCT", "NeuronMCT": "NeuronIntGrad"}


def reference_file(name: str) -> Traversable:
    """The CSV file of one of ``TABLES`` inside the installed package (open it with ``.open()``)."""
    if name not in TABLES:
        raise ValueError(f"name must be one of {list(TABLES)}, got {name!r}")
    resource = files(REFERENCE_PACKAGE) / REFERENCE_FOLDER / f"{name}_authors.csv"
    if not resource.is_file():
        raise FileNotFoundError(
            f"reference table {name!r} is missing from the installed package ({REFERENCE_FOLDER}/{name}_authors.csv); "
            "reinstall pathlib_pw from a wheel or a checkout that has it"
        )
    return resource


def authors_table(name: str) -> pd.DataFrame:
    """One of ``TABLES`` as a DataFrame."""
    with reference_file(name).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


def authors_overlap(corrected: bool = True) -> tuple[pd.DataFrame, pd.Series]:
    """The poster's Jaccard matrix (percent, symmetric) and dead share per method at 90 % sparsity.

    ``corrected=True`` undoes the label swaps of the authors' plotting script (in the matrix
    Greedy/Random and NeuronIntGrad/NeuronMCT, in the dead shares NeuronIntGrad/NeuronMCT);
    ``False`` keeps the labels as printed.
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
    dead_rows = table[table.quantity == "dead_share_of_path"]
    labels = dead_rows.method_a.map(lambda m: SWAPPED_DEAD_SHARE_LABELS.get(m, m)) if corrected else dead_rows.method_a
    dead = pd.Series(dead_rows.value_percent.to_numpy(), index=pd.Index(labels.to_numpy(), name="method_a"), name="value_percent")
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
