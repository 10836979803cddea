"""The book's API reference (book/api.rst) and what points at it: every public name of pathlib_pw is
documented there, every cross-reference from the Methods page into the library has a target there,
the worked examples there and in the README parse and follow the argument convention (model and x
first, target keyword-only, amounts removed in percent), and the README states the units.

The book build itself (`make book`, with --warningiserror) is what renders the page; these checks read
the sources, so they run in `make test` in a second.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pathlib_pw

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "book" / "api.rst"
METHODS = ROOT / "book" / "methods.md"
README = ROOT / "README.md"

DIRECTIVE = re.compile(r"^\.\. (auto\w+|py:\w+)::\s*(\S+)\s*$")
MEMBERS = re.compile(r"^\s+:members:\s*(.+)$")


def _documented(text: str) -> set[str]:
    """Fully qualified names the page documents: the target of every auto*/py:* directive (a relative
    py:data name is read in the current module) and the members an autoclass or automodule lists."""
    names: set[str] = set()
    module = ""
    last = ""
    for line in text.splitlines():
        member = MEMBERS.match(line)
        if member and last:
            names.update(f"{last}.{m.strip()}" for m in member.group(1).split(","))
            continue
        match = DIRECTIVE.match(line)
        if not match:
            continue
        kind, target = match.groups()
        if kind in ("py:currentmodule", "automodule", "py:module"):
            module = target
        if kind == "py:currentmodule":
            last = ""
            continue
        last = target if target.startswith("pathlib_pw") else f"{module}.{target}"
        names.add(last)
    return names


def test_the_api_page_is_in_the_table_of_contents():
    assert re.search(r"^\s*- file: book/api\s*$", (ROOT / "_toc.yml").read_text(), re.M)


def test_the_api_page_documents_every_public_name():
    documented = _documented(API.read_text())
    missing = [name for name in pathlib_pw.__all__ if f"pathlib_pw.{name}" not in documented]
    assert not missing, f"book/api.rst documents no directive for pathlib_pw.{missing} (pathlib_pw.__all__)"


_MISSING = object()


def _resolve(name: str) -> object:
    """The object a dotted name documents: the longest importable module, then attributes
    (``_MISSING`` when an attribute does not exist)."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def test_documented_names_exist():
    """A renamed or removed function fails here rather than as an autodoc warning at book build time."""
    stale = [name for name in sorted(_documented(API.read_text())) if _resolve(name) is _MISSING]
    assert not stale, f"book/api.rst documents names that do not exist: {stale}"


SECTIONS = ["Pathways", "Saliency", "Metrics", "Pixel removal", "Local linearity", "Models and data"]


def test_the_api_page_follows_the_papers_concepts_in_order():
    titles = re.findall(r"^(.+)\n-{3,}$", API.read_text(), re.M)
    assert [t for t in titles if t in SECTIONS] == SECTIONS, titles


def test_the_api_page_states_the_convention():
    text = " ".join(API.read_text().split())
    for rule in ("``target`` (the explained class; default the model's prediction) is keyword-only",
                 "``criterion`` only for pathway criteria, ``method`` only for attribution methods",
                 "every amount removed is in percent (0-100)"):
        assert rule in text


def test_methods_cross_references_have_a_target_on_the_api_page():
    references = re.findall(r"\{py:(?:func|class|meth|data|mod)\}`~?([\w.]+)`", METHODS.read_text())
    assert len(references) >= 20, "methods.md links each definition to its function on the API page"
    documented = _documented(API.read_text())
    missing = sorted({r for r in references if r not in documented})
    assert not missing, f"methods.md links to names that book/api.rst does not document: {missing}"


# ---- the examples ---------------------------------------------------------------------------------

# functions that run the model: (model, x, subject[, amount]) positional, the rest keyword-only
RUNS_THE_MODEL = {
    "extract_pathway": 4, "extract_pathways": 4, "pathway_grad": 3, "output_change": 3, "dead_share": 3,
    "attribute": 3, "saliency": 3, "pixel_removal_curve": 4,
}
# the position of the amount removed (percent) in calls that take one
AMOUNT = {"extract_pathway": 3, "extract_pathways": 3, "pixel_removal_curve": 3, "remove_pixels": 2}
OLD_KEYWORDS = {"fraction", "fractions", "pathway"}


def _examples() -> list[tuple[str, str]]:
    api = API.read_text()
    blocks = [
        ("api.rst", "\n".join(line[3:] for line in block.splitlines()))
        for block in re.findall(r"^\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", api, re.M)
    ]
    blocks += [("README.md", block) for block in re.findall(r"^```python\n(.*?)^```", README.read_text(), re.M | re.S)]
    return blocks


