"""The results cache: atomic writes, configuration keys, verification of cached numbers."""

from __future__ import annotations

import dataclasses
import errno
import json
from pathlib import Path

import numpy as np
import pytest

from pathlib_pw import experiments
from pathlib_pw.runner import cache
from pathlib_pw.runner.contract import first_images


@dataclasses.dataclass(frozen=True)
class Toy:
    images: tuple[str, ...] = ("a", "b", "c")
    scale: float = 2.0


def test_config_hash_depends_on_every_field_and_experiment():
    base = cache.config_hash("toy", Toy())
    assert base == cache.config_hash("toy", Toy())
    assert base != cache.config_hash("toy", Toy(scale=3.0))
    assert base != cache.config_hash("toy", Toy(images=("a", "b")))
    assert base != cache.config_hash("other", Toy())


def test_save_writes_config_and_arrays_and_replaces_atomically(tmp_path):
    directory = tmp_path / "book" / "toy"
    first = cache.save(directory, "toy", Toy(), {"x": np.arange(3.0)}, {"device": "cpu"})
    assert np.array_equal(first["x"], np.arange(3.0))
    header = json.loads((directory / "config.json").read_text())
    assert header["config"] == {"images": ["a", "b", "c"], "scale": 2.0}
    assert header["config_hash"] == cache.config_hash("toy", Toy())
    assert {"torch", "torchvision", "pathlib_pw"} <= set(header["versions"])
    cache.save(directory, "toy", Toy(scale=5.0), {"x": np.ones(2)}, {})
    assert np.array_equal(cache.load(directory)["x"], np.ones(2))
    assert sorted(p.name for p in directory.parent.iterdir()) == ["toy"]


def test_save_failing_at_its_last_write_keeps_the_old_result_and_names_the_folder(tmp_path, monkeypatch):
    directory = tmp_path / "toy"
    cache.save(directory, "toy", Toy(), {"x": np.arange(3.0)}, {})
    real_write_text = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name == "config.json":  # written last, after the arrays
            assert (self.parent / "arrays.npz").exists()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(cache.CacheWriteError) as raised:
        cache.save(directory, "toy", Toy(scale=5.0), {"x": np.ones(2)}, {})
    monkeypatch.undo()
    message = str(raised.value)
    assert isinstance(raised.value, OSError) and raised.value.errno == errno.ENOSPC
    assert "\n" not in message and str(directory) in message and "No space left on device" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]
    assert np.array_equal(cache.load(directory)["x"], np.arange(3.0))
    assert cache.is_current(directory, "toy", Toy()) and not cache.is_current(directory, "toy", Toy(scale=5.0))


def test_is_current_needs_the_arrays_too(tmp_path):
    directory = tmp_path / "toy"
    cache.save(directory, "toy", Toy(), {"x": np.zeros(1)}, {})
    (directory / "arrays.npz").unlink()
    assert (directory / "config.json").exists() and not cache.is_current(directory, "toy", Toy())


def test_failed_save_leaves_old_results_and_no_partial_directory(tmp_path):
    directory = tmp_path / "toy"
    cache.save(directory, "toy", Toy(), {"x": np.arange(3.0)}, {})

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        cache.save(directory, "toy", Toy(), {"x": np.ones(1)}, {"bad": Unserializable()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]
    assert np.array_equal(cache.load(directory)["x"], np.arange(3.0))


def test_is_current_checks_the_configuration(tmp_path):
    directory = tmp_path / "toy"
    assert not cache.is_current(directory, "toy", Toy())
    cache.save(directory, "toy", Toy(), {"x": np.zeros(1)}, {})
    assert cache.is_current(directory, "toy", Toy())
    assert not cache.is_current(directory, "toy", Toy(scale=1.0))


def test_load_or_run_computes_once_then_reads_the_cache(smoke_root, maps_runs):
    calls = maps_runs
    first = experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    config = experiments.get_config("maps_vs_sparsity", "smoke")
    # the run, then the part that verify recomputes (its self-check), then nothing: read from the cache
    assert calls == [config, first_images(config, 1)]
    second = experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    assert len(calls) == 2
    np.testing.assert_array_equal(first["maps"], second["maps"])
    assert (smoke_root / "smoke" / "maps_vs_sparsity" / "config.json").exists()
    # a variation is computed for the caller and never written over the profile's cache
    varied = experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False, sparsities=(50.0,))
    assert len(calls) == 3 and varied["maps"].shape[2] == 1
    assert cache.load(smoke_root / "smoke" / "maps_vs_sparsity")["maps"].shape[2] == 2


def test_verify_accepts_the_committed_code_and_rejects_a_tampered_cache(smoke_root):
    experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    result = experiments.verify("maps_vs_sparsity", "smoke")
    assert result.ok and result.status == "matches exactly", result.text()
    directory = smoke_root / "smoke" / "maps_vs_sparsity"
    results = cache.load(directory)
    arrays = dict(results.arrays)
    arrays["output_change"] = arrays["output_change"] + 0.01
    config = experiments.get_config("maps_vs_sparsity", "smoke")
    cache.save(directory, "maps_vs_sparsity", config, arrays, results.meta, cache.load_decisions(directory))
    result = experiments.verify("maps_vs_sparsity", "smoke")
    assert not result.ok and result.status == "DIFFERS"
    assert "output_change  DIFFERS" in result.text()
    with pytest.raises(AssertionError, match="output_change"):
        result.assert_ok()


def test_verify_without_a_cache_says_how_to_make_one(smoke_root):
    with pytest.raises(AssertionError, match="python -m pathlib_pw run maps_vs_sparsity --profile smoke"):
        experiments.verify("maps_vs_sparsity", "smoke")


