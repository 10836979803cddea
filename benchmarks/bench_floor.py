"""Every criterion + its PathwayGrad map against its own floor, interleaved; minimum and spread of N repeats.

    python benchmarks/bench_floor.py                       # MobileNetV2 batch 8 and VGG16 batch 4, 7 repeats
    python benchmarks/bench_floor.py --models mobilenet_v2 --criteria NeuronMCT --repeats 11

MobileNetV2 with its ImageNet weights (``pathlib_pw.models``), VGG16 with random weights (timings do
not depend on them), 224 px, 90 % sparsity, float32. One *pass* is a forward and a backward of the
batch to the input with the weights frozen (``bench_criteria.one_pass``: no criterion needs weight
gradients). A method's *floor* is the passes it cannot avoid: NeuronMCT two (score, then the map
through the masked network), Random one (the map), Greedy one per round and DGR one per iteration,
each plus the map, NeuronIntGrad one per alpha (steps + 1) plus the map. Greedy, DGR and
NeuronIntGrad run a few rounds / iterations / steps (``--rounds``, ``--iterations``, ``--steps``)
and their floor has as many passes: the ratio is per round, iteration or step and does not need the
authors' 99 rounds or 1000 iterations.

Each repeat times the floor, the method and the floor again (``bench_criteria.interleaved``); the
ratio of a repeat is the method over the mean of its two floors. On a shared machine a slow phase
only ever makes a repeat slower, so the table reports the smallest ratio of the N repeats (the best
estimate of the quiet machine's) and the spread of all N, and beside it the fastest run over the
fastest floor: on a quiet machine with freed memory kept (below) the two agree; where they do not,
the load changed within a repeat, or (with malloc as configured by default) the page faults did:
the fastest floor is then one that faulted in little, and neither is the computation's figure.
Writes ``benchmarks/results/floor.md``
and ``.csv`` (``--out`` to change).

Page faults: fresh memory costs a fault per 4 KiB page on first touch, and whether a call gets fresh
memory depends on what glibc's malloc kept from earlier calls (blocks above 32 MB come from ``mmap``
and go back when freed; the heap's top is trimmed), so the same code can fault in 100 MB in one
position of the loop and nothing in another. The table gives the MB faulted in per image by the
method and by its floor (means over all calls), and the header says how malloc ran. Run it once
as is and once with freed memory kept, which compares the computation alone::

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 python benchmarks/bench_floor.py --out benchmarks/results/floor_kept
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_criteria import ROOT, interleaved, machine, one_pass, write_rows  # noqa: E402

import pathlib_pw as pw  # noqa: E402
from pathlib_pw.criteria.checks import PathwayWarning  # noqa: E402

# model -> (batch, ImageNet weights)
CASES = {"mobilenet_v2": (8, True), "vgg16": (4, False)}


class Criterion(NamedTuple):
    label: str
    method: str
    variant: str
    options: dict
    floor: int  # passes of bench_criteria.one_pass the method needs at the least
    why: str  # what the floor's passes are

# the printed and written table: title -> cell of a row (a row of measure(), with model and batch)
COLUMNS = {
    "model": lambda r: r["model"],
    "batch": lambda r: str(r["batch"]),
    "criterion + PathwayGrad": lambda r: r["criterion"],
    "floor": lambda r: r["floor"],
    "x floor (min)": lambda r: f"{float(r['ratio_min']):.2f}",
    "spread": lambda r: f"{float(r['ratio_min']):.2f}..{float(r['ratio_max']):.2f}",
    "fastest / fastest floor": lambda r: f"{float(r['ms_per_image']) / float(r['floor_ms_per_image']):.2f}",
    "ms / image": lambda r: f"{float(r['ms_per_image']):.1f}",
    "floor ms / image": lambda r: f"{float(r['floor_ms_per_image']):.1f}",
    "one pass ms / image": lambda r: f"{float(r['pass_ms_per_image']):.1f}",
    "faulted MB / image: method, floor": lambda r: f"{float(r['fault_mb_per_image']):.0f}, {float(r['floor_fault_mb_per_image']):.0f}",
}
MALLOC_KEPT = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")


def malloc_setting() -> str:
    """How glibc's malloc runs in this process, in words (it reads its settings once, at start-up)."""
    kept = {name: os.environ[name] for name in MALLOC_KEPT if name in os.environ}
    if not kept:
        return "glibc malloc as configured by default"
    return "glibc malloc with " + " ".join(f"{k}={v}" for k, v in kept.items()) + " (freed memory kept)"


