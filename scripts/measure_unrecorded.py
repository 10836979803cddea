"""How far another machine moves the images of a cache that holds no decision records for them.

An experiment that records its first image's decisions only (``RECORD_EVERY_IMAGE = False``) lets
``verify`` recompute its other images with their decisions made afresh, compared with the allowances
of its ``unrecorded_tolerances``. Those allowances come from measurements like this one: each image's
part is recomputed without records in a subprocess that simulates another CPU (no SIMD, one thread)
and compared with the cache. Prints per array the largest change, the largest change relative to
the allowance (over 1: the allowance is too small) and where that sits.

    python scripts/measure_unrecorded.py EXPERIMENT [--images 1 2 ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict

import numpy as np

from pathlib_pw import experiments
from pathlib_pw.experiments import _parts, get_config, image_slice, run
from pathlib_pw.runner import cache
from pathlib_pw.runner.contract import unit_count
from pathlib_pw.runner.verification import EXACT, FLOATS


def _measure(experiment: str, profile: str, image: int) -> dict[str, dict[str, object]]:
    """Per array: the largest change of image ``image`` recomputed without records, and the largest
    change / allowance with its index."""
    part = _parts(experiment)
    config = get_config(experiment, profile)
    subset = part.image_part(config, image)
    fresh, _ = run(experiment, subset, progress=False)
    cached = cache.load(cache.results_root() / profile / experiment).arrays
    expected = part.cached_part(image_slice(cached, set(part.module.PER_IMAGE), image), subset)
    allowances = part.unrecorded_tolerances(expected, subset)
    out: dict[str, dict[str, object]] = {}
    for name in sorted(expected):
        a, b = np.asarray(fresh[name]), np.asarray(expected[name])
        if a.dtype.kind not in "fcb" or b.dtype.kind not in "fcb":
            out[name] = {"largest": float(np.count_nonzero(a != b)), "ratio": float(np.count_nonzero(a != b)), "at": None}
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        diff = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))
        diff = np.nan_to_num(diff, nan=np.inf)
        rule = part.rules.get(name, FLOATS if b.dtype.kind in "fc" else EXACT)
        allowed = rule.atol + rule.rtol * np.abs(np.nan_to_num(b)) + allowances.get(name, 0.0)
        ratio = np.where(diff > 0, diff / np.maximum(allowed, 1e-300), 0.0)
        at = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
        out[name] = {
            "largest": float(diff.max()) if diff.size else 0.0,
            "ratio": float(ratio.max()) if ratio.size else 0.0,
            "at": [int(i) for i in at],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=sorted(experiments.EXPERIMENTS))
    parser.add_argument("--profile", default="book", choices=experiments.PROFILES)
    parser.add_argument("--images", type=int, nargs="*", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # the subprocess's role
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps({image: _measure(args.experiment, args.profile, image) for image in args.images}))
        return 0
    units = unit_count(get_config(args.experiment, args.profile))
    images = args.images if args.images is not None else list(range(1, units))
    command = [sys.executable, __file__, args.experiment, "--profile", args.profile, "--child", "--images"]
    done = subprocess.run(
        command + [str(i) for i in images], env=cache.other_cpu(), capture_output=True, text=True, check=True
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    worst: dict[str, dict[str, object]] = defaultdict(lambda: {"largest": 0.0, "ratio": 0.0, "at": None, "image": None})
    for image, arrays in measured.items():
        for name, m in arrays.items():
            w = worst[name]
            w["largest"] = max(float(w["largest"]), float(m["largest"]))
            if float(m["ratio"]) >= float(w["ratio"]):
                w.update(ratio=m["ratio"], at=m["at"], image=image)
    print(f"{args.experiment}/{args.profile}, images {images} without records (no SIMD, 1 thread, against the cache):")
    for name, w in sorted(worst.items()):
        print(
            f"  {name:<22} largest change {float(w['largest']):<10.3g} largest / allowance {float(w['ratio']):<8.3g}"
            + (f" (image {w['image']}, index {w['at']})" if float(w["ratio"]) > 0 else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