def test_verify_of_a_cache_without_decision_records_says_to_recompute(smoke_root):
    experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    (smoke_root / "smoke" / "maps_vs_sparsity" / cache.DECISIONS_FILE).unlink()
    with pytest.raises(AssertionError, match="--force"):
        experiments.verify("maps_vs_sparsity", "smoke")
    experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False, force=True)
    with pytest.raises(ValueError, match="n_images must be between 1 and 1"):
        experiments.verify("maps_vs_sparsity", "smoke", n_images=2)


def test_a_result_that_does_not_verify_against_itself_is_not_cached(smoke_root, monkeypatch):
    real_run = experiments.maps_vs_sparsity.run
    calls = []

    def drifting(config, device="cpu", progress=True):
        out = real_run(config, device=device, progress=progress)
        calls.append(1)
        out["output_change"] = out["output_change"] + 0.01 * len(calls)  # each run computes something else
        return out

    monkeypatch.setattr(experiments.maps_vs_sparsity, "run", drifting)
    with pytest.raises(RuntimeError, match="does not verify against itself"):
        experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    assert not (smoke_root / "smoke").exists() or not any((smoke_root / "smoke").iterdir())


def test_bad_experiment_and_profile_names():
    with pytest.raises(ValueError, match="experiment must be one of"):
        experiments.get_config("nope", "book")
    with pytest.raises(ValueError, match="profile must be one of"):
        experiments.get_config("paths", "huge")


def test_paths_smoke_run_is_reproducible_and_consistent(smoke_root):
    config = first_images(experiments.get_config("paths", "smoke"), 1)
    a, _ = experiments.run("paths", config, progress=False)
    b, _ = experiments.run("paths", config, progress=False)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    labels = list(a["criteria"])
    mct = labels.index("NeuronMCT")
    assert np.all(a["dead_share"][:, mct] == 0)  # a contribution path never keeps a dead neuron
    jac = a["jaccard"][0, 0]
    np.testing.assert_allclose(np.diag(jac), 1.0)
    np.testing.assert_allclose(jac, jac.T)
    assert a["realized"][0, labels.index("Random"), 0] == pytest.approx(50.0, abs=0.1)


def _committed_caches(root: Path) -> list[Path]:
    """The cache folders (holding a config.json) under ``root``/data/results that git tracks, or, outside
    a git checkout, those present."""
    import subprocess

    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "data/results"], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return sorted(p.parent for p in (root / "data" / "results").glob("*/*/config.json"))
    return sorted({root / Path(f).parent for f in listed if Path(f).name == "config.json"})


def _stale(caches: list[Path]) -> list[str]:
    """Each cache whose stored configuration hash is not the hash of what the code would run now, or
    that holds no decision records (``verify`` cannot check it)."""
    stale = []
    for directory in caches:
        experiment, profile = directory.name, directory.parent.name
        config = experiments.get_config(experiment, profile)
        if not cache.is_current(directory, experiment, config):
            stored = json.loads((directory / "config.json").read_text()).get("config_hash")
            stale.append(f"{profile}/{experiment}: stored {stored}, code {cache.config_hash(experiment, config)}")
        elif not (directory / cache.DECISIONS_FILE).exists():
            stale.append(f"{profile}/{experiment}: no {cache.DECISIONS_FILE} (verify cannot check it)")
    return stale


def test_every_committed_cache_is_of_the_current_configuration(tmp_path):
    root = Path(__file__).resolve().parents[2]
    caches = _committed_caches(root)
    assert caches, "no committed cache found"
    assert _stale(caches) == []
    # a committed config.json of another configuration is caught
    copy = tmp_path / "book" / "maps_vs_sparsity"
    copy.mkdir(parents=True)
    source = root / "data" / "results" / "book" / "maps_vs_sparsity"
    for name in ("arrays.npz", cache.DECISIONS_FILE):
        (copy / name).symlink_to(source / name)
    header = json.loads((source / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(header))
    assert _stale([copy]) == []
    current = header["config_hash"]
    header["config"]["sparsities"] = [0.0, 50.0]  # as if computed with another configuration
    header["config_hash"] = cache.config_hash("maps_vs_sparsity", header["config"])
    (copy / "config.json").write_text(json.dumps(header))
    assert _stale([copy]) == [f"book/maps_vs_sparsity: stored {header['config_hash']}, code {current}"]
    # a stored setting changed under the current hash is caught too
    header["config_hash"] = current
    (copy / "config.json").write_text(json.dumps(header))
    assert _stale([copy]) == [f"book/maps_vs_sparsity: stored {current}, code {current}"]
    # so is one without decision records, like the smoke caches committed before them
    header = json.loads((source / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(header))
    (copy / cache.DECISIONS_FILE).unlink()
    assert _stale([copy]) == ["book/maps_vs_sparsity: no decisions.npz (verify cannot check it)"]


def test_other_cpu_limits_instructions_and_threads_and_keeps_the_environment(monkeypatch):
    monkeypatch.setenv("PATHLIB_PW_PROBE", "kept")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    env = cache.other_cpu(threads=3, EXTRA="x")
    assert env["PATHLIB_PW_PROBE"] == "kept" and env["EXTRA"] == "x" and env["OMP_NUM_THREADS"] == "3"
    assert {k: env[k] for k in cache.INSTRUCTION_LIMITS["DEFAULT"]} == cache.INSTRUCTION_LIMITS["DEFAULT"]
    assert env["ATEN_CPU_CAPABILITY"] == "default" and cache.other_cpu()["OMP_NUM_THREADS"] == "1"
