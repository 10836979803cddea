"""The results check holds on any machine and fails when the code computes something else.

Rules of the comparison against literal expectations; then, on small cached results, the check
rejects a criterion's sparsity shifted by 1 %, NeuronIntGrad with other alphas and one image's maps
swapped, and accepts recomputations with another thread count, another batch split and (in a
subprocess) other SIMD instruction sets, where floats do differ."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pathlib_pw import experiments, selection
from pathlib_pw.experiments import maps_vs_sparsity
from pathlib_pw.runner import cache
from pathlib_pw.runner.verification import EXACT, FLOATS, MAPS, Tolerance, compare

ROOT = Path(__file__).resolve().parents[2]


def test_exact_kinds_must_agree_exactly():
    assert compare("p", np.array([1, 2]), np.array([1, 2]), FLOATS).status == "exact"
    check = compare("p", np.array([1, 3]), np.array([1, 2]), FLOATS)
    assert check.status == "DIFFERS" and check.differing == 1 and check.tolerance is EXACT
    assert compare("n", np.array(["a"]), np.array(["b"]), FLOATS).status == "DIFFERS"


def test_floats_within_and_beyond_the_tolerance():
    cached = np.array([1.0, 0.5, np.nan], dtype=np.float32)
    assert compare("x", cached, cached, FLOATS).status == "exact"
    near = compare("x", cached * (1 + 5e-5), cached, FLOATS)
    assert near.status == "within tolerance" and near.outside == 0 and near.differing == 2
    far = compare("x", cached + 1e-3, cached, FLOATS)
    assert far.status == "DIFFERS" and far.outside == 2 and far.largest == pytest.approx(1e-3, rel=1e-3)
    nan = compare("x", np.array([1.0, 0.5, 0.0]), cached, FLOATS)
    assert nan.status == "DIFFERS" and "NaN on one side" in nan.problem
    assert compare("x", cached[:2], cached, FLOATS).status == "DIFFERS"
    elementwise = compare("x", cached + np.array([0.0, 0.2, 0.0]), cached, FLOATS, extra=np.array([0.0, 0.3, 0.0]))
    assert elementwise.status == "within tolerance"


def test_maps_may_move_in_a_small_share_of_pixels_by_a_bounded_amount():
    cached = np.zeros((2, 10, 10), dtype=np.float32)
    moved = cached.copy()
    moved[0, 0, :5] = 0.2  # 5 % of one map's pixels, at the limit
    assert compare("maps", moved, cached, MAPS).status == "within tolerance"
    moved[0, 0, :6] = 0.2  # 6 % of that map
    assert "maps have more than 5 pixels" in compare("maps", moved, cached, MAPS).problem
    moved = cached.copy()
    moved[0, 0, 0] = 0.7  # one pixel, beyond the limit
    assert "largest difference" in compare("maps", moved, cached, MAPS).problem
    spread = cached.copy()
    spread[:, 0, :5] = 0.2  # 5 % in each map: allowed per map
    assert compare("maps", spread, cached, MAPS).status == "within tolerance"
    assert compare("maps", spread, cached, Tolerance(share=0.01, limit=1.0)).status == "DIFFERS"


# ---- sensitive: something else computed is caught ----

def test_a_criterion_sparsity_shifted_by_one_percent_is_caught(smoke_root, monkeypatch):
    experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    mct = sys.modules["pathlib_pw.criteria.mct"]
    real = mct.threshold_pathway
    monkeypatch.setattr(mct, "threshold_pathway", lambda scores, p, *a, **k: real(scores, p + 1.0, *a, **k))
    result = experiments.verify("maps_vs_sparsity", "smoke")
    assert result.status == "DIFFERS"
    problems = result.replay.problems()
    assert problems and all(p.startswith("NeuronMCT|0|") for p in problems)
    assert "more neurons than rounding can explain" in problems[0] and result.replay.changed >= 0


def test_neuron_intgrad_with_other_alphas_is_caught(smoke_root, monkeypatch):
    experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    intgrad = sys.modules["pathlib_pw.criteria.intgrad"]
    monkeypatch.setattr(intgrad, "intended_alphas", lambda steps=10: (torch.arange(steps + 1, dtype=torch.float64) + 0.5) / (steps + 1))
    result = experiments.verify("maps_vs_sparsity", "smoke")
    assert result.status == "DIFFERS"
    assert any(p.startswith("NeuronIntGrad|0|") for p in result.replay.problems())


def test_one_image_maps_swapped_are_caught(smoke_root):
    experiments.load_or_run("qualitative", "smoke", progress=False)
    directory = smoke_root / "smoke" / "qualitative"
    results = cache.load(directory)
    arrays = dict(results.arrays)
    arrays["maps"] = arrays["maps"][[1, 0]]
    cache.save(directory, "qualitative", experiments.get_config("qualitative", "smoke"), arrays, results.meta,
               cache.load_decisions(directory))
    result = experiments.verify("qualitative", "smoke")
    assert result.status == "DIFFERS" and result.replay.ok
    # both images are recomputed now (image 0 and the drawn one): both swapped maps are found
    assert [a.name for a in result.arrays if a.problem] == ["maps (image 0)", "maps (image 1)"]


# ---- robust: rounding differences pass ----

def test_another_thread_count_passes(smoke_root):
    with selection.threads(2):
        experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    with selection.threads(1):
        result = experiments.verify("maps_vs_sparsity", "smoke")
    assert result.ok, result.text()


def test_another_batch_split_passes(smoke_root, monkeypatch):
    """Cached with two images in one batch, verified with the first alone: float sums differ."""
    smoke = maps_vs_sparsity.config("smoke")
    two = dataclasses.replace(smoke, inputs=dataclasses.replace(smoke.inputs, images=("chelsea", "coffee")))
    monkeypatch.setattr(maps_vs_sparsity, "config", lambda profile: two)
    experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    result = experiments.verify("maps_vs_sparsity", "smoke")
    assert result.ok, result.text()
    assert result.status != "matches exactly"  # the batch split did change floats
    assert len(result.replay.checks) == 8  # two images, each alone; two criteria, two sparsities


def test_other_simd_instruction_sets_pass(smoke_root):
    """A machine without AVX-512 (or without any SIMD), simulated: torch, oneDNN and MKL told to use
    less of this CPU. The cache was computed with everything this CPU has."""
    experiments.load_or_run("qualitative", "smoke", progress=False)
    env = cache.other_cpu(**{cache.RESULTS_ENV: str(smoke_root)})
    done = subprocess.run([sys.executable, "-m", "pathlib_pw", "verify", "qualitative", "--profile", "smoke"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "qualitative/smoke: matches within floating-point tolerance" in done.stdout, done.stdout
