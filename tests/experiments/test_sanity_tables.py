"""Tables of the sanity checks (pathlib_pw.experiments.sanity_tables) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from pathlib_pw.experiments import sanity_tables
from pathlib_pw.sanity import SIMILARITY_METRICS


def test_similarity_table_means_over_images_and_skips_nan():
    values = np.zeros((2, 2, 1, len(SIMILARITY_METRICS)), dtype=np.float32)
    values[:, 0] = 1.0
    values[0, 1, 0, 0], values[1, 1, 0, 0] = 0.2, np.nan
    values[0, 1, 0, 2], values[1, 1, 0, 2] = 0.2, 0.6
    results = {"cascading": values, "stages": np.array(["original", "classifier"]), "methods": np.array(["Gradients"]),
               "metrics": np.array(SIMILARITY_METRICS)}
    assert sanity_tables.similarity_table(results, "spearman_signed").loc["classifier", "Gradients"] == pytest.approx(0.2)
    assert sanity_tables.similarity_table(results, "ssim").loc["classifier", "Gradients"] == pytest.approx(0.4)
    assert sanity_tables.similarity_table(results, "ssim", stat="std").loc["classifier", "Gradients"] == pytest.approx(0.2)
    assert sanity_tables.similarity_table(results, "spearman_signed", stat="count").loc["classifier", "Gradients"] == 1
    for bad in (dict(metric="pearson"), dict(metric="ssim", kind="both"), dict(metric="ssim", stat="median")):
        with pytest.raises(ValueError, match=next(iter(bad)) if len(bad) == 1 else list(bad)[-1]):
            sanity_tables.similarity_table(results, **bad)


def _two_stage_results(values):
    """values: (photos, columns) similarities after the classifier, Gradients first; spearman_abs only."""
    photos, columns = values.shape
    cascading = np.ones((photos, 2, columns, len(SIMILARITY_METRICS)))
    cascading[:, 1, :, SIMILARITY_METRICS.index("spearman_abs")] = values
    return {
        "cascading": cascading,
        "stages": np.array(["original", "classifier"]),
        "methods": np.array(["Gradients", "GBP", "NeuronMCT"])[:columns],
        "metrics": np.array(SIMILARITY_METRICS),
        "names": np.array([f"p{i}" for i in range(photos)]),
    }


def test_against_gradients_pairs_by_photo_and_bootstraps():
    from pathlib_pw.statistics import bootstrap_interval

    values = np.array([[0.1, 0.9, 0.2], [0.3, 1.0, np.nan], [0.2, 0.8, 0.5]])
    table = sanity_tables.against_gradients(_two_stage_results(values), "spearman_abs", "classifier")
    assert table.loc["GBP", "mean"] == pytest.approx(0.9)
    assert table.loc["GBP", "difference"] == pytest.approx(0.7)
    # NeuronMCT's constant map on the second photo leaves that photo out of its pair
    assert table.loc["NeuronMCT", "n"] == 2 and table.loc["NeuronMCT", "difference"] == pytest.approx(0.2)
    _, low, high = bootstrap_interval(np.array([0.8, 0.7, 0.6]))
    assert (table.loc["GBP", "difference low"], table.loc["GBP", "difference high"]) == pytest.approx((low, high))
    assert table.loc["Gradients", "difference"] == 0.0
    with pytest.raises(ValueError, match="reference must be one of"):
        sanity_tables.against_gradients(_two_stage_results(values), "spearman_abs", "classifier", reference="Grad")
    with pytest.raises(ValueError, match="stage must be one of"):
        sanity_tables.per_photo(_two_stage_results(values), "spearman_abs", "stem")


def test_interval_curves_bracket_the_mean():
    values = np.array([[0.1, 0.9, 0.2], [0.3, 1.0, np.nan], [0.2, 0.8, 0.5]])
    mean, low, high = sanity_tables.interval_curves(_two_stage_results(values), "spearman_abs")
    assert mean.loc["classifier", "NeuronMCT"] == pytest.approx(0.35)
    assert (low <= mean + 1e-12).all().all() and (mean <= high + 1e-12).all().all()
    assert mean.loc["original"].tolist() == [1.0, 1.0, 1.0]
