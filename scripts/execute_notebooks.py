"""Execute book notebooks in place (they are committed executed: nbval compares their outputs).

    python scripts/execute_notebooks.py [book/NAME.ipynb ...] [--profile smoke]

``--profile`` rewrites the parameters cell's PROFILE for this run (to try a notebook on the smoke
cache); the default keeps the committed value.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--output-dir", type=Path, default=None, help="write executed copies here instead of in place")
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((ROOT / "book").glob("*.ipynb"))
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.profile:
            for cell in nb.cells:
                if "parameters" in cell.metadata.get("tags", []):
                    cell.source = re.sub(r'PROFILE = "\w+"', f'PROFILE = "{args.profile}"', cell.source)
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        target = path if args.output_dir is None else args.output_dir / path.name
        nbformat.write(nb, target)
        print(f"executed {path.name} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
