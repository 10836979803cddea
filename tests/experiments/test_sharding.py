"""Per-image experiments in chunks, shared among processes, resumable (pathlib_pw.experiments.sharding).

References: the plain single-process run of the same configuration (``experiments.run``), which the
merged chunks equal array for array where the chunks keep the experiment's batches (``paths``: one
image per batch) and up to float rounding where the plain run batches all images together
(``sanity``); and the chunked single-process run, which two processes under torchrun (gloo) and an
interrupted-then-resumed run must equal exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pathlib_pw import experiments, models
from pathlib_pw.data import load_images
from pathlib_pw.experiments import sharding
from pathlib_pw.runner import cache
from pathlib_pw.runner.inputs import ALL_PHOTOS, Inputs
from pathlib_pw.runner.verification import compare_all

sys.path.insert(0, str(Path(__file__).parent))
import tiny_experiments  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def results(tmp_path, monkeypatch):
    """An empty results folder, the toy experiments and their random-init models registered, chunks of one image, one thread
    (what torchrun gives each of its processes)."""
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv(sharding.CHUNK_ENV, "1")
    for name, module in tiny_experiments.MODULES.items():
        monkeypatch.setitem(experiments.EXPERIMENTS, name, module)
    for name, architecture in tiny_experiments.RANDOM_INIT.items():
        monkeypatch.setitem(models._LOADERS, name, tiny_experiments._random_init(architecture))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "results"
    torch.set_num_threads(threads)


_plain: dict[str, dict[str, np.ndarray]] = {}


def plain_run(name: str) -> dict[str, np.ndarray]:
    """The single-process, unchunked run (computed once per test session, on one thread)."""
    if name not in _plain:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _plain[name], _ = experiments.run(name, experiments.get_config(name, "smoke"), "cpu", progress=False)
        finally:
            torch.set_num_threads(threads)
    return _plain[name]


def assert_same(merged: dict[str, np.ndarray], plain: dict[str, np.ndarray]) -> None:
    assert sorted(merged) == sorted(plain)
    for key in plain:
        assert merged[key].shape == plain[key].shape, key
        np.testing.assert_array_equal(merged[key], plain[key], err_msg=key)


# --- pieces ------------------------------------------------------------------------------------


def test_chunks_cover_every_image_once_in_order():
    assert sharding.chunks(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert sharding.chunks(4, 16) == [(0, 4)]


def test_chunk_size_is_whole_batches(monkeypatch):
    monkeypatch.delenv(sharding.CHUNK_ENV, raising=False)
    cfg = tiny_experiments.MODULES["tiny_paths"].config("smoke")
    assert sharding.chunk_size(cfg) == 16
    import dataclasses

    assert sharding.chunk_size(dataclasses.replace(cfg, batch_size=5)) == 20
    monkeypatch.setenv(sharding.CHUNK_ENV, "0")
    with pytest.raises(ValueError, match=sharding.CHUNK_ENV):
        sharding.chunk_size(cfg)


def test_window_loads_the_same_images_as_slicing_the_whole_list():
    inputs = Inputs(images=ALL_PHOTOS[:5], size=32)
    x, names = inputs.load_images()
    part = inputs.window(1, 3).window(1, 2)  # windows compose: image 2 of the whole list
    xp, names_p = part.load_images()
    assert names_p == names[2:3]
    torch.testing.assert_close(xp, x[2:3], rtol=0, atol=0)
    with pytest.raises(ValueError, match="start and stop"):
        inputs.window(3, 3)


def test_a_source_without_offset_support_is_sliced(monkeypatch):
    from pathlib_pw import data

    def numbered(images, n_images, size, seed, first):
        x = torch.arange(6.0).view(6, 1, 1, 1)
        return x[:first], [str(i) for i in range(6)][:first]

    monkeypatch.setitem(data.IMAGE_SOURCES, "numbered", numbered)
    x, names = load_images("numbered", first=2, offset=3)
    assert names == ["3", "4"] and x.flatten().tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="offset"):
        load_images("numbered", offset=-1)


def test_imagenet_window_is_the_window_of_the_seeded_draw(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):
        folder = tmp_path / f"n0000000{c}"
        folder.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"img_{c}_{i}.JPEG")
    monkeypatch.setenv("PATHLIB_PW_IMAGENET_VAL", str(tmp_path))
    inputs = Inputs(source="imagenet_val", images=(), n_images=6, size=16, seed=3)
    _, names = inputs.load_images()
    _, part = inputs.window(2, 5).load_images()
    assert part == names[2:5]


def test_merge_concatenates_per_image_arrays_and_checks_the_rest():
    a = {"maps": np.zeros((2, 3)), "levels": np.array([1.0, np.nan])}
    b = {"maps": np.ones((1, 3)), "levels": np.array([1.0, np.nan])}
    merged = sharding.merge([a, b], {"maps"})
    assert merged["maps"].shape == (3, 3) and merged["maps"][2].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="'levels' is not per image but differs"):
        sharding.merge([a, {"maps": b["maps"], "levels": np.array([2.0, np.nan])}], {"maps"})
    with pytest.raises(ValueError, match="chunk 1 holds arrays"):
        sharding.merge([a, {"maps": b["maps"]}], {"maps"})


def test_only_per_image_experiments_are_shardable():
    assert sharding.shardable("paths") and sharding.shardable("sanity") and sharding.shardable("lerf")
    assert not sharding.shardable("roar") and not sharding.shardable("decoding")
    with pytest.raises(ValueError, match="not computed image by image"):
        sharding.run_sharded("roar", "smoke")


# --- one process -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny_paths", "tiny_sanity"])
def test_chunked_run_equals_the_plain_run(results, name):
    merged = sharding.run_sharded(name, "smoke", progress=False)
    if name == "tiny_paths":  # one image per batch in both runs: the same arithmetic
        assert_same(merged.arrays, plain_run(name))
    else:  # the plain run pushes all images through at once: rounding, and a threshold neuron may flip
        rules = experiments.EXPERIMENTS[name].TOLERANCES
        checks = compare_all(merged.arrays, plain_run(name), rules, {})
        assert [c.problem for c in checks if c.problem] == []
        for key in ("names", "predicted", "stage_predicted"):
            np.testing.assert_array_equal(merged.arrays[key], plain_run(name)[key])
    header = json.loads((results / "smoke" / name / "config.json").read_text())
    assert header["world_size"] == 1 and header["chunk_images"] == 1 and header["self_check"]
    assert not (results / "smoke" / sharding.SHARDS).exists() or not any((results / "smoke" / sharding.SHARDS).iterdir())
    assert experiments.verify(name, "smoke").ok
    # every chunk recorded its images' decisions (the tiny modules do not copy paths' RECORD_EVERY_IMAGE)
    assert header["recorded_images"] == list(range(len(merged.arrays["names"])))
    assert experiments.verify(name, "smoke", all_images=True).ok


def test_an_interrupted_run_resumes_without_recomputing_finished_images(results, monkeypatch):
    calls: list[int] = []
    real_run = sharding.run

    def counting(name, config, device="cpu", progress=True):
        calls.append(config.inputs.offset)
        if len(calls) == 2 and interrupt:
            raise KeyboardInterrupt("interrupted")
        return real_run(name, config, device, progress)

    monkeypatch.setattr(sharding, "run", counting)
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        sharding.run_sharded("tiny_paths", "smoke", progress=False)
    shards = next((results / "smoke" / sharding.SHARDS).iterdir())
    assert sorted(p.name for p in shards.glob("images-*")) == ["images-0000000-0000001.npz"]
    assert not list(shards.glob(".*")), "a half-written file was left behind"
    assert not (results / "smoke" / "tiny_paths").exists()

    interrupt = False
    calls.clear()
    merged = sharding.run_sharded("tiny_paths", "smoke", progress=False)
    assert calls[:2] == [1, 2], "finished images were recomputed"  # then the self-check's image 0
    assert_same(merged.arrays, plain_run("tiny_paths"))
    assert not shards.exists()


def test_force_discards_finished_chunks(results, monkeypatch):
    sharding.run_sharded("tiny_sanity", "smoke", progress=False)
    calls: list[int] = []
    real_run = sharding.run

    def counting(name, config, device="cpu", progress=True):
        calls.append(config.inputs.offset)
        return real_run(name, config, device, progress)

    monkeypatch.setattr(sharding, "run", counting)
    assert sharding.run_sharded("tiny_sanity", "smoke", progress=False).meta["world_size"] == 1
    assert calls == [], "a current cache is returned as it is"
    sharding.run_sharded("tiny_sanity", "smoke", force=True, progress=False)
    assert calls[:3] == [0, 1, 2]


# --- two processes under torchrun ----------------------------------------------------------------

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import tiny_experiments
tiny_experiments.register()
from pathlib_pw.__main__ import main
sys.exit(main(["run", "tiny_paths", "tiny_sanity", "--profile", "smoke", "--quiet"]))
"""


