"""pathlib_pw.thresholds: the global percentile threshold and the exact-count removal (PAPER.md section 2),
against numpy's percentile and literal hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pathlib_pw.pathway import realized_sparsity
from pathlib_pw.thresholds import as_percent, global_threshold, remove_lowest


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _ref_threshold(scores: list[torch.Tensor], p: list[float]):
    """Literal rule: pool all sites of an image, thr = numpy percentile (linear), remove score <= thr.

    Returns the masks and, per image, the largest removed score (what global_threshold returns).
    """
    b = scores[0].shape[0]
    masks = [torch.zeros(s.shape, dtype=torch.bool) for s in scores]
    thrs = []
    for i in range(b):
        pooled = np.concatenate([s[i].double().numpy().ravel() for s in scores])
        thr = np.percentile(pooled, p[i], method="linear")
        thrs.append(pooled[pooled <= thr].max())
        for m, s in zip(masks, scores):
            m[i] = torch.from_numpy(~(s[i].double().numpy() <= thr))
    return masks, np.array(thrs)


SHAPES = [(3, 4, 4), (5,), (2, 3)]


def _random_scores(b, seed, kind="normal"):
    g = _gen(seed)
    if kind == "normal":
        return [torch.randn((b, *s), generator=g) for s in SHAPES]
    if kind == "ties":  # many exact zeros (dead neurons) and repeated values
        out = []
        for s in SHAPES:
            v = torch.randint(0, 4, (b, *s), generator=g).float()
            v[torch.rand((b, *s), generator=g) < 0.6] = 0.0
            out.append(v.abs())
        return out
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("p", [0.0, 10.0, 33.3, 50.0, 80.0, 90.0, 99.0, 99.9])
def test_global_threshold_matches_numpy_percentile(kind, p):
    scores = _random_scores(3, seed=int(p * 10) + (kind == "ties"), kind=kind)
    masks, thr = global_threshold(scores, torch.full((3,), p, dtype=torch.float64))
    ref_masks, ref_thr = _ref_threshold(scores, [p] * 3)
    assert len(masks) == 3
    for m, r, s in zip(masks, ref_masks, scores):
        assert m.dtype == torch.bool and m.shape == s.shape
        assert torch.equal(m, r)
    np.testing.assert_allclose(thr.double().cpu().numpy(), ref_thr, rtol=1e-6, atol=1e-6)


def test_global_threshold_per_image_sparsities():
    scores = _random_scores(4, seed=42)
    p = [0.0, 25.0, 61.7, 95.0]
    masks, thr = global_threshold(scores, torch.tensor(p, dtype=torch.float64))
    ref_masks, ref_thr = _ref_threshold(scores, p)
    for m, r in zip(masks, ref_masks):
        assert torch.equal(m, r)
    np.testing.assert_allclose(thr.double().numpy(), ref_thr, rtol=1e-6, atol=1e-6)
    removed = 100 * (1 - sum(m.flatten(1).sum(1) for m in masks).double() / sum(math.prod(s) for s in SHAPES))
    # distinct continuous scores: removed = floor(p/100*(N-1)) + 1 neurons
    n = sum(math.prod(s) for s in SHAPES)
    expected = [100 * (math.floor(q / 100 * (n - 1)) + 1) / n for q in p]
    np.testing.assert_allclose(removed.numpy(), expected, rtol=1e-9)


def test_global_threshold_p0_removes_only_the_minimum():
    scores = [torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([[[5.0, 4.0]]])]
    masks, thr = global_threshold(scores, torch.tensor([0.0], dtype=torch.float64))
    assert masks[0].tolist() == [[True, False, True]]
    assert masks[1].tolist() == [[[True, True]]]
    assert float(thr[0]) == 1.0


def test_global_threshold_ties_remove_more_than_p():
    # 10 neurons, 7 exact zeros: at p = 50 the threshold is 0 and every zero goes -> 70 % removed
    scores = [torch.tensor([[0.0, 0.0, 0.0, 0.0, 3.0]]), torch.tensor([[0.0, 2.0, 0.0, 0.0, 1.0]])]
    masks, thr = global_threshold(scores, torch.tensor([50.0], dtype=torch.float64))
    assert float(thr[0]) == 0.0
    assert masks[0].tolist() == [[False, False, False, False, True]]
    assert masks[1].tolist() == [[False, True, False, False, True]]
    assert float(realized_sparsity(masks)[0]) == pytest.approx(70.0)


def test_global_threshold_literal_interpolation():
    # sorted pooled scores 1..5; p = 30 -> pos = 1.2 -> thr = 2 + 0.2 * (3 - 2) = 2.2 -> remove 1, 2
    scores = [torch.tensor([[5.0, 1.0]]), torch.tensor([[[4.0], [2.0], [3.0]]])]
    masks, cut = global_threshold(scores, torch.tensor([30.0], dtype=torch.float64))
    assert float(cut[0]) == 2.0  # the largest removed score
    assert masks[0].tolist() == [[True, False]]
    assert masks[1].tolist() == [[[True], [False], [True]]]


def test_global_threshold_pools_sites_not_per_site():
    # site 0 holds all small scores: a global threshold removes all of site 0 and nothing of site 1
    scores = [torch.arange(10.0).view(1, 10), torch.arange(100.0, 110.0).view(1, 10)]
    masks, _ = global_threshold(scores, torch.tensor([50.0], dtype=torch.float64))
    assert not masks[0].any()
    assert masks[1].all()


# ----------------------------------------------------------------------------------------------
# container
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [-1, -0.001, 100, 100.0, 150, float("nan"), [10.0, 20.0], [10.0, float("nan"), 20.0], [1, 2, 3, 4]]
)
def test_as_percent_rejects(bad):
    with pytest.raises(ValueError, match="sparsity"):
        as_percent(bad, 3)


def test_as_percent_accepts():
    assert as_percent(90, 3).tolist() == [90.0, 90.0, 90.0]
    assert as_percent([0, 50.5, 99.99], 3).tolist() == [0.0, 50.5, 99.99]
    assert as_percent(torch.tensor([1.0, 2.0]), 2).dtype == torch.float64
    with pytest.raises(TypeError, match="sparsity"):
        as_percent("ninety", 2)


# ----------------------------------------------------------------------------------------------
# applying a pathway
# ----------------------------------------------------------------------------------------------


def test_remove_lowest_removes_an_exact_count_breaking_ties_by_position():

    site_a = torch.tensor([[3.0, 1.0, 1.0], [5.0, 5.0, 5.0]])
    site_b = torch.tensor([[1.0, 0.5], [5.0, 5.0]])
    keep = remove_lowest([site_a, site_b], torch.tensor([3, 2]))
    # image 0: 0.5 (site b), then the two first 1.0s in site order (site a) -> the 1.0 in site b stays
    assert keep[0][0].tolist() == [True, False, False] and keep[1][0].tolist() == [True, False]
    # image 1: all tied: the first two positions go
    assert keep[0][1].tolist() == [False, False, True] and keep[1][1].tolist() == [True, True]
    none = remove_lowest([site_a, site_b], torch.tensor([0, 5]))
    assert all(m[0].all() for m in none) and not any(m[1].any() for m in none)
