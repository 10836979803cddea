"""How far another machine's rounding moves an experiment's threshold decisions, image by image.

The bounds that ``verify`` allows per criterion (:mod:`pathlib_pw.criteria.spec`: capacity, band) come
from measurements like this one. Each image's part (``image_part``) is computed here with its decisions
recorded, then again in a subprocess that simulates another CPU (no SIMD, one thread) replaying them,
both with every bound widened ``--factor`` times (:func:`pathlib_pw.decisions.widened`), so that the
changes are counted instead of refused. Prints per criterion the most neurons changed in one decision
(as a share of all neurons) and the farthest from the cut (x scale), and for chaotic criteria the
lowest overlap.

    python scripts/measure_rounding.py EXPERIMENT [--images 0 1 ...] [--factor 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from pathlib_pw import decisions, experiments
from pathlib_pw.experiments import _parts, get_config, run
from pathlib_pw.runner import cache
from pathlib_pw.runner.contract import unit_count


def _compute(experiment: str, profile: str, image: int, factor: float, log_path: Path, replay: bool) -> list[dict]:
    config = _parts(experiment).image_part(get_config(experiment, profile), image)
    with decisions.widened(factor):
        if not replay:
            with decisions.recording(only=[str(image)]) as log:
                run(experiment, config, progress=False)
            log.save(log_path)
            return []
        with decisions.replaying(decisions.DecisionLog.load(log_path), complete=False) as report:
            run(experiment, config, progress=False)
    return [
        {"key": c.key, "kind": c.kind, "changed": c.changed, "band": c.worst_band, "overlap": c.overlap, "problem": c.problem}
        for c in report.checks
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=sorted(experiments.EXPERIMENTS))
    parser.add_argument("--profile", default="book", choices=experiments.PROFILES)
    parser.add_argument("--images", type=int, nargs="*", default=None)
    parser.add_argument("--factor", type=float, default=20.0)
    parser.add_argument("--replay", metavar="LOG", help=argparse.SUPPRESS)  # the subprocess's role
    parser.add_argument("--image", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay:
        print(json.dumps(_compute(args.experiment, args.profile, args.image, args.factor, Path(args.replay), True)))
        return 0
    config = get_config(args.experiment, args.profile)
    images = args.images if args.images is not None else list(range(unit_count(config)))
    worst: dict[str, dict[str, float]] = defaultdict(lambda: {"changed": 0, "band": 0.0, "overlap": 1.0, "decisions": 0})
    neurons: dict[str, int] = {}
    for image in images:
        with tempfile.TemporaryDirectory() as tmp:
            log_path = Path(tmp) / "log.npz"
            _compute(args.experiment, args.profile, image, args.factor, log_path, False)
            recorded = decisions.DecisionLog.load(log_path)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    args.experiment,
                    "--profile",
                    args.profile,
                    "--factor",
                    str(args.factor),
                    "--replay",
                    str(log_path),
                    "--image",
                    str(image),
                ],
                env=cache.other_cpu(),
                capture_output=True,
                text=True,
                check=True,
            )
        for c in json.loads(out.stdout.strip().splitlines()[-1]):
            scope = c["key"].split("|")[0]
            w = worst[scope]
            neurons[scope] = recorded.records[c["key"]].neurons
            w["decisions"] += 1
            w["changed"] = max(w["changed"], c["changed"])
            w["band"] = max(w["band"], c["band"])
            if c["overlap"] is not None:
                w["overlap"] = min(w["overlap"], c["overlap"])
            if c["problem"]:
                print(f"image {image} {c['key']}: {c['problem']}")
        print(f"image {image} done", flush=True)
    print(
        f"{args.experiment}/{args.profile}, images {images}, bounds x{args.factor:g} (no SIMD, 1 thread, against this machine):"
    )
    for scope, w in sorted(worst.items()):
        print(
            f"  {scope:<40} decisions {int(w['decisions']):>4}  most changed {int(w['changed']):>6} "
            f"({w['changed'] / neurons[scope]:.2e} of {neurons[scope]})  farthest {w['band']:.2f} x scale"
            + (f"  lowest overlap {w['overlap']:.4f}" if w["overlap"] < 1 else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
