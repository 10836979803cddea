"""Per-image time of every criterion + PathwayGrad, beside the batch-1 literal reference and the floor.

    python benchmarks/bench_criteria.py --device cuda --models vgg16 resnet50 mobilenet_v2 --batch-sizes 1 8 32 64
    python benchmarks/bench_criteria.py --device cpu --models mobilenet_v2 --batch-sizes 1 4 --quick

Random-init torchvision models (timings do not depend on the weights), fp32, square inputs. One
*pass* is a forward and a backward of the same batch to the input, with the weights'
``requires_grad`` off: no criterion needs weight gradients (they take activation or input gradients
only), and a pass that computes them is 1.3 (MobileNetV2) to 1.55 (VGG16) times slower on a CPU,
which would flatter every ratio. The *floor* of a method is the passes it needs (``PASSES``:
NeuronMCT + PathwayGrad two, one to score and one through the masked network), and "x floor" is its
time over that floor. Each repeat times the method between two passes and the table reports
medians: the ratio is the median of the per-repeat ratios, robust to the slow and fast phases of a
shared machine.
Greedy (the authors' 99-round loop) and DGR (1000 iterations) cost the same per round/iteration:
with ``--quick`` they run a few rounds/iterations and are scaled linearly (marked "~" in the table).
The reference column is ``tests/reference_impl.py`` (batch 1, literal loops, numpy percentile).
Writes the table to ``benchmarks/results/<device>.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pathlib_pw as pw  # noqa: E402
from tests import reference_impl as R  # noqa: E402

FULL = {"greedy_rounds": 99, "dgr_iterations": 1000, "steps": 10}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(
    fn: Callable[[], object], base: Callable[[], object], device: torch.device, repeats: int
) -> tuple[list[float], list[float], list[float]]:
    """Seconds of ``fn`` per repeat, of ``base`` (timed right before and right after each run of ``fn``)
    and the per-repeat ratio of ``fn`` to the mean of its two ``base`` timings: a shared machine's slow
    and fast phases then cancel out of each ratio."""
    fn()  # warm-up (cudnn autotune, allocator, fx trace cache)
    base()
    runs, bases, ratios = [], [], []
    for _ in range(repeats):
        before = seconds(base, device)
        runs.append(seconds(fn, device))
        after = seconds(base, device)
        bases += [before, after]
        ratios.append(2 * runs[-1] / (before + after))
    return runs, bases, ratios


def timed_against_floor(
    fn: Callable[[], object], base: Callable[[], object], device: torch.device, repeats: int
) -> tuple[float, float, float]:
    """Median seconds of ``fn``, median seconds of ``base`` and the median of their per-repeat ratio."""
    runs, bases, ratios = interleaved(fn, base, device, repeats)
    return statistics.median(runs), statistics.median(bases), statistics.median(ratios)


def machine(device: torch.device) -> str:
    """The device in words: the GPU's name (and cuDNN's TF32 setting), or the CPU's model and torch's threads."""
    if device.type == "cuda":  # PyTorch's default lets cuDNN convolutions use TF32 tensor cores
        return f"{torch.cuda.get_device_name(device)} (cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'})"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        model = names[0] if names else model
    return f"CPU ({model}, {torch.get_num_threads()} threads)"


def write_rows(out: Path, rows: list[dict], header: str, columns: dict[str, Callable[[dict], str]]) -> None:
    """``out``.csv (every field of ``rows``) and ``out``.md (``header``, then a table of ``columns``:
    title -> cell of a row), each replaced in one rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out.with_suffix(".csv"))
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r) for cell in columns.values()) + " |" for r in rows]
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out.with_suffix(".md"))


@contextlib.contextmanager
def patched(replacements: Sequence[tuple[object, str, object]]) -> Iterator[None]:
    """Each ``(module, attribute, value)`` set in order for the block (a later one for the same
    attribute wins); every attribute restored on exit, also after an error."""
    saved = [(module, name, getattr(module, name)) for module, name, _ in replacements]
    try:
        for module, name, value in replacements:
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


