"""The committed book results come from the committed code, on any machine: recompute the first image
of each cache and one drawn by the day's seed (named in the report), replay their recorded decisions
(an image without records makes them afresh) and compare (pathlib_pw.experiments.verify). Over the
days every image is recomputed."""

from __future__ import annotations

import pytest

from pathlib_pw import experiments
from pathlib_pw.runner import cache
from pathlib_pw.runner.contract import unit_count


@pytest.mark.parametrize("experiment", sorted(experiments.EXPERIMENTS))
def test_committed_book_results_match_the_code(experiment, monkeypatch):
    monkeypatch.delenv(cache.RESULTS_ENV, raising=False)
    result = experiments.verify(experiment, "book")
    print(result.text())
    assert result.arrays and result.replay.checks, "nothing was compared"
    if unit_count(experiments.get_config(experiment, "book")) > 1:
        assert len(result.images) == 2 and "drawn with seed" in result.note
    result.assert_ok()
