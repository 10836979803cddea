"""Every file and every dotted name that the package's docstrings and comments, the scripts, the README and
the book's pages cite exists: a reader who follows a reference lands somewhere."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# a dotted name of the package: pathlib_pw.x.y (a module, then attributes)
DOTTED = re.compile(r"(?<![\w/.])pathlib_pw(?:\.[A-Za-z_]\w*)+")
# a cited file: a path with a folder or a known extension, in backticks or parentheses or plain text
FILE = re.compile(r"(?<![\w/.$*>-])((?:[\w-]+/)*[\w-]+\.(?:md|py|ipynb|yml|yaml|csv|json|toml|cfg|txt))\b")
# files that are not the project's: the authors' code (cited as what it did), ROAD's repository, a cache
# folder's files, a user's script, a placeholder
OUTSIDE = {
    "QualitativeAnalysis_pyfile.py", "plots.py", "path_decoding/path_decoding.py", "main2.py", "cdrp/main2.py", "road/imputations.py",
    "config.json", "arrays.npz", "decisions.npz", "pathlib_pw_demo.py", "book/NAME.ipynb",
}
TRACKED = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]


def _sources() -> list[Path]:
    files = [*sorted((ROOT / "pathlib_pw").rglob("*.py")), *sorted((ROOT / "scripts").glob("*.py"))]
    files += [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md"))]
    return files


def _text(path: Path) -> str:
    """What a reader sees of ``path``: a notebook's markdown cells, other files whole."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text(encoding="utf-8")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _file_exists(name: str, cited_in: Path) -> bool:
    """``name`` is a file of the repository, cited from its root, from the citing file's folder or by
    its tail (``criteria/mct.py``, ``bench_criteria.py``)."""
    if name in OUTSIDE or (cited_in.parent / name).exists():
        return True
    return any(t == name or t.endswith("/" + name) for t in TRACKED)


def _docstrings_and_comments(source: str) -> str:
    """What a reader of a module's documentation sees: its docstrings and its comments (code may build
    file names at run time)."""
    tree = ast.parse(source)
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = [ast.get_docstring(n) or "" for n in ast.walk(tree) if isinstance(n, kinds)]
    return "\n".join(docs + [line.split("#", 1)[1] for line in source.splitlines() if "#" in line])


SOURCES = _sources() + sorted((ROOT / "book").glob("*.ipynb"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_dotted_name_exists(path):
    text = _text(path)
    missing = sorted({d.rstrip(".") for d in DOTTED.findall(text) if not _resolves(d.rstrip("."))})
    assert missing == [], f"{path.relative_to(ROOT)} cites names that do not exist: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_file_exists(path):
    text = _text(path)
    if path.suffix == ".py":
        text = _docstrings_and_comments(text)
    missing = sorted({f for f in FILE.findall(text) if not _file_exists(f, path)})
    assert missing == [], f"{path.relative_to(ROOT)} cites files that are not in the repository: {missing}"


def test_the_check_finds_what_it_looks_for(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("see `pathlib_pw.pathway.global_threshold` and PAPER.md section 2, or `pathlib_pw.thresholds.global_threshold`")
    assert [d for d in DOTTED.findall(_text(page)) if not _resolves(d)] == ["pathlib_pw.pathway.global_threshold"]
    assert [f for f in FILE.findall(_text(page)) if not _file_exists(f, page)] == ["PAPER.md"]


def test_every_bibliography_entry_is_cited_and_has_an_address():
    """Each entry of references.bib is cited by some page ({cite}`key`) and says where to read it (the
    book's own entry excepted: it has no public address yet)."""
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    entries = dict(re.findall(r"@\w+\{([\w-]+),(.*?)\n\}", bib, flags=re.S))
    pages = "\n".join(_text(p) for p in [*sorted((ROOT / "book").glob("*.ipynb")), *sorted((ROOT / "book").glob("*.md"))])
    cited = set(re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", pages))
    cited = {key.strip() for group in cited for key in group.split(",")}
    assert sorted(set(entries) - cited) == [], "bibliography entries no page cites"
    assert sorted(cited - set(entries)) == [], "citations without an entry"
    assert [k for k, body in entries.items() if "url" not in body and k != "pathlib_pw"] == []


def test_every_chapter_links_the_paper_in_its_claim_line():
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        if path.stem == "intro":
            continue
        claim = next(line for line in _text(path).splitlines() if line.startswith("**Claim**"))
        assert "https://arxiv.org/abs/2103.16886" in claim and "{cite}`khakzar2021neural`" in claim, path.name
