"""extract_pathways(return_scores=True): the per-neuron scores each path was thresholded from, equal to
literal recomputations (tests.reference_impl), the paths unchanged, and clear errors where a
criterion has no such scores."""

from __future__ import annotations

import pytest
import torch

import pathlib_pw as pw
from pathlib_pw.criteria import SPECS, _scores
from tests import nets
from tests import reference_impl as R
from tests.nets import single_thread  # noqa: F401  (autouse fixture)


def _per_image(scores: list[torch.Tensor], b: int) -> list[torch.Tensor]:
    return [s[b].cpu() for s in scores]


def _assert_close(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert tuple(g.shape) == tuple(w.shape)
        torch.testing.assert_close(g, w.to(g.dtype), rtol=1e-10, atol=1e-12)


def test_neuron_mct_hands_back_hand_computed_scores():
    # HandNet at x = (1, 2) (tests/criteria/test_mct.py): |a1 x g1| = (2, 6, 0), |a2 x g2| = (2, 5, 0)
    model, x = nets.HandNet().double(), nets.hand_input()
    path, scores = pw.extract_pathway(model, x, "neuron_mct", 50.0, return_scores=True)
    assert [s.flatten().tolist() for s in scores] == [[2.0, 6.0, 0.0], [2.0, 5.0, 0.0]]
    assert path == pw.extract_pathway(model, x, "neuron_mct", 50.0)


@pytest.mark.parametrize("net", [nets.tiny_cnn, nets.tiny_resnet])
def test_neuron_mct_scores_are_activation_times_gradient(net):
    model, x = net(), nets.images(2, seed=4)
    levels = [30.0, 80.0]
    paths, scores = pw.extract_pathways(model, x, "neuron_mct", levels, return_scores=True)
    for b in range(2):
        want, _ = R.mct_scores(model, x[b : b + 1])
        _assert_close(_per_image(scores, b), want)
        # the masks are the paper's threshold of exactly these scores
        for level, path in zip(levels, paths):
            R.assert_masks_equal(R.batch_masks(path, b), R.percentile_masks(_per_image(scores, b), level)[0], "mct")


def test_neuron_intgrad_scores_are_the_literal_integrated_contributions():
    model, x = nets.tiny_cnn(), nets.images(2, seed=5)
    _, scores = pw.extract_pathways(model, x, "neuron_intgrad", [50.0], steps=4, return_scores=True)
    for b in range(2):
        want, _ = R.intgrad_scores(model, x[b : b + 1], alphas=R.intended_alphas(4))
        _assert_close(_per_image(scores, b), want)


def test_neuron_intgrad_original_code_hands_back_its_scored_sites_only():
    model, x = nets.tiny_resnet(), nets.images(1, seed=6)
    path, scores = pw.extract_pathway(model, x, "neuron_intgrad", 50.0, variant="original_code", steps=3, return_scores=True)
    want, _ = R.intgrad_original_scores(model, x, steps=3)
    assert len(scores) == path.info["scored_sites"] == len(want) < len(path.sites)
    _assert_close(_per_image(scores, 0), want)


@pytest.mark.parametrize("ties", ["all", "random"])
def test_dgr_hands_back_its_trained_gates(ties):
    model, x = nets.tiny_cnn(), nets.images(1, seed=7)
    path, scores = pw.extract_pathway(model, x, "dgr", 60.0, iterations=12, ties=ties, seed=[2], return_scores=True)
    ref = R.dgr_reference(model, x, 60.0, iterations=12, ties=ties, seed=2)
    gates = [g.expand(m.shape[1:]) for g, m in zip(ref["gates"], path.masks)]
    _assert_close(_per_image(scores, 0), gates)
    R.assert_masks_equal(R.batch_masks(path, 0), ref["masks"], "dgr")


def test_active_subnet_hands_back_neuron_mct_scores():
    model, x = nets.tiny_cnn(), nets.images(2, seed=8)
    _, scores = pw.extract_pathways(model, x, "active_subnet", None, return_scores=True)
    for b in range(2):
        want, _ = R.mct_scores(model, x[b : b + 1])
        _assert_close(_per_image(scores, b), want)


@pytest.mark.parametrize("criterion", sorted(name for name, s in SPECS.items() if s.scores))
def test_chunks_give_the_scores_of_one_call_and_the_same_paths(criterion):
    model, x = nets.tiny_cnn(), nets.images(3, seed=9)
    options = {"iterations": 5} if criterion == "dgr" else {"steps": 3} if criterion == "neuron_intgrad" else {}
    levels = None if not SPECS[criterion].needs_sparsity else [40.0, 70.0]
    plain = pw.extract_pathways(model, x, criterion, levels, **options)
    whole, scores = pw.extract_pathways(model, x, criterion, levels, return_scores=True, **options)
    chunked, parts = pw.extract_pathways(model, x, criterion, levels, batch_size=2, return_scores=True, **options)
    assert whole == plain
    assert [tuple(s.shape) for s in scores] == [tuple(m.shape) for m in plain[0].masks]
    assert all(not s.requires_grad for s in scores)
    for a, b in zip(scores, parts):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert chunked == plain


@pytest.mark.parametrize("criterion", sorted(name for name, s in SPECS.items() if not s.scores))
def test_criteria_without_one_set_of_scores_are_a_clear_error(criterion):
    model, x = nets.tiny_cnn(), nets.images(1)
    with pytest.raises(ValueError, match=rf"return_scores=True needs a criterion .* got '{criterion}'"):
        pw.extract_pathways(model, x, criterion, [50.0], return_scores=True)


def test_return_scores_must_be_a_bool():
    model, x = nets.tiny_cnn(), nets.images(1)
    with pytest.raises(TypeError, match="return_scores must be a bool, got 1"):
        pw.extract_pathway(model, x, "neuron_mct", 50.0, return_scores=1)


def test_scores_are_kept_only_where_asked_for():
    # a criterion's hand-back outside a collecting block, or inside one that does not keep, is dropped
    _scores.hand_back([torch.ones(1, 2)])
    with _scores.collecting() as outer:
        with _scores.collecting(keep=False) as inner:
            _scores.hand_back([torch.ones(1, 2)])
        _scores.hand_back([torch.zeros(1, 2)])
    assert inner == [] and len(outer) == 1 and torch.equal(outer[0][0], torch.zeros(1, 2))
    assert _scores._HANDED.get() is None