def faulting(fn: Callable[[], None], faults: list[int]) -> Callable[[], None]:
    """``fn``, appending the minor page faults of each call to ``faults``."""

    def call() -> None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    return call


def criteria(rounds: int, iterations: int, steps: int) -> list[Criterion]:
    return [
        Criterion("NeuronMCT", "neuron_mct", "intended", {}, 2, "score + map"),
        Criterion("NeuronIntGrad", "neuron_intgrad", "intended", {"steps": steps}, steps + 2, f"{steps + 1} alphas + map"),
        Criterion("Random", "random", "intended", {}, 1, "map"),
        Criterion("Greedy (authors' loop)", "greedy", "original_code", {"rounds": rounds}, rounds + 1, f"{rounds} rounds + map"),
        Criterion("DGR (init=1)", "dgr", "intended", {"iterations": iterations, "init": "1"}, iterations + 1,
                  f"{iterations} iterations + map"),
    ]  # fmt: skip


def measure(model: torch.nn.Module, x: torch.Tensor, c: Criterion, repeats: int, device: torch.device) -> dict:
    """One row: the method's interleaved timings against ``c.floor`` passes."""

    def run() -> None:
        path = pw.extract_pathway(model, x, c.method, 90.0, variant=c.variant, **c.options)
        pw.pathway_grad(model, x, path)

    def floor() -> None:
        for _ in range(c.floor):
            one_pass(model, x)

    run_faults: list[int] = []
    floor_faults: list[int] = []
    runs, floors, ratios = interleaved(faulting(run, run_faults), faulting(floor, floor_faults), device, repeats)
    batch = x.shape[0]
    per_image_mb = resource.getpagesize() / 1e6 / batch
    return {
        "criterion": c.label, "floor": f"{c.floor} pass{'es' if c.floor > 1 else ''} ({c.why})", "ratio_min": min(ratios),
        "ratio_max": max(ratios), "ms_per_image": min(runs) / batch * 1e3,
        "floor_ms_per_image": min(floors) / batch * 1e3, "pass_ms_per_image": min(floors) / c.floor / batch * 1e3,
        "repeats": repeats, "fault_mb_per_image": sum(run_faults) / len(run_faults) * per_image_mb,
        "floor_fault_mb_per_image": sum(floor_faults) / len(floor_faults) * per_image_mb,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="Greedy rounds (the authors: 99)")
    parser.add_argument("--iterations", type=int, default=5, help="DGR iterations (the paper: 1000)")
    parser.add_argument("--steps", type=int, default=2, help="NeuronIntGrad steps (the authors: 10)")
    parser.add_argument("--criteria", nargs="+", default=None, help="labels to run (default all)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "floor")
    args = parser.parse_args()
    device = torch.device(args.device)
    warnings.simplefilter("ignore", PathwayWarning)  # about the few-iteration paths, not the timings
    table = criteria(args.rounds, args.iterations, args.steps)
    if args.criteria:
        unknown = sorted(set(args.criteria) - {c.label for c in table})
        if unknown:
            parser.error(f"--criteria: unknown {unknown}; accepted: {[c.label for c in table]}")
        table = [c for c in table if c.label in args.criteria]
    header = (
        f"Measured on {machine(device)}, torch {torch.__version__}, {malloc_setting()}, {args.size} px, 90 % sparsity, "
        "float32. "
        f"Ratio: the method (criterion + PathwayGrad) over its floor, timed right before and after it, the "
        f"smallest of {args.repeats} interleaved repeats, then the spread of all {args.repeats}; fastest / fastest "
        "floor: the fastest repeat of the method over that of its floor; ms per image: the fastest repeat. One "
        "pass: forward + backward to the input, weights frozen. Faulted MB: memory touched for the first time (minor "
        "page faults), per image and call, the method's and its floor's."
    )
    rows = []
    for name in args.models:
        batch, weights = CASES[name]
        model = pw.load_model(name, pretrained=weights, device=device)
        x = torch.randn(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
        for c in table:
            rows.append({"model": name, "batch": batch, **measure(model, x, c, args.repeats, device)})
            print(" | ".join(cell(rows[-1]) for cell in COLUMNS.values()), flush=True)
            write_rows(args.out, rows, header, COLUMNS)  # after every row: a run cut short still leaves its table
    print(f"{header}\n\n" + args.out.with_suffix(".md").read_text().split("\n", 2)[2], end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
