"""The book's spread bands, computed from the committed caches as the chapters draw them, never leave
the range their measure can take: no band of a non-negative measure dips below 0 (BOOK_STYLE), no
accuracy band leaves 0..100 %. A new cache or interval rule that breaks this fails here before a
figure shows it."""

from __future__ import annotations

import numpy as np
import pytest

from pathlib_pw import experiments
from pathlib_pw.experiments import lerf_tables, linearity_tables, paths_tables, roar_tables


@pytest.fixture(scope="module")
def book():
    return lambda name: experiments.load_or_run(name, "book", "cpu")


@pytest.mark.parametrize("name", ["lerf", "lerf_digits"])
def test_removal_curve_bands_stay_non_negative(book, name):
    results = book(name)
    for order in ("least", "most"):
        for removal in (str(r) for r in results["removals"]):
            mean, low, high = lerf_tables.curve_frames(results, order, removal)
            assert (low.to_numpy() >= 0).all(), (order, removal)
            assert (low.to_numpy() <= mean.to_numpy() + 1e-12).all() and (mean.to_numpy() <= high.to_numpy() + 1e-12).all()


def test_sparsity_sweep_bands_stay_non_negative(book):
    median, low, high = paths_tables.sweep_interval(book("paths"), "output_change")
    assert (low.to_numpy() >= 0).all()
    assert (low.to_numpy() <= median.to_numpy() + 1e-12).all() and (median.to_numpy() <= high.to_numpy() + 1e-12).all()


@pytest.mark.parametrize("measure", ["relative_error", "flip_share"])
def test_local_linearity_bands_of_non_negative_measures_stay_non_negative(book, measure):
    results = book("local_linearity")
    for level in (float(s) for s in results["sparsities"]):
        _, low, _ = linearity_tables.curve_frames(results, measure, level)
        assert not (low.to_numpy() < 0).any(), level  # NaN: no path at this level, no band


def test_roar_accuracy_bands_stay_within_0_and_100_percent(book):
    results = book("roar")
    for mode in (str(m) for m in results["modes"]):
        for fill in (str(f) for f in results["fills"]):
            mean, half = roar_tables.accuracy_frames(results, mode, fill)
            low, high = (mean - half).to_numpy(), (mean + half).to_numpy()
            assert np.isfinite(low).all() and (low >= 0).all() and (high <= 100).all(), (mode, fill)
