"""The book's experiments from the command line, and PathwayGrad on your own image.

  run      compute experiments and cache their results under data/results/PROFILE/ (a current
           cache is reused, not recomputed). Under torchrun --nproc_per_node=N -m pathlib_pw run ...
           the per-image experiments are shared among N processes.
  verify   recompute the first image(s) of a cached result with the installed code and compare.
  explain  PathwayGrad of an image file beside the baseline maps, saved as a figure.

Run "python -m pathlib_pw COMMAND --help" for a command's options and its list of experiments."""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from pathlib_pw import experiments
from pathlib_pw.cifar10 import CIFAR10_ENV
from pathlib_pw.data import IMAGENET_VAL_ENV
from pathlib_pw.runner import cache, contract

PROG = "python -m pathlib_pw"


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help (not for flags and options without a default, whose
    help says what happens when they are not given); descriptions and epilogs keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or action.required:
            return action.help
        return super()._get_help_string(action)


def _summary(module_file: str | None) -> str:
    """The first sentence of an experiment module's docstring as plain text (no reST, no asides)."""
    if not module_file:
        return ""
    try:
        doc = ast.get_docstring(ast.parse(Path(module_file).read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        return ""
    text = " ".join(doc.split())
    text = re.sub(r":\w+:`~?\.?([^`]*)`", r"\1", text)  # :mod:`.sanity` -> sanity
    text = text.replace("``", "").replace("`", "")
    while re.search(r"\s*\([^()]*\)", text):  # asides in parentheses, nested ones first
        text = re.sub(r"\s*\([^()]*\)", "", text)
    sentence = re.split(r"(?<=[.?:;])\s", text, maxsplit=1)[0].rstrip(".:;")
    return sentence if len(sentence) <= 78 else sentence[:77].rstrip() + "..."


def _cost(name: str, profile: str = "book") -> str:
    """What the cached ``profile`` result of ``name`` cost when it was computed, from its config.json."""
    try:
        header = json.loads((cache.results_root() / profile / name / "config.json").read_text())
        seconds = float(header["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return "not cached"
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    return f"{took} on {header.get('device', 'cpu')}"


def experiment_list(profile: str = "book") -> str:
    """One line per experiment: its name, what it computes and what its cached ``profile`` run cost."""
    names = sorted(experiments.EXPERIMENTS)
    width = max(len(n) for n in names)
    lines = [f"experiments (cost: the cached {profile} run, on the 2 CPU cores of the book's machine unless it says cuda):"]
    for name in names:
        lines.append(
            f"  {name:<{width}}  {_summary(getattr(experiments.EXPERIMENTS[name], '__file__', None))} [{_cost(name, profile)}]"
        )
    lines.append(f"  {'all':<{width}}  every experiment above")
    return "\n".join(lines)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    # the commands are listed once, by argparse; the docstring's list is for readers of the source
    first, *_, last = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(prog=PROG, description=f"{first}\n\n{last}", formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,verify,explain}")
    names = sorted(experiments.EXPERIMENTS) + ["all"]
    listing = experiment_list()
    run = sub.add_parser(
        "run",
        help="compute experiments and cache their results under data/results/",
        description="Compute experiments and cache their results; a current cache is read instead.",
        epilog=listing,
        formatter_class=_Formatter,
    )
    run.add_argument("experiment", nargs="+", choices=names, metavar="EXPERIMENT", help="one or more experiments (below), or all")
    run.add_argument("--profile", choices=experiments.PROFILES, default="book", help="the experiments' size")
    run.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N (cuda:LOCAL_RANK under torchrun)")
    run.add_argument("--images", type=int, default=None, help="only the first N images, computed and not cached")
    run.add_argument("--force", action="store_true", help="recompute even when the cache matches; discard finished chunks")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    verify = sub.add_parser(
        "verify",
        help="check a cached result's digests, recompute images of it and compare",
        description=(
            "Check every stored number of cached results against the digests recorded when they were computed, "
            "then recompute images with this code and compare: image 0 and one drawn by a seed that changes daily "
            "(the report names it), or --image K, or --all."
        ),
        epilog=listing,
        formatter_class=_Formatter,
    )
    verify.add_argument(
        "experiment", nargs="+", choices=names, metavar="EXPERIMENT", help="one or more experiments (below), or all"
    )
    verify.add_argument("--profile", choices=experiments.PROFILES, default="book", help="which profile's cache")
    verify.add_argument("--images", type=int, default=None, help="the first N images")
    verify.add_argument("--image", type=int, action="append", default=None, metavar="K", help="image number K (repeat for more)")
    verify.add_argument(
        "--all",
        dest="all_images",
        action="store_true",
        help="every image (of an experiment that records every image's decisions: every recorded one)",
    )
    verify.add_argument("--seed", type=int, default=None, help="the seed that draws the second image (default: the day)")
    verify.add_argument(
        "--device", default=None, help="recompute on this device, cpu, cuda or cuda:N (when not given: the cache's)"
    )
    verify.add_argument("--quiet", action="store_true", help="no progress bars")
    for command in (run, verify):
        command.add_argument(
            "--imagenet-val", metavar="DIR", help=f"ImageNet validation folder (when not given: ${IMAGENET_VAL_ENV})"
        )
        command.add_argument("--cifar10", metavar="DIR", help=f"CIFAR-10 python-batches folder (when not given: ${CIFAR10_ENV})")
    from pathlib_pw import explain

    explain_parser = sub.add_parser(
        "explain",
        help="PathwayGrad of an image file beside the baselines, saved as a figure",
        description=explain.CLI_DESCRIPTION,
        formatter_class=_Formatter,
    )
    explain.add_arguments(explain_parser)
    return parser, {"run": run, "verify": verify, "explain": explain_parser}


def _check_common(args: argparse.Namespace, command: argparse.ArgumentParser) -> None:
    """Bad arguments of run and verify as one-line usage errors (exit status 2), before any work."""
    if args.images is not None and args.images < 1:
        command.error(f"--images must be a positive int, got {args.images}")
    from pathlib_pw.explain import check_device

    problem = check_device(args.device)
    if problem:
        command.error(problem)
    for flag, value in (("--imagenet-val", args.imagenet_val), ("--cifar10", args.cifar10)):
        if value is not None and not Path(value).is_dir():
            what = "is not a folder" if Path(value).exists() else "does not exist"
            command.error(f"{flag} {value}: {what} (name an existing folder)")


def _no_current_cache(problem: str) -> bool:
    """A verify problem that means "there is nothing current to verify" (a usage error), not a cache
    whose stored numbers or settings differ from what was computed (a failed verification)."""
    return (
        problem.startswith("no cache")
        or "n_images" in problem
        or problem.startswith(("images must", "all_images", "give at most one"))
        or "another configuration or library version" in problem
        or problem.startswith("no digests")
        or ": missing" in problem
    )


def _as_flags(problem: str) -> str:
    """A verify problem on one line, naming the command line's flags instead of verify's arguments."""
    line = problem.replace("\n", "; ")
    for argument, flag in (("n_images must", "--images must"), ("images must", "--image must"), ("all_images:", "--all:")):
        if line.startswith(argument):
            return flag + line[len(argument) :]
    return line.replace("n_images", "--images")


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = _parser()
    args = parser.parse_args(argv)
    command = commands[args.command]
    if args.command == "explain":
        from pathlib_pw import explain

        return explain.main(args, command)
    _check_common(args, command)
    if args.imagenet_val:
        os.environ[IMAGENET_VAL_ENV] = args.imagenet_val
    if args.cifar10:
        os.environ[CIFAR10_ENV] = args.cifar10
    names = sorted(experiments.EXPERIMENTS) if "all" in args.experiment else list(dict.fromkeys(args.experiment))
    if args.command == "verify":
        damaged: dict[str, str] = {}
        for name in names:  # every cache checked before any work: missing ones are usage errors
            problem = experiments.verify_problem(name, args.profile, args.images, images=args.image, all_images=args.all_images)
            if problem and all(map(_no_current_cache, problem.splitlines())):
                command.error(_as_flags(problem))
            if problem:
                damaged[name] = problem
        failed = False
        for name in names:
            if name in damaged:  # a stored number or setting that is not what was computed: never a match
                for line in damaged[name].splitlines():
                    print(f"{name}/{args.profile}: DIFFERS from what was computed: {line}")
                failed = True
                continue
            result = experiments.verify(
                name,
                args.profile,
                args.images,
                args.device,
                progress=not args.quiet,
                images=args.image,
                seed=args.seed,
                all_images=args.all_images,
            )
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
            part = contract.parts(name, experiments.EXPERIMENTS[name])
            overrides = vars(part.subset(experiments.get_config(name, args.profile), args.images))
            results = experiments.load_or_run(name, args.profile, args.device, args.force, not args.quiet, **overrides)
            print(
                f"{name}/{args.profile}: computed in {results.meta.get('seconds')} s on {results.meta.get('device')} (not cached)"
            )
        return 0
    try:
        with sharding.processes() as procs:
            for name in names:
                cached = not args.force and experiments.is_cached(name, args.profile)
                results = sharding.run_experiment(
                    name, args.profile, procs.device(args.device), args.force, not args.quiet, procs
                )
                if procs.rank == 0:
                    print(f"{name}/{args.profile}: {describe_run(results.meta, cached)}")
    except (cache.CacheWriteError, cache.CorruptCache) as error:  # a folder that cannot be written or read back
        print(f"{PROG} run: error: {error}", file=sys.stderr)
        return 2
    return 0


def describe_run(meta: dict, cached: bool) -> str:
    """``computed in 12.3 s on cpu`` for a fresh result; for one read from the cache, what computing it
    cost and when (``cached (computed in 2965 s on cpu, 2026-12-06)``)."""
    took = f"computed in {meta.get('seconds')} s on {meta.get('device')}"
    if "copied_from" in meta and not cached:
        return f"taken from the identical cache of {meta['copied_from']} ({took})"
    if not cached:
        return took
    return f"cached ({took}{', ' + str(meta['date']) if meta.get('date') else ''})"


if __name__ == "__main__":
    sys.exit(main())
