"""Time the per-image order statistic behind the global threshold, by method, on one device.

    python benchmarks/bench_threshold.py --device cuda --batch-sizes 1 8 64
    python benchmarks/bench_threshold.py --device cpu --batch-sizes 1 4 --neurons 6105792

``torch.kthvalue`` (one thread block per row on a GPU), :func:`pathlib_pw.selection.sampled_kth` (the
GPU default) and, on the CPU, :func:`pathlib_pw.selection.kth_smallest` (numpy, one image per thread).
Scores are |N(0,1) x N(0,1)| with 40 % exact zeros, like |activation x gradient| after rectifiers;
``--neurons`` defaults to VGG16's 13.6 million rectifier outputs per 224 px image. Every method must
return the same values; the script checks it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_criteria import seconds  # noqa: E402

from pathlib_pw.selection import kth_smallest, kthvalue_rows, sampled_kth  # noqa: E402

VGG16_NEURONS = 13_555_712


def median_seconds(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up, and the values the methods must agree on
    return statistics.median(seconds(fn, device) for _ in range(repeats)), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--neurons", type=int, default=VGG16_NEURONS)
    parser.add_argument("--sparsity", type=float, default=90.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    methods: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "kthvalue": kthvalue_rows,
        "sampled_kth": sampled_kth,
    }
    if device.type == "cpu":
        methods["kth_smallest (numpy)"] = lambda flat, k: kth_smallest([flat], k)
    print(f"{args.neurons} scores per image, sparsity {args.sparsity} %, {device}; ms per image (median of {args.repeats})")
    print(f"{'batch':>5} " + " ".join(f"{name:>22}" for name in methods))
    for batch in args.batch_sizes:
        g = torch.Generator(device=device).manual_seed(batch)
        flat = (torch.randn(batch, args.neurons, device=device, generator=g)
                * torch.randn(batch, args.neurons, device=device, generator=g)).abs()
        flat[torch.rand(batch, args.neurons, device=device, generator=g) < 0.4] = 0
        k = torch.full((batch,), int(args.sparsity / 100 * (args.neurons - 1)))
        results = {name: median_seconds(lambda fn=fn: fn(flat, k), device, args.repeats) for name, fn in methods.items()}
        first = next(iter(results.values()))[1].cpu()
        if any(not torch.equal(out.cpu(), first) for _, out in results.values()):
            raise SystemExit(f"batch {batch}: the methods disagree: " + str({n: o.cpu() for n, (_, o) in results.items()}))
        print(f"{batch:>5} " + " ".join(f"{seconds / batch * 1e3:>22.3f}" for seconds, _ in results.values()), flush=True)
        del flat
    return 0


if __name__ == "__main__":
    sys.exit(main())
