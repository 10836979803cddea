"""The pathway-decoding experiment: configuration checks, top neurons, what verify recomputes, and a
check tolerance that passes float rounding and fails code changes."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pathlib_pw import Pathway, experiments, extract_pathway, load_model, load_photos
from pathlib_pw import decoding as dec
from pathlib_pw.criteria.mct import neuron_mct_scores
from pathlib_pw.data import IMAGENET_VAL_ENV, load_images
from pathlib_pw.experiments import decoding
from pathlib_pw.experiments.decoding import ACTIVE, ORIGINAL, Config, decoding_criteria
from pathlib_pw.runner import cache
from pathlib_pw.runner.inputs import Inputs
from pathlib_pw.runner.verification import compare_all

SMALL = Config(
    inputs=Inputs(images=("chelsea",), size=64),
    sparsities=(90.0, 98.0),
    paths=(ORIGINAL, ACTIVE, "NeuronMCT", "Greedy (original code)"),
    criteria=decoding_criteria(dgr_iterations=5, dgr_retries=1, greedy_rounds=3),
    seeds=(0, 1),
    param_size=16,
    steps=8,
    top_paths=("NeuronMCT", "Greedy (original code)"),
    top_steps=2,
    check_steps=4,
)


@pytest.fixture(scope="module")
def small_run():
    return decoding.run(SMALL, progress=False)


def test_registered_with_the_contract():
    assert experiments.EXPERIMENTS["decoding"] is decoding
    for profile in experiments.PROFILES:
        cfg = experiments.get_config("decoding", profile)
        assert cfg.seeds[0] == 0 and cfg.check_path == "NeuronMCT"
    book = experiments.get_config("decoding", "book")
    # the caption's setting: 512 steps of Adam at lr 0.05 on a 128 px pixel image, the authors' paths
    assert (book.steps, book.lr, book.param_size, book.top_steps) == (512, 0.05, 128, 512)
    assert set(decoding.PAPER_PATHS) <= set(book.paths) and 98.0 in book.sparsities and len(book.seeds) >= 3


def test_bad_configurations_are_clear_errors():
    with pytest.raises(ValueError, match=r"paths: unknown path name\(s\) \['NeuronMTC'\]"):
        dataclasses.replace(SMALL, paths=(ORIGINAL, "NeuronMTC"))
    with pytest.raises(ValueError, match="top_paths: unknown"):
        dataclasses.replace(SMALL, top_paths=("Random",))
    with pytest.raises(ValueError, match="chaotic"):
        Config(check_path="DGR(init=1)")
    with pytest.raises(ValueError, match="check_path must be a criterion among paths"):
        dataclasses.replace(SMALL, check_path="NeuronIntGrad")
    with pytest.raises(ValueError, match="seeds must include 0"):
        dataclasses.replace(SMALL, seeds=(1, 2))
    with pytest.raises(ValueError, match="one image"):
        decoding.run(dataclasses.replace(SMALL, inputs=Inputs(images=("chelsea", "coffee"), size=64)), progress=False)


def test_run_renders_each_path_once_and_measures_it(small_run):
    r = small_run
    labels = [str(p) for p in r["paths"]]
    assert r["images"].shape == (2, 4, 2, 16, 16, 3) and r["images"].dtype == np.float16
    # the same path at both sparsities is rendered once: the original network, the active subnet, the authors' Greedy loop
    for label in (ORIGINAL, ACTIVE, "Greedy (original code)"):
        p = labels.index(label)
        assert np.array_equal(r["images"][0, p], r["images"][1, p])
    mct = labels.index("NeuronMCT")
    assert not np.array_equal(r["images"][0, mct], r["images"][1, mct])
    # through the original network the own logit is the full network's
    o = labels.index(ORIGINAL)
    np.testing.assert_allclose(r["logit_own"][:, o], r["logit_full"][:, o], rtol=1e-5)
    assert r["realized"][0, o] == 0 and r["realized"][0, mct] >= 89.9
    np.testing.assert_allclose(np.diagonal(r["cosine"], axis1=1, axis2=2), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.diagonal(r["ssim"], axis1=1, axis2=2), 1.0, atol=1e-6)
    assert ((r["prob_full"] >= 0) & (r["prob_full"] <= 1)).all()
    # the check image is the first steps of the seed-0 render of the check path
    model = load_model("mobilenet_v2")
    x, _ = load_photos(["chelsea"], size=64)
    path = extract_pathway(model, x, "neuron_mct", 90.0)
    direct = dec.render(
        model,
        dec.logit(int(r["target"])),
        path,
        input_size=64,
        parameterization=dec.Parameterization(size=16),
        steps=4,
        progress=False,
    )
    assert np.array_equal(direct[0], r["check_image"])
    # top neurons: one render per distinct channel, on the unmasked network with lucent's defaults
    assert list(r["top_paths"]) == list(SMALL.top_paths)
    assert set(r["top_channel"][r["top_channel"] >= 0]) == set(r["top_channels"])
    assert r["top_images"].shape == (len(r["top_channels"]), 128, 128, 3)
    assert all(site == "features.18.2" for site in r["top_site"])


def test_verify_recomputes_exactly_the_part_cached_part_takes(small_run):
    part = decoding.verify_subset(SMALL, 1)
    fresh = decoding.run(part, progress=False)
    expected = decoding.cached_part(small_run, part)
    assert set(fresh) == set(expected) == set(decoding.CHECK_KEYS)
    for key in fresh:
        assert np.array_equal(fresh[key], expected[key]), key


def _run_without_simd(config: Config, tmp_path) -> dict[str, np.ndarray]:
    """``decoding.run(config)`` on a simulated machine without SIMD (torch, oneDNN and MKL told to use
    less of this CPU), in a subprocess."""
    (tmp_path / "config.pkl").write_bytes(pickle.dumps(config))
    code = (
        "import pickle, sys, numpy as np; from pathlib_pw.experiments import decoding; "
        "config = pickle.load(open(sys.argv[1], 'rb')); np.savez(sys.argv[2], **decoding.run(config, progress=False))"
    )
    env = cache.other_cpu()
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "config.pkl"), str(tmp_path / "out.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out.npz") as data:
        return {k: data[k] for k in data.files}


def test_the_check_tolerance_passes_rounding_and_fails_code_changes(tmp_path):
    """Another machine's rounding (no SIMD) passes; 1 % more learning rate or another path fails, by far."""
    part = decoding.verify_subset(dataclasses.replace(SMALL, check_steps=8), 1)
    reference = decoding.run(part, progress=False)

    def compared(fresh):
        return {c.name: c for c in compare_all(fresh, reference, decoding.TOLERANCES, {})}

    rounding = compared(_run_without_simd(part, tmp_path))
    assert all(not c.problem for c in rounding.values()), [c.problem for c in rounding.values()]
    # measured: 1.6e-6 on an AMD EPYC, 1.4e-5 on an Intel Xeon (no SIMD against AVX-512)
    assert rounding["check_image"].largest < decoding.CHECK_IMAGE.atol / 4
    for changed in (dataclasses.replace(part, lr=0.0505), dataclasses.replace(part, check_path=ACTIVE)):
        result = compared(decoding.run(changed, progress=False))
        assert result["check_image"].problem, changed
        assert result["check_image"].largest > 10 * decoding.CHECK_IMAGE.atol


