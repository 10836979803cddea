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


def test_missing_inputs_are_listed_at_once_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.delenv("PATHLIB_PW_IMAGENET_VAL", raising=False)
    monkeypatch.delenv("PATHLIB_PW_CIFAR10", raising=False)
    assert main(["run", "all", "--profile", "paper"]) == 2
    err = capsys.readouterr().err
    entries = err.split("\n- ")[1:]  # one entry per missing input, each listed once
    assert len(entries) == 4
    for needed in ("vgg16-397923af.pth", "resnet50-0676ba61.pth", "--imagenet-val DIR", "--cifar10 DIR"):
        assert sum(needed in entry for entry in entries) == 1, needed
    assert not (tmp_path / "results").exists(), "work started before the inputs were checked"
    # a folder named on the command line counts (it is only looked at, not read)
    (tmp_path / "cifar").mkdir()
    assert main(["run", "roar", "--profile", "paper", "--cifar10", str(tmp_path / "cifar")]) == 2
    assert "CIFAR-10" in capsys.readouterr().err  # an empty folder is still reported, with the reason
