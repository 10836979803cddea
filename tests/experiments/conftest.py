"""Fixtures shared by the experiment tests: a temporary results root, and a counter of experiment runs."""

from __future__ import annotations

import pytest

from pathlib_pw import experiments
from pathlib_pw.runner import cache


@pytest.fixture
def smoke_root(tmp_path, monkeypatch):
    """Results go to a temporary folder (``$PATHLIB_PW_RESULTS``), never to the committed caches."""
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture
def maps_runs(monkeypatch) -> list:
    """The configurations ``maps_vs_sparsity.run`` is called with, in order (it still computes)."""
    calls: list = []
    real_run = experiments.maps_vs_sparsity.run

    def counting_run(config, device="cpu", progress=True):
        calls.append(config)
        return real_run(config, device=device, progress=progress)

    monkeypatch.setattr(experiments.maps_vs_sparsity, "run", counting_run)
    return calls
