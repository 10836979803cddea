"""Where NeuronMCT + PathwayGrad spends its time: each part of one call, against one pass of the floor.

    python benchmarks/profile_parts.py                     # MobileNetV2 batch 8, 9 repeats
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 python benchmarks/profile_parts.py

Each part is timed by wrapping the function that does it (wall clock, so numpy's threads and torch's
intra-op threads count as they run): the first pass (forward and backward for every site's activation
and gradient), the scores, the selection of each image's cut with the masks its pass writes and the
rest of the threshold, the second pass through the masked network (the connectivity check, whose
input gradient PathwayGrad reuses) with the masks' application inside it (removed neurons zeroed in
the rectifiers' inputs), and PathwayGrad's
map from that gradient (``pathway_grad`` as a whole); "everything else" is the call's time less those parts (validation, the
pathway's bookkeeping, Python). Each repeat times two floor passes and then one call; the table gives
each part's smallest time over the repeats, in ms per image, and the median. The parts' minima come
from different repeats, so they need not add up to the call's minimum.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_criteria import machine, one_pass, patched  # noqa: E402
from bench_floor import malloc_setting  # noqa: E402

import pathlib_pw as pw  # noqa: E402
from pathlib_pw import pathway, thresholds  # noqa: E402
from pathlib_pw.criteria import checks, mct  # noqa: E402
from pathlib_pw.criteria.checks import PathwayWarning  # noqa: E402

# part -> (module whose attribute is called, attribute); the order is the table's
PARTS: dict[str, tuple[object, str]] = {
    "first pass: activations and gradients": (mct, "activations_and_gradients"),
    "scores: absolute activation x gradient": (mct, "_times_abs"),
    "threshold: each cut, the masks above it, their counts": (thresholds, "above_kth"),
    "threshold: all of it": (thresholds, "_thresholded"),
    "second pass: through the masked network": (checks, "input_gradient_through"),
    "of which zeroing the removed neurons": (pathway, "zero_removed_"),
    "PathwayGrad: the map from the kept gradient": (pw, "pathway_grad"),
}
CALL = "the whole call"
OTHER = "everything else"
FLOOR = "one pass of the floor"
# the parts that do not overlap: the call less their sum is "everything else"
DISJOINT = ("first pass: activations and gradients", "scores: absolute activation x gradient", "threshold: all of it",
            "second pass: through the masked network", "PathwayGrad: the map from the kept gradient")  # fmt: skip


def timed(spent: dict[str, float]) -> contextlib.AbstractContextManager[None]:
    """Every part's function wrapped to add its wall-clock seconds to ``spent[part]``; unwrapped after."""

    def wrap(part: str, fn: Callable[..., object]) -> Callable[..., object]:
        def timed_call(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - start

        return timed_call

    return patched([(module, name, wrap(part, getattr(module, name))) for part, (module, name) in PARTS.items()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sparsity", type=float, default=90.0)
    args = parser.parse_args()
    model = pw.load_model("mobilenet_v2")
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))

    def call() -> None:
        path = pw.extract_pathway(model, x, "neuron_mct", args.sparsity)
        pw.pathway_grad(model, x, path)

    rows: dict[str, list[float]] = defaultdict(list)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PathwayWarning)  # a 64 px smoke run may disconnect
        call()
        one_pass(model, x)
        for _ in range(args.repeats):
            for _ in range(2):
                start = time.perf_counter()
                one_pass(model, x)
                rows[FLOOR].append(time.perf_counter() - start)
            spent: dict[str, float] = defaultdict(float)
            with timed(spent):
                start = time.perf_counter()
                call()
                whole = time.perf_counter() - start
            rows[CALL].append(whole)
            for part in PARTS:
                rows[part].append(spent[part])
            rows[OTHER].append(whole - sum(spent[part] for part in DISJOINT))
    per_image = 1000.0 / args.batch
    print(
        f"NeuronMCT + PathwayGrad by part, measured on {machine(torch.device('cpu'))}, torch {torch.__version__}, "
        f"{malloc_setting()}: MobileNetV2 (ImageNet weights), batch {args.batch}, {args.size} px, {args.sparsity:g} % "
        f"sparsity, float32; each part's smallest and median time over {args.repeats} repeats, in ms per image."
    )
    print()
    print("| part | ms / image (min) | median |")
    print("|---|---|---|")
    for part in (CALL, *PARTS, OTHER, FLOOR):
        values = rows[part]
        print(f"| {part} | {min(values) * per_image:.3f} | {statistics.median(values) * per_image:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
