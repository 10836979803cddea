"""The benchmark scripts: the ratio bookkeeping with a fake clock, and tiny end-to-end runs."""

from __future__ import annotations

import csv
import importlib.util
import resource
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _script("bench_criteria")


def test_each_repeat_is_compared_with_the_floor_timed_around_it(bench, monkeypatch):
    # fast phase with a burst during the run, then a 3x slower phase; min(run) / min(floor) would say 4
    durations = iter([
        1.0, 4.0, 1.0,  # floor, run, floor (the untimed warm-up calls come before)
        3.0, 6.0, 3.0,
        3.0, 6.0, 3.0,
    ])
    monkeypatch.setattr(bench, "seconds", lambda fn, device: next(durations))
    run, base, ratio = bench.timed_against_floor(lambda: None, lambda: None, None, repeats=3)
    assert (run, base, ratio) == (6.0, 3.0, 2.0)


def test_tiny_run_writes_the_table(bench, tmp_path, monkeypatch):
    out = tmp_path / "cpu"
    argv = ["bench_criteria.py", "--device", "cpu", "--models", "mobilenet_v2", "--batch-sizes", "1",
            "--size", "32", "--repeats", "1", "--criteria", "NeuronMCT", "Random", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [r["criterion"] for r in rows] == ["NeuronMCT", "Random"]
    assert rows[0]["reference_ms"] and not rows[1]["reference_ms"]  # a literal reference exists for NeuronMCT only
    assert all(float(r["ms_per_image"]) > 0 and float(r["passes"]) > 0 for r in rows)
    assert [r["passes_needed"] for r in rows] == ["2", "1"]
    assert float(rows[0]["x_floor"]) == pytest.approx(float(rows[0]["passes"]) / 2)
    table = out.with_suffix(".md").read_text()
    assert "| mobilenet_v2 | 1 | NeuronMCT |" in table and "peak resident set" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu.csv", "cpu.md"]  # no temporary left


def test_the_floor_computes_no_weight_gradients_and_restores_the_flags(bench):
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x = torch.randn(2, 3, 8, 8)
    model(x)
    model[0].weight.requires_grad_(False)  # a frozen layer stays frozen
    bench.one_pass(model, x)
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True]
    with bench.frozen(model):
        out = model(x.requires_grad_(True))
        assert out.grad_fn is not None and not any(p.requires_grad for p in model.parameters())
    assert set(bench.PASSES) == set(bench.criteria(quick=True))


def test_floor_benchmark_times_each_method_against_its_own_passes(tmp_path, monkeypatch, capsys):
    module = _script("bench_floor")
    passes = []
    one_pass = module.one_pass
    monkeypatch.setattr(module, "one_pass", lambda model, x: passes.append(x.shape[0]) or one_pass(model, x))
    out = tmp_path / "floor"
    monkeypatch.setattr(sys, "argv", ["bench_floor.py", "--models", "mobilenet_v2", "--size", "32", "--repeats", "2",
                                      "--rounds", "2", "--criteria", "NeuronMCT", "Greedy (authors' loop)", "--out", str(out)])
    assert module.main() == 0
    # per criterion: a warm-up floor, then two floors around each of the 2 repeats; batch 8 throughout
    assert len(passes) == (1 + 2 * 2) * (2 + 3) and set(passes) == {8}
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [(r["criterion"], r["floor"]) for r in rows] == [
        ("NeuronMCT", "2 passes (score + map)"), ("Greedy (authors' loop)", "3 passes (2 rounds + map)")]
    assert all(0 < float(r["ratio_min"]) <= float(r["ratio_max"]) for r in rows)
    assert float(rows[0]["pass_ms_per_image"]) == pytest.approx(float(rows[0]["floor_ms_per_image"]) / 2)
    assert all(float(r["fault_mb_per_image"]) >= 0 and float(r["floor_fault_mb_per_image"]) >= 0 for r in rows)
    printed = capsys.readouterr().out
    assert "| mobilenet_v2 | 8 | NeuronMCT | 2 passes (score + map) |" in printed and "Measured on CPU (" in printed
    assert "glibc malloc as configured by default" in printed or "freed memory kept" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["floor.csv", "floor.md"]
    assert sorted(module.CASES) == ["mobilenet_v2", "vgg16"]


def test_floor_benchmark_counts_the_page_faults_of_each_call(monkeypatch):
    module = _script("bench_floor")
    faults, touched = [], []

    def touch() -> None:  # 64 MB of fresh memory, written: at least 64 MB / page size minor faults
        block = bytearray(64 << 20)
        block[:: resource.getpagesize()] = b"x" * len(block[:: resource.getpagesize()])
        touched.append(block)

    module.faulting(touch, faults)()
    module.faulting(lambda: None, faults)()
    assert faults[0] >= (64 << 20) // resource.getpagesize() * 0.9 and faults[1] < 100
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "68719476736")
    assert "MALLOC_TRIM_THRESHOLD_=68719476736 (freed memory kept)" in module.malloc_setting()
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.delenv("MALLOC_MMAP_MAX_", raising=False)
    assert module.malloc_setting() == "glibc malloc as configured by default"


