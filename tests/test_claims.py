"""The claims registry (pathlib_pw.claims): the rules decide on hand-made numbers, and the committed
book (the intro's table, every chapter's verdict line) agrees with the registry and the caches."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from pathlib_pw import claims
from pathlib_pw.claims import CLAIMS, VERDICTS, Evaluation

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
INTRO = BOOK / "intro.ipynb"
# a rendered verdict line: "**Verdict: <verdict>** (<qualifier>) ..."
VERDICT_LINE = re.compile(r"\*\*Verdict: (?P<verdict>[^*]+?)\.?\*\*(?P<rest>.*)", re.S)
KEY = re.compile(r'"(\w+)"')
CELL = re.compile(r"(?<!\\)\|")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _markdown_output(cell: dict) -> str:
    return "".join("".join(o["data"]["text/markdown"]) for o in cell.get("outputs", []) if "text/markdown" in o.get("data", {}))


def _parenthetical(text: str) -> str:
    """The qualifier at the start of ``text`` (`` (a (b) c)...`` -> ``a (b) c``), or ''."""
    if not text.startswith(" ("):
        return ""
    depth = 0
    for i, char in enumerate(text[1:], 1):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return text[2:i]
    raise ValueError(f"unbalanced parentheses in {text!r}")


def _split_verdict(text: str) -> tuple[str, str]:
    """``holds partly (not for DGR(init=1))`` -> (``holds partly``, ``not for DGR(init=1)``)."""
    verdict = max((v for v in VERDICTS if text.startswith(v)), key=len, default=None)
    assert verdict is not None, f"{text!r} does not start with a verdict of the vocabulary {VERDICTS}"
    qualifier = _parenthetical(text[len(verdict) :])
    assert text[len(verdict) :].strip() in ("", f"({qualifier})"), f"unexpected text after the verdict: {text!r}"
    return verdict, qualifier


def _verdict_cell(path: Path) -> tuple[list[str], str] | None:
    """The keys a chapter's registry-rendered verdict cell names, and its committed Markdown output."""
    for cell in _cells(path):
        if cell["cell_type"] == "code" and "verdict_markdown(" in _source(cell):
            return [k for k in KEY.findall(_source(cell)) if k in CLAIMS], _markdown_output(cell)
    return None


def _chapter_verdicts(output: str) -> list[tuple[str, str]]:
    found = []
    for line in output.split("\n\n"):
        match = VERDICT_LINE.search(line)
        assert match, f"no '**Verdict: ...**' in {line[:80]!r}"
        found.append((match["verdict"], _parenthetical(match["rest"])))
    return found


def _intro_table() -> dict[str, list[str]]:
    """The committed claims table of the intro: statement -> its cells (unescaped)."""
    outputs = [_markdown_output(c) for c in _cells(INTRO) if c["cell_type"] == "code" and "table_markdown(" in _source(c)]
    assert len(outputs) == 1 and outputs[0], "the intro must show the claims table as one committed Markdown output"
    lines = outputs[0].splitlines()
    assert lines[0] == "| claim | the paper | ours | verdict | chapter |"
    rows = {}
    for line in lines[2:]:
        cells = [c.strip().replace("\\|", "|") for c in CELL.split(line)[1:-1]]
        rows[cells[0]] = cells
    return rows


@pytest.fixture(scope="module")
def evaluated() -> dict[str, Evaluation]:
    return {key: claims.evaluate(key, "book") for key in CLAIMS}


# ---------------------------------------------------------------------------------------------------
# (a) the committed book agrees with the registry and the caches


def test_the_intro_table_is_the_registry_rendered_now(evaluated):
    rows = _intro_table()
    assert list(rows) == [c.statement for c in CLAIMS.values()], "the intro's rows are not the registry's claims, in order"
    committed = [_markdown_output(c) for c in _cells(INTRO) if "table_markdown(" in _source(c)][0]
    assert committed == claims.table_markdown("book"), "the intro's table is stale: re-execute book/intro.ipynb"


@pytest.mark.parametrize("key", list(CLAIMS))
def test_a_chapters_verdict_line_equals_the_intros_row(key, evaluated):
    found = CLAIMS[key]
    result = evaluated[key]
    row = _intro_table()[found.statement]
    assert _split_verdict(row[3]) == (result.verdict, result.qualifier), f"the intro's row of {key!r} is stale"
    assert row[4] == f"[{found.chapter_title}]({found.chapter}.ipynb)"
    path = BOOK / f"{found.chapter}.ipynb"
    cell = _verdict_cell(path)
    assert cell is not None, f"{path.name} has no verdict cell rendered from the registry"
    keys, output = cell
    chapter = dict(zip(keys, _chapter_verdicts(output)))
    assert chapter[key] == _split_verdict(row[3]) == (result.verdict, result.qualifier)


