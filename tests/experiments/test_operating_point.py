"""The operating-point experiment is the paths experiment at NeuronMCT's 15 % point, and agrees with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pathlib_pw import cache, experiments
from pathlib_pw.experiments import operating_point, paths, paths_tables


@pytest.mark.parametrize("profile", ["smoke", "book", "paper"])
def test_it_is_the_paths_configuration_at_one_sparsity(profile):
    point = operating_point.config(profile)
    expected = 90.0 if profile == "paper" else operating_point.BOOK_OPERATING_POINT
    assert point.overlap_sparsities == (expected,) and point.sweep_sparsities == ()
    same = dataclasses.replace(paths.config(profile), overlap_sparsities=point.overlap_sparsities, sweep_sparsities=())
    if profile == "book":  # the first 4 photos (the run's cost on one CPU thread)
        assert point.inputs.images == paths.config(profile).inputs.images[:4]
        same = dataclasses.replace(same, inputs=point.inputs)
    assert point == same  # criteria, budgets and seeds as in the paths experiment


def _book(name, monkeypatch):
    monkeypatch.delenv(cache.RESULTS_ENV, raising=False)
    directory = cache.results_root() / "book" / name
    if not cache.is_current(directory, name, experiments.get_config(name, "book")):
        pytest.skip(f"no current book cache for {name}")
    return cache.load(directory)


def test_the_book_point_is_the_sweeps_15_percent_point(monkeypatch):
    sweep = _book("paths", monkeypatch)
    assert paths_tables.sparsity_for_change(sweep, "NeuronMCT", 0.15) == operating_point.BOOK_OPERATING_POINT


def test_the_cached_point_agrees_with_the_sweep_at_that_sparsity(monkeypatch):
    """Same paths, computed twice (another thread count): the counts agree to rounding, the output
    changes to what a few flipped threshold neurons move (NeuronIntGrad's: up to 800 per decision)."""
    sweep, point = _book("paths", monkeypatch), _book("operating_point", monkeypatch)
    assert list(point["criteria"]) == list(sweep["criteria"]) and list(point["names"]) == list(sweep["names"])[: len(point["names"])]
    j = [float(v) for v in sweep["levels"]].index(float(point["levels"][0]))
    n = len(point["names"])
    for key, tolerance in (("realized", 0.1), ("dead_share", 0.002), ("output_change", 0.05)):
        difference = np.abs(point[key][:, :, 0] - sweep[key][:n, :, j])
        assert difference.max() <= tolerance, (key, difference.max())
