"""pathlib_pw.thresholds: the global percentile threshold and the exact-count removal (book/methods.md: neurons, paths and sparsity),
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


# ----------------------------------------------------------------------------------------------
# remove_lowest: tie keys
# ----------------------------------------------------------------------------------------------


def _remove_lowest_literal(scores: list[torch.Tensor], count: list[int], keys: torch.Tensor | None) -> list[torch.Tensor]:
    """Image b loses the first count[b] neurons of Python's stable sort of its pooled neurons by
    (score, key) (by score alone without keys: equal scores stay in position order)."""
    masks = [torch.ones(s.shape, dtype=torch.bool) for s in scores]
    for b in range(scores[0].shape[0]):
        values = [float(v) for s in scores for v in s[b].flatten().tolist()]
        key = [0] * len(values) if keys is None else keys[b].tolist()
        removed = set(sorted(range(len(values)), key=lambda j: (values[j], key[j]))[: count[b]])
        start = 0
        for m in masks:
            size = m[b].numel()
            m[b].view(-1)[:] = torch.tensor([start + j not in removed for j in range(size)])
            start += size
    return masks


@pytest.mark.parametrize("keys", ["permutation", "repeated", None])
@pytest.mark.parametrize("seed", range(6))
def test_remove_lowest_matches_a_stable_sort_by_score_then_tie_key(seed, keys):
    """Many exact ties (60 % zeros, four values): the removed set is the first ``count`` of a sort on
    (score, key), for distinct keys (a permutation), repeated keys (then position decides) and none."""
    b = 5
    scores = _random_scores(b, seed=100 + seed, kind="ties")
    n = sum(math.prod(s) for s in SHAPES)
    g = _gen(seed)
    count = torch.randint(0, n + 1, (b,), generator=g)
    count[0], count[1] = 0, n  # nothing and everything
    if keys == "permutation":
        tie_keys = torch.stack([torch.randperm(n, generator=g) for _ in range(b)])
    elif keys == "repeated":
        tie_keys = torch.randint(0, 3, (b, n), generator=g)
    else:
        tie_keys = None
    got = remove_lowest(scores, count, tie_keys=tie_keys)
    want = _remove_lowest_literal(scores, count.tolist(), tie_keys)
    for m, w in zip(got, want):
        assert torch.equal(m, w)
    removed = sum((~m).flatten(1).sum(1) for m in got)
    assert removed.tolist() == count.tolist()


def test_remove_lowest_without_tie_keys_is_the_position_rule():
    """``tie_keys=None`` and keys 0, 1, 2, ... (position itself) give the same masks."""
    scores = _random_scores(4, seed=7, kind="ties")
    n = sum(math.prod(s) for s in SHAPES)
    count = torch.tensor([3, 20, 41, n - 1])
    plain = remove_lowest(scores, count)
    by_position = remove_lowest(scores, count, tie_keys=torch.arange(n).expand(4, n))
    assert all(torch.equal(a, b) for a, b in zip(plain, by_position))


def test_remove_lowest_random_tie_keys_choose_uniformly_within_a_straddling_block():
    """Scores 0.5, then seven tied 1s, then a 2: removing 4 takes the 0.5 and 3 of the 7 tied. Over
    2000 seeded permutations (one per row) each tied neuron goes with frequency 3/7, within five
    binomial standard errors; by position the first three always go."""
    rows, tied, take = 2000, 7, 3
    site_a = torch.tensor([1.0, 1.0, 0.5, 1.0, 1.0]).expand(rows, 5)
    site_b = torch.tensor([1.0, 2.0, 1.0, 1.0]).expand(rows, 4)
    is_tied = torch.tensor([True, True, False, True, True, True, False, True, True])
    count = torch.full((rows,), 1 + take)
    keys = torch.stack([torch.randperm(9, generator=_gen(seed)) for seed in range(rows)])
    keep = remove_lowest([site_a, site_b], count, tie_keys=keys)
    removed = ~torch.cat(keep, 1)
    assert (removed.sum(1) == 1 + take).all()
    assert removed[:, 2].all() and not removed[:, 6].any()
    frequency = removed[:, is_tied].double().mean(0)
    p = take / tied
    assert (frequency - p).abs().max() <= 5 * math.sqrt(p * (1 - p) / rows), frequency.tolist()
    by_position = ~torch.cat(list(remove_lowest([site_a, site_b], count)), 1)
    assert by_position[:, is_tied].tolist() == [[True, True, True, False, False, False, False]] * rows


def test_remove_lowest_rejects_tie_keys_of_the_wrong_shape():
    scores = _random_scores(2, seed=0, kind="ties")
    n = sum(math.prod(s) for s in SHAPES)
    with pytest.raises(ValueError, match="tie_keys"):
        remove_lowest(scores, torch.tensor([3, 4]), tie_keys=torch.arange(n))
    with pytest.raises(ValueError, match="tie_keys"):
        remove_lowest(scores, torch.tensor([3, 4]), tie_keys=torch.ones(2, n, dtype=torch.bool))


def test_remove_lowest_with_tie_keys_is_recorded_and_replayed():
    """The tie order is an input of the decision, like the scores: replayed with the same keys the
    recorded masks come back unchanged; another tie order moves neurons inside the tied block (all
    at the cut, so within any band) and the replay reports more changes than rounding allows."""
    from pathlib_pw import decisions

    scores = _random_scores(2, seed=3, kind="ties")
    n = sum(math.prod(s) for s in SHAPES)
    keys = torch.stack([torch.randperm(n, generator=_gen(s)) for s in (11, 12)])
    count = torch.tensor([40, 50])
    loose = decisions.Rounding("threshold", capacity=0.1, band=1.0)
    with decisions.recording() as log, decisions.criterion(loose):
        recorded = remove_lowest(scores, count, tie_keys=keys)
    assert len(log) == 2
    with decisions.replaying(log) as report, decisions.criterion(loose):
        same = remove_lowest(scores, count, tie_keys=keys)
    assert report.ok and report.changed == 0
    assert all(torch.equal(a, b) for a, b in zip(same, recorded))
    other = torch.stack([torch.randperm(n, generator=_gen(s)) for s in (13, 14)])
    with decisions.replaying(log) as report, decisions.criterion(loose):
        remove_lowest(scores, count, tie_keys=other)
    assert not report.ok
    assert any("neurons changed" in c.problem for c in report.checks)


def test_tie_broken_pathway_records_the_tied_block_it_cut():
    """Hand example: 10 neurons, scores 0 0 0 0 1 1 1 1 2 3; 30 % -> floor(0.3 x 9) + 1 = 3 removed,
    all from the block of four zeros: tied share 0.4, removed from it 0.3."""
    from pathlib_pw.thresholds import tie_broken_pathway

    scores = [torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0]])]
    keys = torch.tensor([[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]])
    path = tie_broken_pathway(scores, torch.tensor([30.0], dtype=torch.float64), ["s"], "x", keys)
    assert path.masks[0].tolist() == [[True, False, False, False, True, True, True, True, True, True]]
    assert path.info["tied_share"].tolist() == pytest.approx([0.4]) and path.info["tie_removed_share"].tolist() == pytest.approx([0.3])
    whole = tie_broken_pathway(scores, torch.tensor([40.0], dtype=torch.float64), ["s"], "x", keys)  # 4 removed: the block
    assert whole.info["tied_share"].tolist() == pytest.approx([0.4]) and whole.info["tie_removed_share"].tolist() == pytest.approx([0.4])


def test_percentile_count_is_k_plus_one_of_the_paper_rule():
    """Hand values for N = 10 neurons (two sites of 4 and 6): k = floor(p / 100 x 9), k + 1 removed;
    and it equals the number global_threshold removes on distinct scores."""
    from pathlib_pw.thresholds import percentile_count

    scores = [torch.arange(4.0).view(1, 4), torch.arange(4.0, 10.0).view(1, 6)]
    for p, want in ((0.0, 1), (30.0, 3), (50.0, 5), (99.9, 9)):
        level = torch.tensor([p], dtype=torch.float64)
        assert percentile_count(scores, level).tolist() == [want], p
        masks, _ = global_threshold(scores, level, checkpoint=False)
        assert sum(int((~m).sum()) for m in masks) == want, p


def test_threshold_pathways_sparsity_from_the_selections_counts_equals_counting_its_masks(monkeypatch):

    # 1.3 million scores per image with a block of exact zeros: the bracket answers and counts what it
    # kept; the sparsity from those counts must be the masks' own, bit for bit, on every branch
    from pathlib_pw import selection
    from pathlib_pw.thresholds import threshold_pathway

    counted = []
    real = selection._bracketed
    monkeypatch.setattr(selection, "_bracketed", lambda *a: (lambda r: counted.append(r[1] is not None) or r)(real(*a)))
    g = _gen(5)
    flat = torch.where(torch.rand(3, 1_300_000, generator=g) < 0.4, 0.0, torch.rand(3, 1_300_000, generator=g))
    scores = [flat[:, :300_000].view(3, 30, 100, 100), flat[:, 300_000:]]
    for p in ([90.0, 50.0, 99.9], [10.0, 30.0, 0.0]):  # the last: the cut falls in the zeros (a bound's tie)
        path = threshold_pathway(scores, torch.tensor(p, dtype=torch.float64), ["a", "b"], "test")
        assert torch.equal(path.sparsity, realized_sparsity(path.masks)), p
        want, _ = _ref_threshold(scores, p)
        assert all(torch.equal(m, w) for m, w in zip(path.masks, want)), p
    assert any(counted) and not all(counted)
