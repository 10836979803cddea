"""NeuronMCT + PathwayGrad with each step of issue 31's second to fifth rounds undone, against the code as it is.

    python benchmarks/compare_steps.py                     # MobileNetV2 batch 8, 9 repeats
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 python benchmarks/compare_steps.py

The steps (each gives the same maps, checked here on every call): the selection by a sampled
bracket instead of a sort of each image's scores (``selection``); counting kept neurons row by row
instead of numpy's count along an axis (``count``); the scores written over the gradients instead
of into fresh memory (``scores``); the selection's NaN found by its passes' counts instead of by a
pass of its own, a maximum over every site (``nan_pass`` puts that pass back on top of the new
counts, so it measures the maximum's pass alone; the even sample has no variant); the masks' float
copies converted from their bytes instead of from bool (``copies``: only where a product is made,
so alone it changes nothing on MobileNetV2 since ``zeroed_inputs``); the masks written by the
bracket's own pass instead of by a comparison with the cut after it (``bracket_masks``); and removed
neurons zeroed in the input of an in-place rectifier instead of a product with a float copy of the
mask after it (``zeroed_inputs``); the realized sparsity from the selection's own counts instead of a
count of the masks (``counted``); the empty-path check by numpy's ``any`` site by site, stopping
once every image keeps a neuron, instead of a count of every mask (``empty_scan``); the input's
finiteness told by its sum before the element-wise test instead of by that test alone
(``finite_sum``; undone, the sum still runs after the test, 0.04 ms a call); and the bracket's two order statistics of its sample and the one among its kept
values found by numpy's partition instead of a sort (``partition``). Each variant runs with one
step undone (``all``: every kept step undone; ``none`` is the code as it is), in one process,
every repeat timing the floor and then each variant in turn; the table gives each variant's
smallest ratio to the floor around it, the spread, the median, and the MB faulted in
per image (see ``bench_floor.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_criteria import machine, one_pass, patched, seconds  # noqa: E402
from bench_floor import faulting, malloc_setting  # noqa: E402

import pathlib_pw as pw  # noqa: E402
from pathlib_pw import pathway, selection, sites, thresholds  # noqa: E402
from pathlib_pw.criteria import checks, mct  # noqa: E402


def count_along_axis(mask: torch.Tensor, by_numpy: bool) -> torch.Tensor:
    rows = mask.flatten(1)
    if not by_numpy:
        return rows.sum(1)
    return torch.from_numpy(np.count_nonzero(rows.numpy(), axis=1).astype(np.int64))


def bracket_after_a_nan_pass(parts, k, samples, above):  # type: ignore[no-untyped-def]
    if any(np.isnan(p.max()) for p in parts if p.size):
        return selection._sorted_kth(parts, k), None
    return BRACKETED(parts, k, samples, above)


def sorted_selection(parts, k, samples, above):  # type: ignore[no-untyped-def]
    return selection._sorted_kth(parts, k), None


def masks_compared_after(per_site, k):  # type: ignore[no-untyped-def]
    cut = selection.kth_smallest(per_site, k)
    masks = [s > selection.per_image(cut, s) for s in per_site]
    return cut, masks, selection.add_all(selection.count_true(m) for m in masks)


def masks_counted(scores, sparsity, checkpoint, near_zero):  # type: ignore[no-untyped-def]
    masks, cut, _ = THRESHOLDED(scores, sparsity, checkpoint, near_zero)
    return masks, cut, None  # the pathway counts its masks


def counted_empty(masks):  # type: ignore[no-untyped-def]
    return selection.add_all(selection.count_true(m) for m in masks).cpu() == 0


def sort_in_place(values, ranks):  # type: ignore[no-untyped-def]
    values.sort()


def finite_by_elements(x, name="x"):  # type: ignore[no-untyped-def]
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return CHECK_INPUT(x, name)


def copies_from_bool(masks, device, dtype):  # type: ignore[no-untyped-def]
    return [m.to(device=device, dtype=dtype) for m in masks]


def products_only(self, index, x):  # type: ignore[no-untyped-def]
    return False


BRACKETED = selection._bracketed
THRESHOLDED = thresholds._thresholded
CHECK_INPUT = sites.check_input

# step -> (module, attribute, its former implementation)
STEPS: dict[str, tuple[object, str, Callable[..., object]]] = {
    "selection": (selection, "_bracketed", sorted_selection),
    "count": (selection, "_count_true", count_along_axis),
    "scores": (mct, "_writable", lambda grads: [False] * len(grads)),
    "nan_pass": (selection, "_bracketed", bracket_after_a_nan_pass),
    "copies": (pathway, "float_copies", copies_from_bool),
    "bracket_masks": (thresholds, "above_kth", masks_compared_after),
    "zeroed_inputs": (pathway.Masking, "zero_removed_inputs", products_only),
    "counted": (thresholds, "_thresholded", masks_counted),
    "empty_scan": (checks, "keeps_nothing", counted_empty),
    "finite_sum": (sites, "check_input", finite_by_elements),
    "partition": (selection, "_partition", sort_in_place),
}


# the sort (selection undone) last: it replaces the bracket, NaN pass or not
KEPT_STEPS = ["count", "scores", "nan_pass", "copies", "bracket_masks", "zeroed_inputs", "counted", "empty_scan", "finite_sum", "partition", "selection"]


def undone(steps: list[str]) -> contextlib.AbstractContextManager[None]:
    """The former implementation of each step in place for the block."""
    return patched([STEPS[s] for s in steps])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2", choices=["mobilenet_v2", "vgg16"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--undo", nargs="+", choices=[*STEPS, "all"], default=[*STEPS, "all"],
                        help="the variants beside the code as it is (default: each step, then all)")  # fmt: skip
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    device = torch.device("cpu")
    model = pw.load_model(args.model, pretrained=args.model == "mobilenet_v2")
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    variants = {"none": [], **{s: ([s] if s != "all" else KEPT_STEPS) for s in args.undo}}
    results: dict[str, torch.Tensor] = {}

    def run(name: str) -> None:
        with undone(variants[name]):
            path = pw.extract_pathway(model, x, "neuron_mct", 90.0)
            maps = pw.pathway_grad(model, x, path)
        if name in results and not torch.equal(results[name], maps):
            raise AssertionError(f"variant {name} changed its map between calls")
        results.setdefault(name, maps)
        if not torch.equal(results["none"], maps):
            raise AssertionError(f"variant {name} computes another map than the code as it is")

    def floor() -> None:
        one_pass(model, x)
        one_pass(model, x)

    times: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    faults: dict[str, list[int]] = {name: [] for name in [*variants, "floor"]}
    for name in variants:  # warm-up
        run(name)
    for _ in range(args.repeats):
        for name in variants:
            before = seconds(faulting(floor, faults["floor"]), device)
            times[name].append(seconds(faulting(lambda name=name: run(name), faults[name]), device))
            ratios[name].append(times[name][-1] / before)
    page_mb = resource.getpagesize() / 1e6 / args.batch
    print(f"{machine(device)}, torch {torch.__version__}, {malloc_setting()}; {args.model} batch {args.batch}, "
          f"{args.size} px, 90 % sparsity, {args.repeats} repeats; ratio: the variant over the two-pass floor timed "
          "right before it")  # fmt: skip
    print("| steps undone | x floor (min) | spread | median | ms / image (min) | faulted MB / image |")
    print("|---|---|---|---|---|---|")
    for name in variants:
        undone_steps = ", ".join(variants[name]) or "none (the code as it is)"
        print(f"| {undone_steps} | {min(ratios[name]):.2f} | {min(ratios[name]):.2f}..{max(ratios[name]):.2f} | "
              f"{statistics.median(ratios[name]):.2f} | {min(times[name]) / args.batch * 1e3:.1f} | "
              f"{statistics.mean(faults[name]) * page_mb:.0f} |")  # fmt: skip
    print()  # not a row of the table
    print(f"floor: {statistics.mean(faults['floor']) * page_mb:.0f} MB faulted in per image and call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
