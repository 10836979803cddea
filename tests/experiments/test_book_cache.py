"""The committed book results come from the committed code, on any machine: recompute the part each
cache records decisions for, replay those decisions and compare (pathlib_pw.experiments.verify)."""

from __future__ import annotations

import pytest

from pathlib_pw import cache, experiments


@pytest.mark.parametrize("experiment", sorted(experiments.EXPERIMENTS))
def test_committed_book_results_match_the_code(experiment, monkeypatch):
    monkeypatch.delenv(cache.RESULTS_ENV, raising=False)
    result = experiments.verify(experiment, "book")
    print(result.text())
    assert result.arrays and result.replay.checks, "nothing was compared"
    result.assert_ok()
