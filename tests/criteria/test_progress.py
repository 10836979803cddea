"""``progress=True``: tqdm bars on stderr over each criterion's outer loop, closed on errors, results unchanged."""

from __future__ import annotations

import re

import pytest
import torch
from tqdm import tqdm

import pathlib_pw as pw
from pathlib_pw.criteria import greedy as greedy_module
from tests import nets
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

# (method, variant, options, the bar's final count on TinyCNN: 3 sites, each its own rectifier module)
SETUPS = [
    ("greedy", "intended", {"rounds": 5}, "5/5"),
    ("greedy", "original_code", {"rounds": 4}, "4/4"),
    ("dgr", "intended", {"iterations": 7}, "7/7"),
    ("neuron_intgrad", "intended", {"steps": 4}, "3/3"),  # one unit per site
    ("neuron_intgrad", "original_code", {"steps": 4}, "3/3"),
]


def _same(a: list[pw.Pathway], b: list[pw.Pathway]) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert p.sites == q.sites
        assert all(torch.equal(m, n) for m, n in zip(p.masks, q.masks))
        assert torch.equal(p.sparsity, q.sparsity)
        assert p.info.keys() == q.info.keys()
        for key, value in p.info.items():
            assert torch.equal(value, q.info[key]) if isinstance(value, torch.Tensor) else value == q.info[key], key


@pytest.mark.parametrize(("method", "variant", "options", "count"), SETUPS)
def test_bar_reaches_its_total_and_results_are_unchanged(capsys, method, variant, options, count):
    model, x = nets.tiny_cnn(), nets.images(2)
    quiet = pw.extract_pathways(model, x, method, [30.0, 60.0], variant=variant, **options)
    assert capsys.readouterr().err == ""
    shown = pw.extract_pathways(model, x, method, [30.0, 60.0], variant=variant, progress=True, **options)
    err = capsys.readouterr().err
    assert method in err and count in err and "100%" in err
    _same(quiet, shown)


def test_extract_pathway_passes_progress_on(capsys):
    model, x = nets.tiny_cnn(), nets.images(1)
    pw.extract_pathway(model, x, "greedy", 50.0, rounds=3, progress=True)
    assert "3/3" in capsys.readouterr().err
    pw.extract_pathway(model, x, "greedy", 50.0, rounds=3)
    assert capsys.readouterr().err == ""


def test_intgrad_counts_one_unit_per_rectifier_module_in_original_code(capsys):
    # TinyResNet: one relu module called 5 times and head_relu, so 6 sites but 2 modules scored
    model, x = nets.tiny_resnet(), nets.images(1)
    pw.extract_pathway(model, x, "neuron_intgrad", 50.0, steps=2, progress=True)
    assert "6/6" in capsys.readouterr().err
    pw.extract_pathway(model, x, "neuron_intgrad", 50.0, variant="original_code", steps=2, progress=True)
    assert "2/2" in capsys.readouterr().err


def test_dgr_retries_in_the_postfix(capsys):
    # HandNet whose prediction any shrinking of the gates flips: every pass fails, 2 retries
    model = nets.HandNet(b3=(0.0, 6.9), w3=[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]).double()
    options = dict(init="r", lam=10.0, lr=0.1, iterations=5, max_retries=2, seed=[3])
    quiet = pw.extract_pathways(model, nets.hand_input(), "dgr", [50.0], **options)
    shown = pw.extract_pathways(model, nets.hand_input(), "dgr", [50.0], progress=True, **options)
    assert int(shown[0].info["retries"][0]) == 2
    err = capsys.readouterr().err
    assert "5/5" in err and "retry 2/2" in err
    _same(quiet, shown)


@pytest.mark.parametrize(
    ("method", "options"), [("greedy", {"rounds": 3}), ("dgr", {"iterations": 4, "init": "r"}), ("random", {"seed": 1})]
)
def test_chunks_get_an_outer_bar(capsys, method, options):
    model, x = nets.tiny_cnn(), nets.images(5)
    quiet = pw.extract_pathways(model, x, method, [40.0], batch_size=2, **options)
    assert capsys.readouterr().err == ""
    shown = pw.extract_pathways(model, x, method, [40.0], batch_size=2, progress=True, **options)
    err = capsys.readouterr().err
    assert re.search(r"chunks of 2 images: 100%.*3/3", err)
    _same(quiet, shown)


def test_one_chunk_has_no_outer_bar(capsys):
    pw.extract_pathways(nets.tiny_cnn(), nets.images(2), "greedy", [40.0], batch_size=2, rounds=2, progress=True)
    err = capsys.readouterr().err
    assert "chunk" not in err and "2/2" in err


def test_progress_must_be_a_bool():
    model, x = nets.tiny_cnn(), nets.images(1)
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="progress"):
            pw.extract_pathway(model, x, "neuron_mct", 50.0, progress=bad)
    with pytest.raises(TypeError, match="progress"):
        pw.extract_pathways(model, x, "random", [50.0], progress="yes")


def test_bars_are_closed_after_an_exception(capsys, monkeypatch):
    calls = []

    def failing_taylor(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the initial scoring, round 1's re-scoring, then round 2's
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    real = greedy_module.taylor_scores
    monkeypatch.setattr(greedy_module, "taylor_scores", failing_taylor)
    before = set(tqdm._instances)
    with pytest.raises(RuntimeError, match="boom") as raised:
        pw.extract_pathways(nets.tiny_cnn(), nets.images(4), "greedy", [40.0], batch_size=2, rounds=5, progress=True)
    # the traceback (kept alive by ``raised``) still references the bars: they were closed, not collected
    assert raised.traceback
    assert set(tqdm._instances) == before
    assert "0/5" in capsys.readouterr().err