@pytest.mark.parametrize("chapter", sorted({c.chapter for c in CLAIMS.values()}))
def test_a_chapters_verdict_cell_shows_its_claims_rendered_now(chapter, evaluated):
    cell = _verdict_cell(BOOK / f"{chapter}.ipynb")
    assert cell is not None, f"{chapter}.ipynb has no verdict cell rendered from the registry"
    keys, output = cell
    assert keys == [c.key for c in claims.chapter_claims(chapter)], f"{chapter}.ipynb must show the verdict of each of its claims"
    assert output == "\n\n".join(claims.verdict_markdown(k, "book") for k in keys), f"{chapter}.ipynb's verdict is stale: re-execute it"


# ---------------------------------------------------------------------------------------------------
# (b) the registry


@pytest.mark.parametrize("key", list(CLAIMS))
def test_a_claim_names_an_existing_chapter_and_a_verdict_of_the_vocabulary(key, evaluated):
    found = claims.claim(key)
    assert found.key == key
    assert (BOOK / f"{found.chapter}.ipynb").is_file(), found.chapter
    assert f"file: book/{found.chapter}\n" in (ROOT / "_toc.yml").read_text()
    assert evaluated[key].verdict in VERDICTS
    assert found.statement and found.rule and evaluated[key].ours and evaluated[key].paper
    assert all(isinstance(v, float) for v in evaluated[key].numbers.values())


def test_the_vocabulary_has_five_verdicts():
    assert VERDICTS == ("holds", "holds partly", "does not hold on our model", "inconclusive at this sample size", "not testable here")


def test_a_verdict_line_states_the_rule_before_the_numbers(evaluated):
    line = claims.verdict_markdown("path_overlap", "book")
    assert line.startswith(f"**Verdict: {evaluated['path_overlap'].verdict}**")
    assert line.index("Rule:") < line.index("Ours:") < line.index("the paper:")
    # several claims in one chapter: each line says which claim it decides
    assert claims.verdict_markdown("output_kept", "book").startswith(f"*{CLAIMS['output_kept'].statement}.* **Verdict:")


def test_the_table_escapes_pipes_in_cells(monkeypatch):
    fake = Evaluation("holds", "", ours="$|A|$", paper="p", numbers={})
    monkeypatch.setattr(claims, "evaluate", lambda key, profile="book": fake)
    lines = claims.table_markdown("book").splitlines()
    assert len(lines) == 2 + len(CLAIMS) and all(len(CELL.split(line)) == 7 for line in lines)


def test_a_stale_book_cache_is_an_error_not_a_recomputation(monkeypatch):
    from pathlib_pw import experiments
    from pathlib_pw.runner import cache

    monkeypatch.setattr(cache, "is_current", lambda *args: False)
    monkeypatch.setattr(experiments, "load_or_run", lambda *args, **kwargs: pytest.fail("recomputed"))
    with pytest.raises(RuntimeError, match="stale"):
        claims.evaluate("path_overlap", "book")


@pytest.mark.parametrize(
    ("key", "module", "experiments"), [("lerf", "lerf_tables", ("lerf_digits", "lerf")), ("roar", "roar_tables", ("roar", "roar_mask"))]
)
def test_lerf_and_roar_are_decided_by_their_tables_module(monkeypatch, key, module, experiments):
    from importlib import import_module

    tables = import_module(f"pathlib_pw.experiments.{module}")
    decided = Evaluation("holds", "", ours="o", paper="p", numbers={"x": 1.0})
    calls = []
    monkeypatch.setattr(claims, "_load", lambda name, profile: f"{name}/{profile}")
    monkeypatch.setattr(tables, "evaluate_claim", lambda *results: calls.append(results) or decided, raising=False)
    assert claims.evaluate(key, "book") is decided
    assert calls == [tuple(f"{name}/book" for name in experiments)]
    monkeypatch.setattr(tables, "evaluate_claim", lambda *results: "holds", raising=False)
    with pytest.raises(TypeError, match="Evaluation"):
        claims.evaluate(key, "book")


# ---------------------------------------------------------------------------------------------------
# (c) each rule on hand-made numbers, for every verdict it can return


