"""``python -m pathlib_pw run|verify``: compute a small profile into a scratch results folder, then verify it."""

from __future__ import annotations

import json

import pytest

from pathlib_pw import cache
from pathlib_pw.__main__ import main


def test_run_then_verify_smoke_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    assert main(["run", "qualitative", "--profile", "smoke"]) == 0
    header = json.loads((tmp_path / "smoke" / "qualitative" / "config.json").read_text())
    assert header["config"]["inputs"]["images"] == ["chelsea", "coffee"] and header["profile"] == "smoke"
    assert main(["verify", "qualitative", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "qualitative/smoke: matches exactly" in out and "threshold decisions replayed: 4" in out
    # --images computes a variation for the caller and never overwrites the profile's cache
    before = (tmp_path / "smoke" / "qualitative" / "arrays.npz").stat().st_mtime_ns
    assert main(["run", "qualitative", "--profile", "smoke", "--images", "1", "--force"]) == 0
    assert (tmp_path / "smoke" / "qualitative" / "arrays.npz").stat().st_mtime_ns == before


def test_unknown_experiment_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["run", "no_such_experiment"])
    assert "invalid choice" in capsys.readouterr().err