def _library_state() -> dict[str, dict[str, object]]:
    """Every attribute of the library modules a criterion call goes through, by identity."""
    from pathlib_pw import criteria, decisions, sites, thresholds

    return {m.__name__: dict(vars(m)) for m in (decisions, thresholds, criteria, sites)}


def _changed(before: dict[str, dict[str, object]], now: dict[str, dict[str, object]]) -> list[str]:
    return [
        f"{module}.{name}"
        for module in before
        for name in before[module].keys() | now[module].keys()
        if before[module].get(name, _library_state) is not now[module].get(name, _library_state)
    ]


def test_the_top_neuron_scores_are_the_criterions_and_no_library_attribute_is_replaced():
    """The scores come back from the criterion (return_scores): nothing of pathlib_pw.decisions (the
    checkpoint every threshold decision calls) or the modules around it is swapped, before, during
    the criterion's own forward passes, or after."""
    model = load_model("mobilenet_v2")
    x, _ = load_photos(["chelsea"], size=64)
    before = _library_state()
    during: list[list[str]] = []
    handle = model.register_forward_hook(lambda *_: during.append(_changed(before, _library_state())))
    try:
        found, scores = decoding._paths(model, x, SMALL, ("NeuronMCT", "Greedy (original code)"), set(SMALL.top_paths))
    finally:
        handle.remove()
    assert during and all(c == [] for c in during), during
    assert _changed(before, _library_state()) == []
    expected, _, _, _ = neuron_mct_scores(model, x)
    assert len(scores["NeuronMCT"]) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(scores["NeuronMCT"], expected))
    greedy = found["Greedy (original code)"][0]
    assert all(torch.equal(a, b) for a, b in zip(scores["Greedy (original code)"], dec.greedy_scores(model, x, greedy)))