def test_two_processes_under_torchrun_equal_one(results, tmp_path):
    script = tmp_path / "run_tiny.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("tiny_paths", "tiny_sanity"):
        merged = cache.load(results / "smoke" / name)
        assert merged.meta["world_size"] == 2
        one = sharding.run_sharded(name, "smoke", force=True, progress=False)
        assert one.meta["world_size"] == 1
        assert_same(merged.arrays, one.arrays)


def test_an_identical_computation_is_copied_not_recomputed(results, monkeypatch):
    import types

    twin = types.ModuleType("tiny_sanity_twin")
    twin.__dict__.update({k: v for k, v in vars(tiny_experiments.MODULES["tiny_sanity"]).items() if not k.startswith("__")})
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny_sanity_twin", twin)
    first = sharding.run_experiment("tiny_sanity", "smoke", progress=False)
    monkeypatch.setattr(sharding, "run", lambda *a, **k: pytest.fail("recomputed"))
    copied = sharding.run_experiment("tiny_sanity_twin", "smoke", progress=False)
    assert copied.meta["copied_from"] == "tiny_sanity"
    assert_same(copied.arrays, first.arrays)
    assert experiments.verify("tiny_sanity_twin", "smoke").ok


def test_paper_profiles_bound_neuron_intgrad_passes_and_book_hashes_stay():
    from pathlib_pw.runner.inputs import PAPER_ALPHA_CHUNK, pinned_options

    assert pinned_options("neuron_intgrad") == {"alpha_chunk": None}
    assert pinned_options("neuron_mct", Inputs(alpha_chunk=4)) == {}
    assert pinned_options("neuron_intgrad", Inputs(alpha_chunk=4)) == {"alpha_chunk": 4}
    for name in ("paths", "dgr_retries", "sanity", "lerf", "qualitative"):
        assert experiments.get_config(name, "paper").inputs.alpha_chunk == PAPER_ALPHA_CHUNK, name
        assert "alpha_chunk" not in cache.config_dict(experiments.get_config(name, "book"))["inputs"], name


