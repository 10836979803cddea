"""Page faults and seconds per image of a criterion + PathwayGrad at several batch sizes.

    python benchmarks/count_page_faults.py --model vgg16 --batch-sizes 1 2 4 --repeats 3
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 python benchmarks/count_page_faults.py ...

Fresh memory costs a page fault per 4 KiB page on first touch. Large per-image tensors (VGG16: 13.6 M
neurons, 54 MB per float tensor) are allocated and freed on every call: glibc serves blocks above 32
MB with mmap and returns them to the system when freed, so every call faults them in again. The
counts hardly depend on other load on the machine; the times do (time on a quiet machine only). The
second line keeps freed memory in the process (no mmap, no trimming), which shows what the faults
cost. Random-init weights, 224 px.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pathlib_pw as pw  # noqa: E402


def faults_per_image(model: torch.nn.Module, x: torch.Tensor, method: str, repeats: int) -> list[tuple[float, float, float]]:
    """(minor page faults, major page faults, seconds) per image of each of ``repeats`` calls, after
    one warm-up call."""

    def run() -> None:
        path = pw.extract_pathway(model, x, method, 90.0)
        pw.pathway_grad(model, x, path)

    run()
    counts = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        n = len(x)
        counts.append(((after.ru_minflt - before.ru_minflt) / n, (after.ru_majflt - before.ru_majflt) / n, seconds / n))
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--method", default="neuron_mct")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"threads {args.threads}, glibc malloc settings {allocator or 'default'}", flush=True)
    model = pw.load_model(args.model, pretrained=False)
    for batch in args.batch_sizes:
        counts = faults_per_image(model, torch.randn(batch, 3, args.size, args.size), args.method, args.repeats)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{args.model} batch {batch}: minor faults per image {[round(c[0]) for c in counts]}, "
              f"major {[round(c[1]) for c in counts]}, seconds per image {[round(c[2], 3) for c in counts]}; "
              f"peak resident set so far {peak:.2f} GiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
