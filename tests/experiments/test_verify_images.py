"""verify recomputes any image, on any machine (issue 28): a cache records the threshold decisions of
every image's part; verify recomputes image 0 and one drawn by a named seed, or the images asked, or
all of them; a change to a later image's computation fails there; another CPU passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pathlib_pw import decisions, experiments
from pathlib_pw.__main__ import main
from pathlib_pw.experiments import _choose, _ranges, default_seed
from pathlib_pw.runner import cache
from pathlib_pw.runner.inputs import Inputs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    assert every.ok and every.images == (0, 1) and "all 2 image(s)" in every.note


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
    env = cache.other_cpu(**{cache.RESULTS_ENV: str(qualitative_smoke.parent.parent)})
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


@pytest.fixture
def dgr_retries_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    experiments.load_or_run("dgr_retries", "smoke", progress=False)
    return tmp_path / "smoke" / "dgr_retries"


def test_an_experiment_recording_its_first_image_only_recomputes_the_others_afresh(dgr_retries_smoke):
    assert _header(dgr_retries_smoke)["recorded_images"] == [0]
    result = experiments.verify("dgr_retries", "smoke", all_images=True)
    assert result.ok and result.images == (0, 1) and result.free == (1,), result.text()
    assert "image(s) 1 without decision records (dgr_retries records its first image's only" in result.note
    assert result.status == "matches exactly"  # this machine: decisions made afresh come out the same
    assert {c.key.split("|")[1] for c in result.replay.checks} == {"0"}  # image 1 made its decisions afresh
    drawn = experiments.verify("dgr_retries", "smoke", seed=1)
    assert drawn.images == (0, 1) and "drawn with seed 1 from images 1" in drawn.note


def test_an_unrecorded_image_draws_from_every_image(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    directory = tmp_path / "book" / "paths"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"recorded_images": [0]}))
    assert {_choose("paths", "book", None, None, seed, False)[0][1] for seed in range(60)} == set(range(1, 9))
    chosen, note = _choose("paths", "book", None, None, None, True)
    assert chosen == list(range(9)) and "image(s) 1-8 without decision records" in note
    with pytest.raises(ValueError, match=r"images must name images in the cache \(0-8 of 9\), got \[9\]"):
        _choose("paths", "book", None, [9], None, False)


def test_a_changed_computation_of_an_unrecorded_image_fails_there(dgr_retries_smoke, monkeypatch):
    load = Inputs.load_images

    def image_1_flipped(self):
        x, names = load(self)
        return (x.flip(-1) if self.offset == 1 else x), names

    monkeypatch.setattr(Inputs, "load_images", image_1_flipped)
    result = experiments.verify("dgr_retries", "smoke", all_images=True)
    assert not result.ok
    failed = {a.name for a in result.arrays if a.problem}
    assert failed and all(name.endswith("(image 1)") for name in failed), failed


def test_an_unrecorded_image_verifies_on_another_cpu(dgr_retries_smoke):
    env = cache.other_cpu(**{cache.RESULTS_ENV: str(dgr_retries_smoke.parent.parent)})
    code = "from pathlib_pw import experiments; r = experiments.verify('dgr_retries', 'smoke', images=[1]); print(r.text()); assert r.ok"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_experiment_recording_its_first_image_only_must_say_how_the_others_compare():
    import types

    from pathlib_pw.runner.contract import parts

    module = types.ModuleType("first_only")
    module.config, module.run, module.PER_IMAGE, module.RECORD_EVERY_IMAGE = (lambda p: None), (lambda c: {}), set(), False
    with pytest.raises(TypeError, match="RECORD_EVERY_IMAGE = False.*unrecorded_tolerances"):
        parts("first_only", module)


def test_verify_takes_one_way_of_naming_images(qualitative_smoke):
    with pytest.raises(ValueError, match="give at most one of n_images, images and all_images, got n_images and images"):
        experiments.verify("qualitative", "smoke", 1, images=[0])
    with pytest.raises(ValueError, match="got images and all_images"):
        experiments.verify("qualitative", "smoke", images=[0], all_images=True)


def test_the_status_names_the_images_recomputed_without_records():
    from pathlib_pw.decisions import ReplayReport
    from pathlib_pw.runner.verification import FLOATS, ArrayCheck, Verification

    within = Verification("x", "smoke", [ArrayCheck("a", 4, 1e-7, 1, 0, FLOATS)], ReplayReport(), images=(0, 3), free=(3,))
    assert within.status == (
        "matches within floating-point tolerance (0 threshold neurons flipped; image(s) 3 without records: within the "
        "looser allowances)"
    )
    assert Verification.joined([within, within]).free == (3, 3)


def test_unrecorded_allowances_are_greedys_and_pathwaygrads_where_they_drift():
    """Greedy's path and PathwayGrad's maps drift when decided afresh (measured): their elements get
    the wide allowance, every other criterion or method the tight one."""
    import numpy as np

    from pathlib_pw.experiments import lerf, paths

    config = experiments.get_config("paths", "book")
    labels = [c.label for c in config.criteria]
    n = len(labels)
    cached = {"output_change": np.zeros((1, n, 3)), "jaccard": np.zeros((1, 2, n, n)), "kept_site": np.zeros((1, n, 2, 5))}
    allowed = paths.unrecorded_tolerances(cached, config)
    greedy, mct = labels.index("Greedy"), labels.index("NeuronMCT")
    assert allowed["output_change"][0, greedy].tolist() == [paths.UNRECORDED["output_change"][1]] * 3
    assert allowed["output_change"][0, mct].tolist() == [paths.UNRECORDED["output_change"][0]] * 3
    assert allowed["jaccard"][0, 1, mct, greedy] == allowed["jaccard"][0, 1, greedy, mct] == paths.UNRECORDED["jaccard"][1]
    assert allowed["jaccard"][0, 1, mct, mct] == paths.UNRECORDED["jaccard"][0]
    assert allowed["kept_site"].shape == (1, n, 2, 5) and allowed["kept_site"][0, greedy].min() == paths.UNRECORDED["kept_site"][1]

    lconfig = experiments.get_config("lerf", "book")
    m = len(lconfig.methods)
    lcached = {"curves": np.zeros((1, m, 2, 6, 10)), "tie_spread": np.zeros((1, m, 2, 6)), "tie_share": np.zeros((1, m, 2, 6))}
    lallowed = lerf.unrecorded_tolerances(lcached, lconfig)
    for i, method in enumerate(lconfig.methods):
        own = method.startswith("pathway_grad/")
        assert lallowed["curves"][0, i].max() == lerf.UNRECORDED["curves"][1 if own else 0], method
