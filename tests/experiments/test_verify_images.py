"""verify recomputes any image, on any machine (issue 28): a cache records the threshold decisions of
every image's part; verify recomputes image 0 and one drawn by a named seed, or the images asked, or
all of them; a change to a later image's computation fails there; another CPU passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pathlib_pw import cache, decisions, experiments
from pathlib_pw.__main__ import main
from pathlib_pw.experiments import _choose, _ranges, default_seed
from pathlib_pw.experiments.inputs import Inputs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OTHER_CPU = cache.INSTRUCTION_LIMITS["DEFAULT"]


@pytest.fixture
def qualitative_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    experiments.load_or_run("qualitative", "smoke", progress=False)
    return tmp_path / "smoke" / "qualitative"


def _header(directory):
    return json.loads((directory / "config.json").read_text())


def test_a_new_cache_records_the_decisions_of_every_image(qualitative_smoke):
    assert _header(qualitative_smoke)["recorded_images"] == [0, 1]
    log = cache.load_decisions(qualitative_smoke)
    assert {key.split("|")[1] for key in log.records} == {"0", "1"}


def test_verify_recomputes_image_0_and_a_drawn_image_it_names(qualitative_smoke):
    result = experiments.verify("qualitative", "smoke", seed=5)
    assert result.ok and result.images == (0, 1)
    assert "seed 5" in result.note and "--seed 5" in result.text()
    assert {a.name for a in result.arrays} >= {"maps (image 0)", "maps (image 1)"}
    assert {c.key.split("|")[1] for c in result.replay.checks} == {"0", "1"}
    every = experiments.verify("qualitative", "smoke", all_images=True)
    assert every.ok and every.images == (0, 1) and "all 2 recorded" in every.note


def test_the_drawn_image_rotates_with_the_seed_and_covers_every_image(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    directory = tmp_path / "book" / "paths"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"recorded_images": list(range(9))}))
    drawn = {_choose("paths", "book", None, None, seed, False)[0][1] for seed in range(60)}
    assert drawn == set(range(1, 9))  # 60 days draw every image but the first, which is always checked
    chosen, note = _choose("paths", "book", None, None, 11, False)
    assert chosen[0] == 0 and f"image {chosen[1]}, drawn with seed 11 from images 1-8" in note
    assert default_seed() == default_seed() > 700_000  # the day's ordinal


def test_ranges():
    assert _ranges([0, 1, 2, 3, 5, 7, 8]) == "0-3, 5, 7-8"
    assert _ranges([4]) == "4"


def test_a_changed_computation_of_image_1_fails_there_only(qualitative_smoke, monkeypatch):
    load = Inputs.load_images

    def image_1_flipped(self):
        x, names = load(self)
        if self.offset == 1:  # the code now computes something else for the second image only
            x = x.flip(-1)
        return x, names

    monkeypatch.setattr(Inputs, "load_images", image_1_flipped)
    assert experiments.verify("qualitative", "smoke", images=[0]).ok
    result = experiments.verify("qualitative", "smoke", all_images=True)
    assert not result.ok
    failed = {a.name for a in result.arrays if a.problem}
    assert failed and all(name.endswith("(image 1)") for name in failed), failed
    assert "image 1" in result.text()


def test_image_1_verifies_on_another_cpu(qualitative_smoke):
    """A build without SIMD on one thread: other float sums, so other decisions near the cut, which
    the records of image 1 absorb."""
    env = {**os.environ, **OTHER_CPU, "OMP_NUM_THREADS": "1", cache.RESULTS_ENV: str(qualitative_smoke.parent.parent)}
    code = "from pathlib_pw import experiments; r = experiments.verify('qualitative', 'smoke', images=[1]); print(r.text()); assert r.ok"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "qualitative/smoke: matches" in out.stdout


def test_a_cache_without_later_records_gets_them_added(qualitative_smoke, capsys):
    # what a cache computed before every image was recorded holds: the records of image 0 only
    log = cache.load_decisions(qualitative_smoke)
    first = decisions.DecisionLog({k: r for k, r in log.records.items() if k.split("|")[1] == "0"})
    cache.add_records(qualitative_smoke, first, recorded_images=[0])
    arrays_before = (qualitative_smoke / "arrays.npz").read_bytes()
    assert experiments.verify("qualitative", "smoke").images == (0,)
    with pytest.raises(ValueError, match=r"no decisions for image\(s\) 1 of 2.*scripts/record_images\.py qualitative"):
        experiments.verify("qualitative", "smoke", all_images=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", "qualitative", "--profile", "smoke", "--all", "--quiet"])
    assert exit_info.value.code == 2 and "--all: the cache records no decisions for image(s) 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"images must name images whose decisions the cache records \(0 of 2\), got \[1\]"):
        experiments.verify("qualitative", "smoke", images=[1])

    assert experiments.record_images("qualitative", "smoke", progress=False) == [1]
    assert (qualitative_smoke / "arrays.npz").read_bytes() == arrays_before
    assert cache.check(qualitative_smoke, "qualitative", experiments.get_config("qualitative", "smoke")) == []
    assert _header(qualitative_smoke)["recorded_images"] == [0, 1]
    assert experiments.verify("qualitative", "smoke", all_images=True).ok
    assert experiments.record_images("qualitative", "smoke", progress=False) == []


def test_records_are_refused_when_the_recomputation_does_not_reproduce_the_cache(qualitative_smoke, monkeypatch):
    cache.add_records(qualitative_smoke, cache.load_decisions(qualitative_smoke), recorded_images=[0])
    load = Inputs.load_images
    monkeypatch.setattr(Inputs, "load_images", lambda self: (load(self)[0] * 0.5, load(self)[1]))
    with pytest.raises(RuntimeError, match="image 1 not recorded: its recomputation does not reproduce the result"):
        experiments.record_images("qualitative", "smoke", progress=False)
    assert _header(qualitative_smoke)["recorded_images"] == [0]


def test_verify_cli_names_its_choice_and_refuses_images_without_records(qualitative_smoke, capsys):
    assert main(["verify", "qualitative", "--profile", "smoke", "--seed", "3", "--quiet"]) == 0
    assert "drawn with seed 3" in capsys.readouterr().out
    assert main(["verify", "qualitative", "--profile", "smoke", "--image", "1", "--quiet"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", "qualitative", "--profile", "smoke", "--image", "5", "--quiet"])
    assert exit_info.value.code == 2
    assert "--image must name images whose decisions the cache records (0-1 of 2), got [5]" in capsys.readouterr().err


def test_an_experiment_recording_its_first_image_only_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    experiments.load_or_run("dgr_retries", "smoke", progress=False)
    assert _header(tmp_path / "smoke" / "dgr_retries")["recorded_images"] == [0]
    result = experiments.verify("dgr_retries", "smoke", all_images=True)
    assert result.ok and result.images == (0,)
    assert "image(s) 1 are checked by their digests only: dgr_retries records the decisions of its first image only" in result.note
    assert "image 0, the only one with records (2 in the cache)" in experiments.verify("dgr_retries", "smoke").note