@contextlib.contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """The model's parameters with ``requires_grad`` off (restored on exit): autograd then neither
    keeps what weight gradients need nor computes them."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def one_pass(model: torch.nn.Module, x: torch.Tensor) -> None:
    """One forward and backward to the input, without weight gradients: the unit of the floor."""
    inp = x.detach().requires_grad_(True)
    with frozen(model):
        model(inp)[:, 0].sum().backward(inputs=[inp])


# passes of one_pass each method needs at the least (None: not a whole number of full passes, e.g.
# NeuronIntGrad's downstream recomputations); its floor is that many passes
PASSES: dict[str, int | None] = {
    "NeuronMCT": 2,  # score, then PathwayGrad through the masked network
    "NeuronIntGrad": None,
    "Greedy (99 rounds, authors' loop)": FULL["greedy_rounds"] + 1,  # a re-scoring pass per round, then the map
    "Random": 1,  # the map only
    "DGR (1000 it, init=1)": FULL["dgr_iterations"] + 1,  # a gated pass per iteration, then the map
}


def criteria(quick: bool) -> dict[str, tuple[str, str, dict, float]]:
    """label -> (method, variant, options, scale factor applied to the measured time)."""
    rounds = 3 if quick else FULL["greedy_rounds"]
    iterations = 5 if quick else FULL["dgr_iterations"]
    return {
        "NeuronMCT": ("neuron_mct", "intended", {}, 1.0),
        "NeuronIntGrad": ("neuron_intgrad", "intended", {"steps": FULL["steps"]}, 1.0),
        "Greedy (99 rounds, authors' loop)": ("greedy", "original_code", {"rounds": rounds}, FULL["greedy_rounds"] / rounds),
        "Random": ("random", "intended", {}, 1.0),
        "DGR (1000 it, init=1)": ("dgr", "intended", {"iterations": iterations, "init": "1"}, FULL["dgr_iterations"] / iterations),
    }


def reference(label: str, model: torch.nn.Module, x1: torch.Tensor, quick: bool) -> Callable[[], object] | None:
    """The literal batch-1 reference of a criterion, followed by PathwayGrad through its masks."""
    names = R.site_names(model, x1)

    def with_grad(masks: list[torch.Tensor]) -> None:
        path = pw.Pathway.from_masks([m.unsqueeze(0) for m in masks], names)
        pw.pathway_grad(model, x1, path)

    if label == "NeuronMCT":
        return lambda: with_grad(R.mct_masks(model, x1, 90.0)[0])
    if label == "NeuronIntGrad":
        return lambda: with_grad(R.intgrad_masks(model, x1, 90.0)[0])
    if label.startswith("Greedy"):
        rounds = 3 if quick else FULL["greedy_rounds"]
        return lambda: with_grad(R.greedy_original_history(model, x1, rounds)[-1])
    if label.startswith("DGR"):
        iterations = 5 if quick else FULL["dgr_iterations"]
        return lambda: with_grad(R.dgr_reference(model, x1, 90.0, iterations=iterations)["masks"])
    return None


def write_tables(out: Path, rows: list[dict], header: str) -> None:
    """``out``.csv and ``out``.md, each replaced in one rename."""

    def approx(r: dict) -> str:
        return "~" if r["extrapolated"] else ""

    write_rows(out, rows, header, {
        "model": lambda r: r["model"],
        "batch": lambda r: str(r["batch"]),
        "criterion + PathwayGrad": lambda r: r["criterion"],
        "ms / image": lambda r: f"{approx(r)}{r['ms_per_image']:.1f}",
        "one pass ms / image": lambda r: f"{r['pass_ms']:.1f}",
        "passes": lambda r: f"{r['passes']:.2f}",
        "passes needed": lambda r: "" if r["passes_needed"] is None else str(r["passes_needed"]),
        "x floor": lambda r: "" if r["x_floor"] is None else f"{r['x_floor']:.2f}",
        "batch-1 reference ms": lambda r: "" if r["reference_ms"] is None else f"{approx(r)}{r['reference_ms']:.1f}",
        "peak memory GiB": lambda r: f"{r['memory_gib']:.2f}",
    })  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet50", "vgg16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32, 64])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--criteria", nargs="+", default=None, help="labels to run (default all)")
    parser.add_argument("--quick", action="store_true", help="few Greedy rounds / DGR iterations, scaled linearly")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = machine(device)
    out = args.out or ROOT / "benchmarks" / "results" / ("cuda" if device.type == "cuda" else "cpu")
    header = (
        f"Measured on {name}, torch {torch.__version__}, {args.size} px, fp32, random-init weights; "
        f"ms per image, median of {args.repeats}. One pass: forward + backward to the input without weight "
        f"gradients, timed before and after each repeat; passes: the method's time in passes (median of the "
        f"per-repeat ratios); x floor: over the passes the method needs. \"~\": scaled linearly from a few "
        f"rounds/iterations. "
        + ("Peak memory: torch.cuda.max_memory_allocated per row." if device.type == "cuda"
           else "Peak memory: the process's peak resident set so far (it only grows down the table).")
    )
    table = criteria(args.quick)
    if args.criteria:
        table = {k: v for k, v in table.items() if k in args.criteria}
    rows = []
    for model_name in args.models:
        model = pw.load_model(model_name, pretrained=False, device=device)
        for batch in args.batch_sizes:
            x = torch.randn(batch, 3, args.size, args.size, device=device)
            for label, (method, variant, options, scale) in table.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)

                def run() -> None:
                    path = pw.extract_pathway(model, x, method, 90.0, variant=variant, **options)
                    pw.pathway_grad(model, x, path)

                run_s, base_s, ratio = timed_against_floor(run, lambda: one_pass(model, x), device, args.repeats)
                needed = PASSES.get(label)
                per_image, base = run_s / batch * scale, base_s / batch
                memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                          else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
                ref = None
                if batch == 1 and not args.no_reference:
                    fn = reference(label, model, x[:1], args.quick)
                    ref = None if fn is None else seconds(fn, device) * scale
                rows.append({
                    "model": model_name, "batch": batch, "criterion": label,
                    "ms_per_image": per_image * 1e3, "pass_ms": base * 1e3, "passes": ratio * scale,
                    "passes_needed": needed, "x_floor": None if needed is None else ratio * scale / needed,
                    "reference_ms": None if ref is None else ref * 1e3,
                    "extrapolated": scale != 1.0, "memory_gib": memory,
                })
                r = rows[-1]
                print(f"{model_name:12s} b={batch:<3d} {label:36s} {'~' if r['extrapolated'] else ' '}{r['ms_per_image']:10.1f} ms"
                      f"  one pass {r['pass_ms']:7.1f} ms  {r['passes']:7.1f} passes"
                      + (f"  reference {r['reference_ms']:10.1f} ms" if ref is not None else ""), flush=True)
                write_tables(out, rows, header)  # after every row: a run cut short still leaves its table
            del x
    print(f"wrote {out.with_suffix('.md')} and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
