"""Page faults per image of a criterion + PathwayGrad at several batch sizes (counts, not times).

    python benchmarks/count_page_faults.py --model vgg16 --batch-sizes 1 2 4 --repeats 3

Fresh memory costs a page fault per 4 KiB page on first touch. Large per-image tensors (VGG16: 13.6 M
neurons, 54 MB per float tensor) are allocated and freed on every call, so the fault count per image
shows how much fresh memory a batch size costs; counts hardly depend on other load on the machine,
unlike times. Random-init weights, 224 px, one thread.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pathlib_pw as pw  # noqa: E402


def faults_per_image(model: torch.nn.Module, x: torch.Tensor, method: str, repeats: int) -> list[tuple[float, float]]:
    """(minor, major) page faults per image of each of ``repeats`` calls, after one warm-up call."""

    def run() -> None:
        path = pw.extract_pathway(model, x, method, 90.0)
        pw.pathway_grad(model, x, path)

    run()
    counts = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF)
        run()
        after = resource.getrusage(resource.RUSAGE_SELF)
        counts.append(((after.ru_minflt - before.ru_minflt) / len(x), (after.ru_majflt - before.ru_majflt) / len(x)))
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--method", default="neuron_mct")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = pw.load_model(args.model, pretrained=False)
    for batch in args.batch_sizes:
        counts = faults_per_image(model, torch.randn(batch, 3, args.size, args.size), args.method, args.repeats)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{args.model} batch {batch}: minor faults per image {[round(c[0]) for c in counts]}, "
              f"major {[round(c[1]) for c in counts]}; peak resident set so far {peak:.2f} GiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