# --- faults (issue 28) ---------------------------------------------------------------------------


def _counting_run(monkeypatch, calls: list[int], interrupt_at: int | None = None):
    """Count the chunks computed (their first image); raise KeyboardInterrupt at chunk ``interrupt_at``."""
    real_run = experiments.run  # what sharding.run is when not patched

    def counting(name, config, device="cpu", progress=True):
        calls.append(config.inputs.offset)
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt("interrupted")
        return real_run(name, config, device, progress)

    monkeypatch.setattr(sharding, "run", counting)


def test_a_failing_shard_write_leaves_no_partial_shard(results, monkeypatch):
    real_savez = np.savez

    def dies_halfway(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")  # what a kill in the middle of the write leaves
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sharding.np, "savez", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        sharding.run_sharded("tiny_paths", "smoke", progress=False)
    shards = sharding.shard_directory("tiny_paths", "smoke", experiments.get_config("tiny_paths", "smoke"))
    assert list(shards.glob("images-*")) == [] and list(shards.glob(".*")) == []
    monkeypatch.setattr(sharding.np, "savez", real_savez)
    assert_same(sharding.run_sharded("tiny_paths", "smoke", progress=False).arrays, plain_run("tiny_paths"))


def _interrupted_after_one_chunk(monkeypatch) -> tuple[list[int], Path]:
    """tiny_paths run in chunks and interrupted while computing the third: (the chunk starts computed, the shard folder)."""
    calls: list[int] = []
    _counting_run(monkeypatch, calls, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        sharding.run_sharded("tiny_paths", "smoke", progress=False)
    return calls, sharding.shard_directory("tiny_paths", "smoke", experiments.get_config("tiny_paths", "smoke"))


def test_force_discards_leftover_chunks_of_an_interrupted_run(results, monkeypatch):
    calls, shards = _interrupted_after_one_chunk(monkeypatch)
    (leftover,) = shards.glob("images-*")
    arrays, seconds = sharding._load_shard(leftover)
    sharding._save_shard(leftover, {k: np.zeros_like(v) for k, v in arrays.items()}, seconds)  # a wrong chunk
    calls.clear()
    _counting_run(monkeypatch, calls)
    merged = sharding.run_sharded("tiny_paths", "smoke", force=True, progress=False)
    assert calls[:3] == [0, 1, 2], "--force resumed from a leftover chunk"
    assert_same(merged.arrays, plain_run("tiny_paths"))


def test_a_resume_after_a_configuration_change_does_not_reuse_old_chunks(results, monkeypatch):
    calls, old = _interrupted_after_one_chunk(monkeypatch)
    assert [p.name for p in old.glob("images-*")] == ["images-0000000-0000001.npz"]
    module = experiments.EXPERIMENTS["tiny_paths"]
    base = module.config

    def changed(profile):
        return dataclasses.replace(base(profile), sweep_sparsities=(90.0,))

    monkeypatch.setattr(module, "config", changed)
    config = experiments.get_config("tiny_paths", "smoke")
    assert sharding.shard_directory("tiny_paths", "smoke", config) != old  # keyed by the configuration
    calls.clear()
    _counting_run(monkeypatch, calls)
    merged = sharding.run_sharded("tiny_paths", "smoke", progress=False)
    assert calls[:3] == [0, 1, 2], "a chunk of the old configuration was reused"
    expected, _ = experiments.run("tiny_paths", config, progress=False)
    assert_same(merged.arrays, expected)
    assert not old.exists(), "the old configuration's chunks were left behind"


def test_a_folder_of_chunks_recording_another_configuration_is_not_resumed(results, monkeypatch):
    calls: list[int] = []
    _counting_run(monkeypatch, calls, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        sharding.run_sharded("tiny_paths", "smoke", progress=False)
    shards = sharding.shard_directory("tiny_paths", "smoke", experiments.get_config("tiny_paths", "smoke"))
    (shards / "config.json").write_text(json.dumps({"something": "else"}))
    calls.clear()
    _counting_run(monkeypatch, calls)
    sharding.run_sharded("tiny_paths", "smoke", progress=False)
    assert calls[:3] == [0, 1, 2]


def test_a_failed_final_write_keeps_the_chunks_and_a_rerun_only_merges(results, monkeypatch):
    real_save = cache.save

    def full_disk(directory, *args, **kwargs):
        raise cache.CacheWriteError(f"cannot write the results to {directory}: No space left on device")

    monkeypatch.setattr(cache, "save", full_disk)
    with pytest.raises(cache.CacheWriteError, match="chunks are kept in .*rerun the same command"):
        sharding.run_sharded("tiny_paths", "smoke", progress=False)
    shards = sharding.shard_directory("tiny_paths", "smoke", experiments.get_config("tiny_paths", "smoke"))
    assert len(list(shards.glob("images-*"))) == 3
    monkeypatch.setattr(cache, "save", real_save)
    calls: list[int] = []
    _counting_run(monkeypatch, calls)
    merged = sharding.run_sharded("tiny_paths", "smoke", progress=False)
    assert calls == [], "finished chunks were computed again"
    assert_same(merged.arrays, plain_run("tiny_paths"))
    assert not shards.exists()


def test_too_little_free_space_stops_before_any_computation(results, monkeypatch):
    import shutil as shutil_module

    usage = shutil_module.disk_usage(results.parent)
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: usage._replace(free=50 * 2**20))
    calls: list[int] = []
    _counting_run(monkeypatch, calls)
    with pytest.raises(cache.CacheWriteError, match=r"not enough free space .* 50 MB free, about 200 MB needed") as raised:
        sharding.run_sharded("tiny_paths", "smoke", progress=False)
    assert str(results / "smoke") in str(raised.value) and calls == []
    with pytest.raises(cache.CacheWriteError, match="not enough free space"):
        sharding.run_experiment("tiny_paths", "smoke", progress=False)
    assert calls == []


def test_needed_bytes_scales_with_an_existing_cache(tmp_path):
    assert sharding.needed_bytes(tmp_path / "none") == cache.DEFAULT_NEEDED_BYTES == 200 * 2**20
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "b").write_bytes(b"x" * 24)
    assert sharding.needed_bytes(tmp_path) == 4 * 1024


def test_an_unwritable_results_folder_is_one_line_naming_it(results, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(cache.CacheWriteError) as raised:
        sharding.run_sharded("tiny_paths", "smoke", progress=False)
    message = str(raised.value)
    assert "\n" not in message and "Permission denied" in message and str(results / "smoke" / sharding.SHARDS) in message


def test_shard_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "images-0000000-0000001.npz"
        sharding._save_shard(path, {"x": np.arange(3)}, 1.0)
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_a_cache_that_fails_its_digests_is_not_copied(results, monkeypatch):
    import types

    twin = types.ModuleType("tiny_paths_twin")
    twin.__dict__.update({k: v for k, v in vars(tiny_experiments.MODULES["tiny_paths"]).items() if not k.startswith("__")})
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny_paths_twin", twin)
    sharding.run_experiment("tiny_paths", "smoke", progress=False)
    source = results / "smoke" / "tiny_paths"
    with np.load(source / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["realized"] = arrays["realized"] * 2  # the arrays changed after their digests were recorded
    np.savez_compressed(source / "arrays.npz", **arrays)
    calls: list[int] = []
    _counting_run(monkeypatch, calls)
    twin_result = sharding.run_experiment("tiny_paths_twin", "smoke", progress=False)
    assert "copied_from" not in twin_result.meta and calls[:3] == [0, 1, 2]
    assert_same(twin_result.arrays, plain_run("tiny_paths"))


def test_a_cache_of_another_configuration_is_not_copied(results, monkeypatch):
    import types

    twin = types.ModuleType("tiny_paths_twin")
    twin.__dict__.update({k: v for k, v in vars(tiny_experiments.MODULES["tiny_paths"]).items() if not k.startswith("__")})
    base = twin.config
    twin.config = lambda profile: dataclasses.replace(base(profile), sweep_sparsities=(90.0,))
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny_paths_twin", twin)
    sharding.run_experiment("tiny_paths", "smoke", progress=False)
    calls: list[int] = []
    _counting_run(monkeypatch, calls)
    twin_result = sharding.run_experiment("tiny_paths_twin", "smoke", progress=False)
    assert "copied_from" not in twin_result.meta and calls[:3] == [0, 1, 2]
    assert twin_result.arrays["realized"].shape != cache.load(results / "smoke" / "tiny_paths").arrays["realized"].shape
