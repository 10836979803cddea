"""verify covers every stored number (issue 28): a changed value of an image verify does not recompute,
or a changed stored setting, fails before anything is recomputed, naming the array and image or the key."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pathlib_pw import experiments
from pathlib_pw.__main__ import main
from pathlib_pw.runner import cache


@pytest.fixture
def qualitative_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    experiments.load_or_run("qualitative", "smoke", progress=False)
    directory = tmp_path / "smoke" / "qualitative"
    assert experiments.verify("qualitative", "smoke").ok  # intact: matches
    return directory


def _rewrite_arrays(directory, change):
    arrays = dict(np.load(directory / "arrays.npz"))
    change(arrays)
    np.savez_compressed(directory / "arrays.npz", **arrays)


def test_a_doubled_value_of_the_last_image_fails_naming_the_array_and_image(qualitative_smoke, capsys):
    last = len(np.load(qualitative_smoke / "arrays.npz")["names"]) - 1
    assert last >= 1, "the last image must be one verify does not recompute"

    def double(arrays):
        arrays["maps"][last].flat[0] *= 2

    _rewrite_arrays(qualitative_smoke, double)
    with pytest.raises(AssertionError, match=rf"array 'maps' differs from its recorded digest, first at row {last}"):
        experiments.verify("qualitative", "smoke")
    assert main(["verify", "qualitative", "--profile", "smoke", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "qualitative/smoke: DIFFERS from what was computed: " in out and f"row {last}" in out
    assert "matches" not in out


def test_a_changed_stored_setting_fails_naming_the_key(qualitative_smoke, capsys):
    header = json.loads((qualitative_smoke / "config.json").read_text())
    header["config"]["inputs"]["size"] += 1
    (qualitative_smoke / "config.json").write_text(json.dumps(header, indent=2, sort_keys=True))
    with pytest.raises(AssertionError, match=r"inputs\.size"):
        experiments.verify("qualitative", "smoke")
    assert main(["verify", "qualitative", "--profile", "smoke", "--quiet"]) == 1
    assert "matches" not in capsys.readouterr().out


def test_committed_book_caches_carry_digests_of_every_array():
    for name in sorted(experiments.EXPERIMENTS):
        directory = cache.results_root() / "book" / name
        header = json.loads((directory / "config.json").read_text())
        arrays = np.load(directory / "arrays.npz").files
        assert sorted(header["digests"]["arrays"]) == sorted(arrays), name
        assert cache.check(directory, name, experiments.get_config(name, "book")) == [], name