def test_threshold_benchmark_runs_and_checks_agreement(tmp_path, monkeypatch, capsys):
    module = _script("bench_threshold")
    monkeypatch.setattr(sys, "argv", ["bench_threshold.py", "--device", "cpu", "--batch-sizes", "1", "3",
                                      "--neurons", "300000", "--repeats", "1"])
    assert module.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert "sampled_kth" in lines[1] and "numpy" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["1", "3"]


def test_device_check_compares_cpu_with_itself(monkeypatch, capsys):
    module = _script("check_device")
    monkeypatch.setattr(sys, "argv", ["check_device.py", "--device", "cpu", "--size", "32", "--photos", "chelsea"])
    # one thread: on an Intel Xeon under load, two multi-threaded CPU runs of DGR (gates from 1, chaotic)
    # once ended 0.29 apart in the map; the test checks the script, not the CPU's thread scheduling
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert module.main() == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "all within" in out and "NeuronIntGrad (original code)" in out and "gradcam" in out


def test_page_fault_counter_runs_and_counts_per_image(monkeypatch, capsys):
    module = _script("count_page_faults")
    monkeypatch.setattr(sys, "argv", ["count_page_faults.py", "--model", "mobilenet_v2", "--batch-sizes", "1", "2",
                                      "--size", "32", "--repeats", "1"])
    threads = torch.get_num_threads()
    try:
        assert module.main() == 0
    finally:
        torch.set_num_threads(threads)
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.startswith("threads 1, glibc malloc settings")
    assert [line.split(":")[0] for line in lines] == ["mobilenet_v2 batch 1", "mobilenet_v2 batch 2"]
    assert all("minor faults per image" in line and "seconds per image" in line for line in lines)


def test_step_comparison_undoes_each_step_and_gets_the_same_maps(monkeypatch, capsys):
    module = _script("compare_steps")
    monkeypatch.setattr(sys, "argv", ["compare_steps.py", "--size", "64", "--batch", "2", "--repeats", "1"])
    assert module.main() == 0  # raises when a variant's map differs from the code's
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "" and lines[-1].startswith("floor: ")  # a line of its own, not a row of the table
    assert [line.split(" | ")[0] for line in lines[3:-2]] == [
        "| none (the code as it is)", "| selection", "| count", "| scores", "| nan_pass", "| copies", "| bracket_masks",
        "| zeroed_inputs", "| counted", "| empty_scan", "| finite_sum", "| partition",
        "| count, scores, nan_pass, copies, bracket_masks, zeroed_inputs, counted, empty_scan, finite_sum, partition, selection"]
    # every step is put back afterwards
    assert module.selection._bracketed is module.BRACKETED and module.thresholds.above_kth is module.selection.above_kth
    assert module.pathway.float_copies is not module.copies_from_bool
    assert module.pathway.Masking.zero_removed_inputs is not module.products_only
    assert module.thresholds._thresholded is module.THRESHOLDED and module.checks.keeps_nothing is not module.counted_empty
    assert module.sites.check_input is module.CHECK_INPUT and module.selection._partition is not module.sort_in_place


@pytest.mark.pathway_checks  # as a user calls it: the second pass is the connectivity check's
def test_profile_by_part_times_every_part_and_restores_the_functions(monkeypatch, capsys):
    module = _script("profile_parts")
    before = {part: getattr(owner, name) for part, (owner, name) in module.PARTS.items()}
    monkeypatch.setattr(sys, "argv", ["profile_parts.py", "--size", "64", "--batch", "2", "--repeats", "2"])
    assert module.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("NeuronMCT + PathwayGrad by part, measured on CPU") and lines[1] == ""
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[4:]}
    assert list(rows) == [module.CALL, *module.PARTS, module.OTHER, module.FLOOR]
    times = {part: float(cells[0]) for part, cells in rows.items()}
    # each part ran (a part whose wrapper never fired reads 0) and lies within the call
    assert all(0 < times[part] <= times[module.CALL] for part in module.PARTS), times
    assert times["threshold: each cut, the masks above it, their counts"] <= times["threshold: all of it"]
    assert {part: getattr(owner, name) for part, (owner, name) in module.PARTS.items()} == before


def test_patched_sets_in_order_and_restores_after_an_error(bench):
    import types

    target = types.SimpleNamespace(f="original", g="other")
    with pytest.raises(RuntimeError), bench.patched([(target, "f", "first"), (target, "g", "new"), (target, "f", "second")]):
        assert (target.f, target.g) == ("second", "new")  # the later replacement of f wins
        raise RuntimeError
    assert (target.f, target.g) == ("original", "other")
