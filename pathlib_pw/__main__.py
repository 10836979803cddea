"""``python -m pathlib_pw run EXPERIMENT --profile PROFILE [--device cpu|cuda] [--images N] [--force]``."""

from __future__ import annotations

import argparse
import sys

from pathlib_pw import experiments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pathlib_pw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compute an experiment and cache its results under data/results/")
    run.add_argument("experiment", choices=sorted(experiments.EXPERIMENTS) + ["all"])
    run.add_argument("--profile", choices=experiments.PROFILES, default="book")
    run.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    run.add_argument("--images", type=int, default=None, help="only the first N images (not cached)")
    run.add_argument("--force", action="store_true", help="recompute even when the cache matches")
    verify = sub.add_parser("verify", help="recompute part of a cached result and compare")
    verify.add_argument("experiment", choices=sorted(experiments.EXPERIMENTS) + ["all"])
    verify.add_argument("--profile", choices=experiments.PROFILES, default="book")
    verify.add_argument(
        "--images", type=int, default=None, help="the first N images (default: all the cache records decisions for)"
    )
    verify.add_argument("--device", default=None, help="recompute on this device (default: the cache's)")
    args = parser.parse_args(argv)
    names = sorted(experiments.EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    failed = False
    for name in names:
        if args.command == "run":
            overrides = {}
            if args.images is not None:
                part = experiments.contract.parts(name, experiments.EXPERIMENTS[name])
                overrides = vars(part.subset(experiments.get_config(name, args.profile), args.images))
            results = experiments.load_or_run(name, args.profile, args.device, args.force, **overrides)
            print(f"{name}/{args.profile}: {results.meta.get('seconds', 'cached')} s on {results.meta.get('device')}")
        else:
            result = experiments.verify(name, args.profile, args.images, args.device)
            print(result.text())
            failed = failed or not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
