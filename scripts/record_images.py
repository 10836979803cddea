"""Add the decision records of every image to caches computed when only their first image was
recorded (issue 28), so that ``verify`` can recompute any image, on any machine.

Each missing image is recomputed on this machine, must reproduce the cached arrays, and its records
are added to ``decisions.npz`` atomically (arrays and digests unchanged). Resumable: an interrupted
run keeps the images it finished. A cache computed with a lower vector instruction set than this
machine's (its header's ``machine.torch_cpu_capability``) is recomputed in a subprocess limited to that
set, whose float sums are those of the cache.

    python scripts/record_images.py EXPERIMENT... [--profile book] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from pathlib_pw import experiments
from pathlib_pw.runner import cache


def _limited(name: str, profile: str) -> dict[str, str] | None:
    """The environment that reproduces the cache's instruction set, when this process has another one."""
    import torch

    header = json.loads((cache.results_root() / profile / name / cache.CONFIG_FILE).read_text(encoding="utf-8"))
    wanted = str(header.get("machine", {}).get("torch_cpu_capability", "")).upper()
    if wanted == torch.backends.cpu.get_cpu_capability().upper() or wanted not in cache.INSTRUCTION_LIMITS:
        return None
    return cache.INSTRUCTION_LIMITS[wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="+", choices=sorted(experiments.EXPERIMENTS))
    parser.add_argument("--profile", choices=experiments.PROFILES, default="book")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    failed = False
    for name in args.experiment:
        start = time.perf_counter()
        limits = _limited(name, args.profile)
        if limits is not None:
            command = [sys.executable, __file__, name, "--profile", args.profile] + (
                ["--device", args.device] if args.device else []
            )
            failed = subprocess.run(command, env={**os.environ, **limits}).returncode != 0 or failed
            continue
        try:
            added = experiments.record_images(name, args.profile, args.device)
        except RuntimeError as error:  # this machine does not reproduce the cache: recompute it instead
            print(f"{name}/{args.profile}: {error}", file=sys.stderr)
            failed = True
            continue
        print(
            f"{name}/{args.profile}: records added for images {added or 'none (all recorded)'} in {time.perf_counter() - start:.0f} s"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
