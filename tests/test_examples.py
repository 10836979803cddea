"""The ``Examples`` sections of the public API run, and say what they show.

Every function and class of ``pathlib_pw.__all__`` documents itself with an ``Examples`` section
(numpydoc heading, doctest lines) that the book's API reference renders. Here each section runs as a
doctest, as a user would run it (the pathway checks on, warnings and all), on the embedded default:
MobileNetV2's ImageNet weights and the bundled photos (and a tiny net where the example defines
one). A second test requires the section on every entry point defined in the modules listed in
:data:`WITH_EXAMPLES`.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import re
from pathlib import Path

import pytest

import pathlib_pw
from pathlib_pw import architectures
from pathlib_pw.attribution import registry

PACKAGE = Path(pathlib_pw.__file__).resolve().parent
# the modules whose public entry points must carry an Examples section
WITH_EXAMPLES = (
    "architectures.py",
    "criteria/__init__.py",
    "imagenet.py",
    "metrics.py",
    "sites.py",
    "attribution/baselines.py",
    "attribution/pathway_grad.py",
    "attribution/quantus.py",
    "attribution/registry.py",
    "data.py",
    "linearity.py",
    "models.py",
    "pathway.py",
    "removal.py",
)
# entry points whose examples use an optional extra (requirements.txt installs it; a bare install may not)
OPTIONAL = {"quantus_explain_func": "quantus"}
# the numpydoc heading, then doctest lines (after blank lines or prose, if any)
EXAMPLES = re.compile(r"^[ \t]*Examples\n[ \t]*-{8}\n(?:[ \t]*(?:[^>\s-].*)?\n)*[ \t]*>>> ", re.M)


def _entry_points() -> dict[str, object]:
    """The functions and classes of ``pathlib_pw.__all__``, by name, and the documented extras of
    book/api.rst that carry examples."""
    out: dict[str, object] = {"architectures.register_architecture": architectures.register_architecture}
    for name in pathlib_pw.__all__:
        obj = getattr(pathlib_pw, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            out[name] = obj
    return out


def _defined_in(obj: object) -> str:
    """The file that defines ``obj``, relative to the package (through deprecation wrappers)."""
    source = inspect.getsourcefile(inspect.unwrap(obj))  # type: ignore[arg-type]
    assert source is not None
    return Path(source).resolve().relative_to(PACKAGE).as_posix()


def _doctests(name: str, obj: object) -> list[doctest.DocTest]:
    """The doctests of ``obj``'s docstring (and its members'), each with fresh globals."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(obj, f"pathlib_pw.{name}", globs={}) if t.examples]


WITH_DOCTESTS = sorted(name for name, obj in _entry_points().items() if _doctests(name, obj))


@pytest.fixture
def _registries_restored():
    """Examples register attribution methods and architectures, as a user would; other tests see the
    registries as they were."""
    registries = (registry.ATTRIBUTION_METHODS, architectures.ARCHITECTURES)
    before = [dict(r) for r in registries]
    try:
        yield
    finally:
        for r, saved in zip(registries, before):
            r.clear()
            r.update(saved)


@pytest.mark.pathway_checks
@pytest.mark.parametrize("name", WITH_DOCTESTS)
def test_the_examples_run_as_shown(name, _registries_restored):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    runner = doctest.DocTestRunner(verbose=False)
    for test in _doctests(name, _entry_points()[name]):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"pathlib_pw.{name}: {results.failed} of {results.attempted} example lines failed (output above)"


def test_every_entry_point_of_the_listed_modules_has_examples():
    entry_points = _entry_points()
    covered = {name: obj for name, obj in entry_points.items() if _defined_in(obj) in WITH_EXAMPLES}
    assert covered, "no entry point is defined in the modules of WITH_EXAMPLES: is the list stale?"
    missing = sorted(name for name, obj in covered.items() if not EXAMPLES.search(obj.__doc__ or ""))
    assert not missing, f"no 'Examples\\n--------\\n>>> ...' section in the docstring of pathlib_pw.{missing}"
    assert set(covered) <= set(WITH_DOCTESTS)


def test_the_examples_check_finds_a_missing_section():
    """The pattern itself: a numpydoc Examples heading with doctest lines, not a mention of the word."""
    assert EXAMPLES.search("Summary.\n\n    Examples\n    --------\n    >>> f(1)\n    2\n")
    assert not EXAMPLES.search("Summary.\n\n    Examples: see the book.\n")
    assert EXAMPLES.search("Summary.\n\n    Examples\n    --------\n    Needs data:\n\n    >>> f(1)  # doctest: +SKIP\n")
    assert not EXAMPLES.search("Summary.\n\n    Examples\n    --------\n    f(1) is 2.\n")
    assert not EXAMPLES.search("Summary.\n\n    Examples\n    --------\n    f(1) is 2.\n\n    Notes\n    -----\n    >>> f(1)\n")


# the experiment configurations whose fields the API reference shows, and the inputs they share
CONFIG_MODULES = sorted(p for p in (PACKAGE / "experiments").glob("*.py") if p.name != "__init__.py") + [
    PACKAGE / "runner" / "inputs.py"
]
CONFIG_CLASSES = ("Config", "Inputs", "Criterion")


# Sphinx's napoleon reads the first line of an attribute docstring as "type: description" when it has
# a colon outside ``code`` and :roles:`...` (its _partition_field_on_colon): "The model: ..." would
# render as a type "The model"
CODE_OR_ROLE = re.compile(r"(``.+?``|:\w+(?::\w+)?:`.+?`|`.+?`)")
BARE_COLON = re.compile(r"(?<!:):(?!:)")


def _reads_as_a_type(first_line: str) -> bool:
    return any(i % 2 == 0 and BARE_COLON.search(part) for i, part in enumerate(CODE_OR_ROLE.split(first_line)))


def _undocumented_fields(source: str) -> list[str]:
    """``Class.field`` for every annotated field of a configuration class not followed by a string
    literal (the attribute docstring that autodoc shows), or followed by one whose first line napoleon
    would take for a type (``Class.field (first line)``)."""
    missing = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and node.name in CONFIG_CLASSES):
            continue
        body = node.body
        for i, statement in enumerate(body):
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            after = body[i + 1] if i + 1 < len(body) else None
            documented = (
                isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)
            )
            if not documented:
                missing.append(f"{node.name}.{statement.target.id}")
            elif _reads_as_a_type(after.value.value.strip().splitlines()[0]):
                missing.append(f"{node.name}.{statement.target.id} (first line: a bare colon)")
    return missing


@pytest.mark.parametrize("module", CONFIG_MODULES, ids=lambda p: p.name)
def test_every_configuration_field_has_a_docstring(module):
    missing = _undocumented_fields(module.read_text())
    assert not missing, f"{module.name}: no docstring (a string literal on the next line, no bare colon in its first line) for {missing}"


def test_the_field_check_finds_an_undocumented_field():
    source = 'class Config:\n    a: int = 1\n    """Documented."""\n    b: int = 2  # a comment is not shown\n    c: int = 3\n'
    assert _undocumented_fields(source) == ["Config.b", "Config.c"]
    source = 'class Inputs:\n    a: int = 1\n    """Seeds: one per image."""\n    b: int = 2\n    """Seeds (``x: y``,\n    none: 0)."""\n'
    assert _undocumented_fields(source) == ["Inputs.a (first line: a bare colon)"]