def _amounts(node: ast.expr) -> list[float]:
    values = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    return [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, (int, float))]


def _convention_problems(source: str) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        line = ast.get_source_segment(source, node)
        problems += [f"{line}: old keyword {k.arg}=" for k in node.keywords if k.arg in OLD_KEYWORDS]
        if name in RUNS_THE_MODEL:
            first = [a.id if isinstance(a, ast.Name) else None for a in node.args[:1]]
            if first != ["model"]:
                problems.append(f"{line}: the model comes first")
            if len(node.args) > RUNS_THE_MODEL[name]:
                problems.append(f"{line}: target and options are keyword-only")
        if name in AMOUNT and len(node.args) > AMOUNT[name]:
            shares = [v for v in _amounts(node.args[AMOUNT[name]]) if 0 < v < 1]
            if shares:
                problems.append(f"{line}: amounts removed are in percent, got {shares}")
    return problems


@pytest.mark.parametrize("where, source", _examples(), ids=lambda v: v if v in ("api.rst", "README.md") else "")
def test_examples_parse_and_follow_the_convention(where, source):
    problems = _convention_problems(source)
    assert not problems, f"{where}:\n" + "\n".join(problems)


def test_the_convention_check_catches_old_spellings():
    old = """
maps = pw.attribute("gradients", model, x)
path = pw.extract_pathway(model, x, "neuron_mct", 0.9)
curve = pw.pixel_removal_curve(model, x, maps, [0.01, 0.05], "least")
grads = pw.pathway_grad(model, x, pathway=path)
"""
    assert len(_convention_problems(old)) == 5
    assert _convention_problems('path = pw.extract_pathway(model, x, "neuron_mct", 90, target=3)') == []


def test_every_api_group_has_an_example():
    text = API.read_text()
    for title in SECTIONS:
        section = text.split(f"\n{title}\n")[1].split("\n.. auto")[0]
        assert ".. code-block:: python" in section, f"the API page's {title} section opens without an example"


# ---- the README -------------------------------------------------------------------------------------


def test_the_readme_states_the_units_and_points_at_the_api_page():
    text = README.read_text()
    assert (
        "Amounts removed (`sparsity`, `percent`) are in percent (0-100); measured ratios (`*_share`) are "
        "shares in [0, 1]." in text
    )
    assert "(book/api.rst)" in text
    # the quick start comes first, the reproducibility plumbing after it
    assert text.index("## Quick start") < text.index("make book") < text.index("## Layout")


def test_no_invented_repository_address():
    """The project has no public repository: no page or metadata file names one."""
    for path in (ROOT / "CITATION.cff", ROOT / "_config.yml", README, API, METHODS):
        assert "github.com/pathlib-pw" not in path.read_text(), path
    assert "repository-code" not in (ROOT / "CITATION.cff").read_text()
    assert not re.search(r"^repository:", (ROOT / "_config.yml").read_text(), re.M)


def test_the_package_is_marked_typed():
    assert (ROOT / "pathlib_pw" / "py.typed").is_file()  # shipped in the wheel: test_packaging.py


# |text| outside double backticks is a reStructuredText substitution reference: an undefined one fails
# the book build (autodoc renders these docstrings on the API page)
SUBSTITUTION = re.compile(r"(?<![\w|])\|[^|\s][^|\n]*\|(?![\w|])")


def _docstring_outside_literals(doc: str) -> str:
    without_literals = re.sub(r"``.*?``", "", doc, flags=re.S)
    return "\n".join(line for line in without_literals.splitlines() if not line.lstrip().startswith((">>>", "...")))


def test_documented_docstrings_hold_no_substitution_reference():
    import inspect

    found = []
    for name in sorted(_documented(API.read_text())):
        obj = _resolve(name)
        docs = [inspect.getdoc(obj) or ""]
        if inspect.ismodule(obj):
            docs += [inspect.getdoc(v) or "" for k, v in vars(obj).items() if not k.startswith("_") and callable(v)]
        for doc in docs:
            hits = SUBSTITUTION.findall(_docstring_outside_literals(doc))
            if hits:
                found.append((name, hits[:2]))
    assert not found, f"write these in double backticks: {found}"


def test_the_substitution_check_finds_one():
    assert SUBSTITUTION.findall(_docstring_outside_literals("score |a x d logit / d a| per site")) == ["|a x d logit / d a|"]
    assert not SUBSTITUTION.findall(_docstring_outside_literals("score ``|a x d logit / d a|`` per site; a | b"))
