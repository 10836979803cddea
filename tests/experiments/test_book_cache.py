"""The committed book results come from the committed code: recompute the first image and compare."""

from __future__ import annotations

import pytest

from pathlib_pw import cache, experiments


@pytest.mark.parametrize("experiment", sorted(experiments.EXPERIMENTS))
def test_committed_book_results_match_the_code(experiment, monkeypatch):
    monkeypatch.delenv(cache.RESULTS_ENV, raising=False)
    report = experiments.verify(experiment, "book", n_images=1)
    assert report, "nothing was compared"