def test_the_experiment_module_assigns_no_attribute_of_another_module():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(decoding))
    assigned = [
        ast.unparse(target)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        for t in ast.walk(target)
        if isinstance(t, ast.Attribute)
    ]
    assert assigned == []


def test_the_analysis_helpers_are_the_librarys():
    # moved to pathlib_pw.decoding (tests/test_decoding.py); still importable from the experiment
    for name in ("greedy_scores", "top_neuron", "penultimate"):
        assert getattr(decoding, name) is getattr(dec, name), name


def test_greedy_scores_are_zero_through_a_cut_path():
    model = load_model("mobilenet_v2")
    x, _ = load_photos(["chelsea"], size=64)
    path = extract_pathway(model, x, "neuron_mct", 50.0)
    cut = Pathway.from_masks(path.masks[:-1] + [torch.zeros_like(path.masks[-1])], path.sites, target=path.info["target"])
    assert all(float(s.sum()) == 0 for s in dec.greedy_scores(model, x, cut))
    assert float(sum(s.sum() for s in dec.greedy_scores(model, x, path))) > 0


def test_named_imagenet_val_images(tmp_path, monkeypatch):
    (tmp_path / "n1").mkdir()
    (tmp_path / "n2").mkdir()
    for name in ("n1/ILSVRC2012_val_00048339.JPEG", "n1/ILSVRC2012_val_00048265.JPEG", "n2/ILSVRC2012_val_00000002.JPEG"):
        Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / name, format="JPEG")
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "n2" / "copy_val_00048265.JPEG", format="JPEG")
    monkeypatch.setenv(IMAGENET_VAL_ENV, str(tmp_path))
    x, names = load_images("imagenet_val_named", ("val_00048339",), size=32)
    assert names == ["n1/ILSVRC2012_val_00048339.JPEG"] and x.shape == (1, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="0 files"):
        load_images("imagenet_val_named", ("val_00000001",), size=32)
    with pytest.raises(FileNotFoundError, match="2 files"):
        load_images("imagenet_val_named", ("val_00048265",), size=32)


def test_cached_with_the_check_paths_decisions_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    monkeypatch.setattr(decoding, "config", lambda profile: SMALL)
    results = experiments.load_or_run("decoding", "smoke", progress=False)
    assert results.meta["self_check"] == "matches exactly"
    directory = tmp_path / "smoke" / "decoding"
    # only the check path's decisions are kept: NeuronMCT at both sparsities
    assert sorted(cache.load_decisions(directory).records) == ["NeuronMCT|0|0", "NeuronMCT|0|1"]
    result = experiments.verify("decoding", "smoke")
    assert result.ok and [a.name for a in result.arrays] == sorted(decoding.CHECK_KEYS), result.text()
    # a cache whose check image is not what the code renders is caught
    arrays = dict(results.arrays)
    arrays["check_image"] = arrays["check_image"] + np.float32(1e-3)
    cache.save(directory, "decoding", SMALL, arrays, results.meta, cache.load_decisions(directory))
    result = experiments.verify("decoding", "smoke")
    assert result.status == "DIFFERS" and [a.name for a in result.arrays if a.problem] == ["check_image"]
