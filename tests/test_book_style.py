"""Every chapter of the book reads as a report, not a test log (../shared/BOOK_STYLE.md, "What the
reader sees"): machinery stays off the page, tables are HTML, a chapter opens with its claim and the verdict
rendered from the claims registry (pathlib_pw.claims).

The rules are checked on every notebook under book/, including chapters written later.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
HIDDEN = {"remove-input", "remove-cell", "hide-input"}
REMOVED = {"remove-input", "remove-cell"}
# a visible call that shows how to use the library (BOOK_STYLE.md: "Only a call that shows how to use
# the library stays visible"); it may import, but not check outputs or assert
USAGE = "usage-example"

IMPORT = re.compile(r"^\s*(import \w|from \S+ import )", re.M)
MACHINERY = {
    "an import": IMPORT,
    "an nbval marker": re.compile(r"#\s*NBVAL_"),
    "an assert": re.compile(r"^\s*assert\b", re.M),
    "a warnings filter": re.compile(r"warnings\.(filterwarnings|simplefilter)"),
}
TEXT_TABLE = re.compile(r"\.to_string\(|\.to_markdown\(")
# longer printed lines are cut off at the right of the page's code box (1400 px window)
LINE = 90
# a line of a table printed as text: three or more fields separated by runs of two or more spaces
TABLE_ROW = re.compile(r"\S(?: {2,}\S+){2,}")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _stream_text(cell: dict) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def _has_image(cell: dict) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def _code(path: Path) -> list[tuple[int, dict]]:
    return [(i, c) for i, c in enumerate(_cells(path)) if c["cell_type"] == "code"]


def test_the_book_has_notebooks():
    assert len(NOTEBOOKS) >= 6, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_machinery_cells_hide_their_input(path):
    problems = []
    for i, cell in _code(path):
        source, tags = _source(cell), _tags(cell)
        for what, pattern in MACHINERY.items():
            allowed = what == "an import" and USAGE in tags
            if pattern.search(source) and not tags & REMOVED and not allowed:
                problems.append(f"cell {i} has {what} but no remove-input tag")
        if "parameters" in tags and not tags & REMOVED:
            problems.append(f"cell {i} (parameters) has no remove-input tag")
        if USAGE in tags and (MACHINERY["an nbval marker"].search(source) or MACHINERY["an assert"].search(source)):
            problems.append(f"cell {i}: a usage example must not check outputs or assert")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_is_hidden_or_a_usage_example(path):
    visible = [i for i, cell in _code(path) if not _tags(cell) & (HIDDEN | {USAGE})]
    assert not visible, f"{path.name}: code cells {visible} show their input (tag remove-input, hide-input or {USAGE})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tables_are_html_not_text(path):
    problems = []
    for i, cell in _code(path):
        if TEXT_TABLE.search(_source(cell)):
            problems.append(f"cell {i} prints a table as text (.to_string / .to_markdown): show the DataFrame or a Styler")
        rows = [line for line in _stream_text(cell).splitlines() if TABLE_ROW.search(line)]
        if len(rows) >= 3:
            problems.append(f"cell {i} prints a table as text:\n  " + "\n  ".join(rows[:3]))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tables_offer_their_numbers_as_a_csv_download(path):
    """Issue 30: each table a chapter shows comes with its numbers as a CSV (plotting.styled(..., csv_name=))."""
    bare = [
        i
        for i, cell in _code(path)
        for output in cell.get("outputs", [])
        if "<table" in (html := "".join(output.get("data", {}).get("text/html", "")))
        and not re.search(r'<a [^>]*download="[\w-]+\.csv" href="data:text/csv;base64,', html)
    ]
    assert not bare, f"{path.name}: cells {bare} show a table without a CSV download (plotting.styled(..., csv_name=...))"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_printed_lines_on_the_page_fit_its_width(path):
    long = [
        f"cell {i}: {line[:60]}..."
        for i, cell in _code(path)
        if not _tags(cell) & {"remove-cell", "remove-output"}
        for line in _stream_text(cell).splitlines()
        if len(line) > LINE
    ]
    assert not long, f"{path.name}: printed lines longer than {LINE} characters are clipped on the page:\n" + "\n".join(long)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_cells_are_committed_executed(path):
    unexecuted = [
        i for i, cell in _code(path) if MACHINERY["an nbval marker"].search(_source(cell)) and cell.get("execution_count") is None
    ]
    assert not unexecuted, f"{path.name}: checked cells {unexecuted} have no execution count, so nbval never compares them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_prints_are_not_on_the_page(path):
    """A checked cell that only prints (nbval compares its text) repeats numbers the page shows as tables
    and figures: it runs and is checked, but is removed from the page (issue 30)."""
    shown = [
        i
        for i, cell in _code(path)
        if MACHINERY["an nbval marker"].search(_source(cell))
        and _stream_text(cell)
        and all(o.get("output_type") == "stream" for o in cell.get("outputs", []))
        and "remove-cell" not in _tags(cell)
    ]
    assert not shown, f"{path.name}: checked cells {shown} print text on the page; tag them remove-cell"


# the front matter: no claim of its own (it shows the claims table, rendered from pathlib_pw.claims)
FRONT_MATTER = {"intro.ipynb"}
CHAPTERS = [p for p in NOTEBOOKS if p.name not in FRONT_MATTER]
VERDICT_CALL = re.compile(r"claims\.verdict_markdown\(")


def _verdict_follows_the_claim(cells: list[dict]) -> str | None:
    """None when a code cell rendering the registry's verdict (claims.verdict_markdown, shown as
    Markdown) follows the opening cell, after at most the parameters cell; else what is wrong."""
    rest = cells[1:]
    while rest and rest[0]["cell_type"] == "code" and "parameters" in _tags(rest[0]):
        rest = rest[1:]
    if not rest or rest[0]["cell_type"] != "code" or not VERDICT_CALL.search(_source(rest[0])):
        return "the cell after the claim (and the parameters) must render the verdict with claims.verdict_markdown"
    outputs = rest[0].get("outputs", [])
    if not any("**Verdict: " in "".join(o.get("data", {}).get("text/markdown", "")) for o in outputs):
        return "the verdict cell must be committed executed, showing the verdict as Markdown"
    return None


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_a_chapter_opens_with_its_claim_and_verdict(path):
    cells = _cells(path)
    first = _source(cells[0]) if cells and cells[0]["cell_type"] == "markdown" else ""
    assert first.lstrip().startswith("# "), f"{path.name}: the first cell must be markdown starting with the chapter's title"
    assert "**Claim" in first, f"{path.name}: the opening cell must state the claim"
    problem = _verdict_follows_the_claim(cells)
    assert problem is None, f"{path.name}: {problem}"
    assert "**Verdict" not in first, f"{path.name}: the verdict comes from the registry (pathlib_pw.claims), not by hand"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_cite_pages_of_the_book_not_project_files(path):
    text = "\n".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")
    assert "PAPER.md" not in text, f"{path.name}: PAPER.md is not part of the book; link the Methods page (methods.md)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figure_cells_hide_their_code(path):
    shown = [i for i, cell in _code(path) if _has_image(cell) and not _tags(cell) & HIDDEN]
    assert not shown, f"{path.name}: cells {shown} draw a figure but show their code (tag hide-input)"


def test_the_verdict_rule_catches_a_hand_written_verdict():
    claim = {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n\n**Claim** x.\n\n**Verdict: holds.** y"]}
    parameters = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ["PROFILE = 'book'"], "outputs": []}
    rendered = {
        "cell_type": "code",
        "metadata": {"tags": ["remove-input"]},
        "source": ['Markdown(claims.verdict_markdown("key", PROFILE))'],
        "outputs": [{"output_type": "execute_result", "data": {"text/markdown": "**Verdict: holds**. Rule: ..."}}],
    }
    assert _verdict_follows_the_claim([claim, parameters]) is not None
    assert _verdict_follows_the_claim([claim, parameters, {**rendered, "outputs": []}]) is not None
    assert _verdict_follows_the_claim([claim, parameters, rendered]) is None
    assert _verdict_follows_the_claim([claim, rendered]) is None


def test_the_rules_catch_a_test_log():
    """The checks above fail on the kind of cell the book used to show."""
    log = {
        "cell_type": "code",
        "metadata": {},
        "execution_count": 3,
        "source": ["# NBVAL_CHECK_OUTPUT\n", "import pandas as pd\n", "print(table.round(1).to_string())\n", "assert ok\n"],
        "outputs": [{"output_type": "stream", "name": "stdout", "text": ["       a     b\n", "x   1.0   2.0\n", "y   3.0   4.0\n", "z   5.0   6.0\n"]}],
    }
    source = _source(log)
    assert all(pattern.search(source) for what, pattern in MACHINERY.items() if what != "a warnings filter")
    assert TEXT_TABLE.search(source)
    assert sum(bool(TABLE_ROW.search(line)) for line in _stream_text(log).splitlines()) >= 3
    key_numbers = "NeuronMCT: largest swept sparsity with mean output change <= 15 %: 50 %\nbase sparsity 35.8 %, min 33.3 %\n"
    assert not any(TABLE_ROW.search(line) for line in key_numbers.splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_glued_numbers_are_plain_python_values(path):
    """myst-nb formats a glued number from its repr: a numpy scalar ('np.float64(...)') breaks the
    build under --warningiserror, so glue float(...) or int(...)."""
    for cell in _cells(path):
        for output in cell.get("outputs", []):
            if "scrapbook" not in output.get("metadata", {}):
                continue
            text = output.get("data", {}).get("application/papermill.record/text/plain", "")
            assert not str(text).startswith("np."), f"{path.name}: {output['metadata']['scrapbook'].get('name')} is {text}"
