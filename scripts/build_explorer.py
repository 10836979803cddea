"""Write the map explorer's assets (book/explorer.md) from the cached results: the maps and photos as
WebP, ``index.json``, ``curves.json`` and the static figure, under ``_static/explorer/data`` of the
book's root. The folder is replaced whole only once everything is written (an interrupted run leaves
the old assets). The assets are committed; ``tests/test_explorer.py`` checks that they match the caches.

    python scripts/build_explorer.py [--profile book] [--root .]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pathlib_pw import explorer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=("smoke", "book", "paper"), default="book")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="the book's root")
    args = parser.parse_args(argv)
    target = explorer.build(args.root, args.profile)
    files = [p for p in target.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(f"{target}: {len(files)} files, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
