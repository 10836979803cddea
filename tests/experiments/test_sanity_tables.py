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
