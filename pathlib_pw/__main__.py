"""``python -m pathlib_pw run EXPERIMENT... | all --profile PROFILE [--device cpu|cuda] [--force]``; the same
under ``torchrun --nproc_per_node=N -m pathlib_pw run ...`` shares the per-image experiments among N
processes (:mod:`pathlib_pw.experiments.sharding`). ``python -m pathlib_pw verify EXPERIMENT|all``
recomputes part of a cache and compares."""

from __future__ import annotations

import argparse
import os
import sys

from pathlib_pw import experiments
from pathlib_pw.cifar10 import CIFAR10_ENV
from pathlib_pw.data import IMAGENET_VAL_ENV


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pathlib_pw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    names = sorted(experiments.EXPERIMENTS) + ["all"]
    run = sub.add_parser("run", help="compute an experiment and cache its results under data/results/")
    run.add_argument("experiment", nargs="+", choices=names, help="one or more experiments, or all")
    run.add_argument("--profile", choices=experiments.PROFILES, default="book")
    run.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (cuda:LOCAL_RANK under torchrun)")
    run.add_argument("--images", type=int, default=None, help="only the first N images (not cached)")
    run.add_argument("--force", action="store_true", help="recompute even when the cache matches; discard finished chunks")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    verify = sub.add_parser("verify", help="recompute part of a cached result and compare")
    verify.add_argument("experiment", nargs="+", choices=names, help="one or more experiments, or all")
    verify.add_argument("--profile", choices=experiments.PROFILES, default="book")
    verify.add_argument(
        "--images", type=int, default=None, help="the first N images (default: all the cache records decisions for)"
    )
    verify.add_argument("--device", default=None, help="recompute on this device (default: the cache's)")
    for command in (run, verify):
        command.add_argument("--imagenet-val", metavar="DIR", help=f"ImageNet validation folder (else ${IMAGENET_VAL_ENV})")
        command.add_argument("--cifar10", metavar="DIR", help=f"CIFAR-10 python-batches folder (else ${CIFAR10_ENV})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.imagenet_val:
        os.environ[IMAGENET_VAL_ENV] = args.imagenet_val
    if args.cifar10:
        os.environ[CIFAR10_ENV] = args.cifar10
    names = sorted(experiments.EXPERIMENTS) if "all" in args.experiment else list(dict.fromkeys(args.experiment))
    if args.command == "verify":
        failed = False
        for name in names:
            result = experiments.verify(name, args.profile, args.images, args.device)
            print(result.text())
            failed = failed or not result.ok
        return 1 if failed else 0
    from pathlib_pw.experiments import requirements, sharding

    try:
        requirements.check(names, args.profile)  # everything missing, in one message, before any work
    except FileNotFoundError as missing:
        print(missing, file=sys.stderr)
        return 2
    if args.images is not None:  # a variation for a look, computed here and never cached
        for name in names:
            part = experiments.contract.parts(name, experiments.EXPERIMENTS[name])
            overrides = vars(part.subset(experiments.get_config(name, args.profile), args.images))
            results = experiments.load_or_run(name, args.profile, args.device, args.force, not args.quiet, **overrides)
            print(f"{name}/{args.profile}: {results.meta.get('seconds')} s on {results.meta.get('device')} (not cached)")
        return 0
    with sharding.processes() as procs:
        for name in names:
            results = sharding.run_experiment(name, args.profile, procs.device(args.device), args.force, not args.quiet, procs)
            if procs.rank == 0:
                print(f"{name}/{args.profile}: {results.meta.get('seconds')} s on {results.meta.get('device')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
