"""Record content digests in caches computed before digests existed (issue 28).

A cache written by ``cache.save`` records, at compute time, the sha256 of its stored configuration
and of every array (and of every row: every image). The book's caches predate that; this script
records the digests of their arrays as committed, after checking that the stored configuration is
the current one, and notes the date in ``digests_recorded``. From then on ``verify`` checks every
stored number against them before recomputing anything. Run it once per pre-digest cache:

    python scripts/record_digests.py [PROFILE]   # default: book
"""

from __future__ import annotations

import datetime
import json
import os
import sys

from pathlib_pw import experiments
from pathlib_pw.runner import cache


def main(profile: str = "book") -> int:
    root = cache.results_root() / profile
    for name in sorted(experiments.EXPERIMENTS):
        directory = root / name
        if not (directory / "config.json").exists():
            continue
        header = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        if "digests" in header:
            print(f"{name}: has digests")
            continue
        config = experiments.get_config(name, profile)
        if header["config"] != cache.config_dict(config) or header["config_hash"] != cache.config_hash(name, config):
            print(f"{name}: stored configuration is not the current one: recompute instead", file=sys.stderr)
            return 1
        header["digests"] = cache.digests(header["config"], cache.load(directory).arrays)
        header["digests_recorded"] = (
            f"{datetime.date.today().isoformat()}: recorded from the committed arrays (the cache predates digests)"
        )
        tmp = directory / "config.json.tmp"
        tmp.write_text(json.dumps(header, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, directory / "config.json")
        problems = cache.check(directory, name, config)
        print(f"{name}: digests recorded; check: {problems or 'intact'}")
        if problems:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