def test_path_overlap_rule():
    rule = claims.path_overlap_rule
    above = {50.0: (20.0, 15.0), 90.0: (30.0, 25.0)}
    low = {50.0: {"Greedy": 5.0, "Random": -0.5}, 90.0: {"Greedy": 14.0, "Random": 0.1}}
    assert rule(above, low) == ("holds", "")
    # a pruner whose excess is at most 0 is always far below; exactly twice is not "more than twice"
    assert rule(above, {50.0: {"Greedy": 10.0, "Random": -9.0}, 90.0: low[90.0]}) == (
        "holds partly",
        "not far more than with Greedy at 50 %",
    )
    assert rule({50.0: (3.0, -0.1), 90.0: (30.0, 25.0)}, low) == ("holds partly", "no more than chance at 50 %")
    assert rule({50.0: (3.0, -0.1), 90.0: (30.0, 0.0)}, low) == ("does not hold on our model", "no more than chance")
    every = {50.0: {"Greedy": 10.0, "Random": 12.0}, 90.0: {"Greedy": 20.0, "Random": 16.0}}
    assert rule(above, every, factor=2.0) == (
        "does not hold on our model",
        "not far more than with Greedy and Random at 50 %; not far more than with Greedy and Random at 90 %",
    )
    with pytest.raises(ValueError, match="same non-empty levels"):
        rule({50.0: (1.0, 0.5)}, {90.0: {}})


def test_contribution_dead_rule():
    assert claims.contribution_dead_rule(0.0) == ("holds", "by construction")
    assert claims.contribution_dead_rule(0.01) == ("does not hold on our model", "")


def test_pathological_pruner_rule():
    rule = claims.pathological_pruner_rule
    assert rule({50.0: (46.0, 99.0), 90.0: (69.0, 15.0)}) == ("holds", "")
    assert rule({50.0: (46.0, 10.0), 90.0: (69.0, 99.0)}) == (
        "holds partly",
        "its path keeps the output at 50 % but is not mostly dead there",
    )
    assert rule({50.0: (46.0, 99.0), 90.0: (69.0, 99.9)}) == (
        "does not hold on our model",
        "its path does not keep the output at either level",
    )
    assert rule({90.0: (50.0, 99.0)}) == ("does not hold on our model", "")
    with pytest.raises(ValueError, match="at_levels"):
        rule({})


def test_fifteen_percent_point_rule():
    assert claims.fifteen_percent_point_rule(15.0) == ("holds", "")
    assert claims.fifteen_percent_point_rule(15.1) == ("does not hold on our model", "")


def test_output_kept_rule():
    rule = claims.output_kept_rule
    destroyed = {"Greedy": 95.0, "Random": 100.0, "Activation (dead first)": 30.0}
    assert rule({"NeuronMCT": destroyed, "NeuronIntGrad": destroyed}) == ("holds", "")
    some = {"Greedy": 95.0, "Random": 15.0, "Activation (dead first)": 12.0}
    assert rule({"NeuronMCT": destroyed, "NeuronIntGrad": some}) == (
        "holds partly",
        "not against Activation (dead first) and Random",
    )
    assert rule({"NeuronMCT": destroyed, "NeuronIntGrad": {}}) == ("holds partly", "NeuronIntGrad keeps it at no sparsity")
    kept = {"Greedy": 10.0, "Random": 1.0}
    assert rule({"NeuronMCT": kept, "NeuronIntGrad": kept}) == ("does not hold on our model", "every other path keeps it too")
    assert rule({"NeuronMCT": {}, "NeuronIntGrad": {}}) == ("does not hold on our model", "no contribution path keeps the output")


def test_concentration_rule():
    rule, nan = claims.concentration_rule, math.nan
    assert rule(0.2, {"a": [0.3, 0.5, 0.9], "b": [0.4, 0.6]}) == ("holds", "")
    assert rule(0.2, {"a": [0.3, 0.9, nan, 0.1], "b": [0.4, 1.0]}) == ("holds", "until the path disconnects")
    assert rule(0.2, {"a": [0.3, 0.25, 0.9], "b": [0.4, 1.0]}) == ("holds partly", "not at every step")
    assert rule(0.2, {"a": [0.1, 0.15], "b": [nan]}) == ("does not hold on our model", "")


def test_qualitative_rule():
    assert claims.qualitative_rule() == ("not testable here", "a visual impression")


def test_sanity_rule():
    rule = claims.sanity_rule
    far = {"spearman_abs": (0.6, 0.7), "ssim": (0.5, 0.8)}  # intervals of (map - Gradients)
    like = {"spearman_abs": (-0.1, 0.2), "ssim": (0.0, 0.3)}  # at the 0.3 margin counts as falling
    straddles = {"spearman_abs": (0.1, 0.4), "ssim": (0.0, 0.2)}
    assert rule(far, {"NeuronMCT": like, "NeuronIntGrad": like}) == ("holds", "")
    assert rule(far, {"NeuronMCT": like, "NeuronIntGrad @ 50 %": far}) == (
        "holds partly",
        "PathwayGrad stays more than the margin above Gradients: NeuronIntGrad @ 50 %",
    )
    assert rule(like, {"NeuronMCT": like}) == ("holds partly", "Guided Backprop changes")
    assert rule(like, {"NeuronMCT": far}) == ("does not hold on our model", "")
    # one measure far and the other straddling: Guided Backprop's part is undecided
    assert rule({"spearman_abs": (0.6, 0.7), "ssim": (0.2, 0.5)}, {"NeuronMCT": like}) == (
        "inconclusive at this sample size",
        "Guided Backprop's interval contains the 0.3 margin",
    )
    assert rule(far, {"NeuronMCT": straddles, "NeuronIntGrad": like}) == (
        "inconclusive at this sample size",
        "PathwayGrad's interval contains the 0.3 margin: NeuronMCT",
    )
    # a PathwayGrad map far in one measure is decided (it does not fall like Gradients in each)
    assert rule(far, {"NeuronMCT": {"spearman_abs": (0.4, 0.5), "ssim": (0.0, 0.1)}})[0] == "holds partly"


def test_decoding_rule():
    rule = claims.decoding_rule
    assert rule({50.0: True, 90.0: True}) == ("holds", "")
    assert rule({50.0: True, 90.0: False, 98.0: False}) == ("holds partly", "at 50 % only")
    assert rule({50.0: False, 90.0: False}) == ("does not hold on our model", "")
    with pytest.raises(ValueError, match="wins must"):
        rule({})


# ---------------------------------------------------------------------------------------------------
# (d) bad arguments


def test_local_linearity_rule():
    rule = claims.local_linearity_rule
    below, level, above = (0.2, 0.6), (0.7, 1.3), (1.2, 2.0)
    assert rule({"A": {"Random": below, "Greedy": below}, "B": {"Random": below, "Greedy": below}}) == ("holds", "")
    # an interval that reaches 1 is "as linear", not beaten
    assert rule({"A": {"Random": below, "Greedy": level}, "B": {"Random": below, "Greedy": below}}) == (
        "holds partly",
        "A more linear than Random only; B more linear than Random and Greedy only",
    )
    assert rule({"A": {"Random": level, "Greedy": level}, "B": {"Random": below, "Greedy": above}}) == (
        "holds partly",
        "A than none; B more linear than Random only",
    )
    assert rule({"A": {"Random": level, "Greedy": above}, "B": {"Random": above, "Greedy": level}}) == (
        "does not hold on our model",
        "no control of the same size is less linear; Greedy and Random clearly more",
    )
    assert rule({"A": {"Random": level}}) == ("does not hold on our model", "no control of the same size is less linear")
    with pytest.raises(ValueError, match="vs_controls"):
        rule({})
    with pytest.raises(ValueError, match="vs_controls"):
        rule({"A": {}})


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="key must be one of"):
        claims.claim("overlap")
    with pytest.raises(ValueError, match="key must be one of"):
        claims.evaluate("overlap")
    with pytest.raises(ValueError, match="key must be one of"):
        claims.verdict_markdown("overlap")
    with pytest.raises(ValueError, match="profile must be one of"):
        claims.evaluate("path_overlap", "books")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="verdict must be one of .*'does not hold on our model'"):
        Evaluation("does not transfer", "", ours="", paper="", numbers={})  # type: ignore[arg-type]


def test_an_evaluations_numbers_are_read_only_floats():
    result = Evaluation("holds", "", ours="", paper="", numbers={"n": 3})
    assert result.numbers == {"n": 3.0} and isinstance(result.numbers["n"], float)
    with pytest.raises(TypeError):
        result.numbers["n"] = 4.0  # type: ignore[index]
    assert Evaluation("holds partly", "not for X(1)", ours="", paper="", numbers={}).text == "holds partly (not for X(1))"


def test_the_vocabulary_sits_below_the_experiments():
    """A tables module returns an Evaluation without importing the registry (which imports it)."""
    from pathlib_pw import verdicts

    assert claims.Evaluation is verdicts.Evaluation and claims.VERDICTS is verdicts.VERDICTS
