"""pathlib_pw.metrics: Jaccard overlap, dead-neuron share, output change (book/methods.md: neurons, paths and sparsity; the paper's experiments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pathlib_pw.metrics import chance_jaccard, dead_share_of, jaccard, output_change
from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import record_activations

T, F_ = True, False


def _path(masks, sites=("s0", "s1"), **info):
    return Pathway.from_masks([torch.tensor(m, dtype=torch.bool) for m in masks], list(sites), **info)


# two images, two sites: site 0 has 4 neurons, site 1 has 2x2 neurons
A = _path([[[T, T, F_, F_], [T, F_, F_, F_]], [[[T, F_], [T, T]], [[F_, F_], [F_, F_]]]])
B = _path([[[T, F_, T, F_], [F_, F_, F_, F_]], [[[T, T], [F_, T]], [[F_, F_], [F_, F_]]]])


def test_jaccard_literal_overall():
    # image 0: A = {0,1 | 0,2,3}, B = {0,2 | 0,1,3}: inter = {0 | 0,3} = 3, union = {0,1,2 | 0,1,2,3} = 7
    # image 1: A = {0 | -}, B = {- | -}: inter 0, union 1
    j = jaccard(A, B)
    assert j.shape == (2,)
    assert float(j[0]) == pytest.approx(3 / 7)
    assert float(j[1]) == 0.0


def test_jaccard_literal_per_site_and_nan():
    j = jaccard(A, B, per_site=True)
    assert j.shape == (2, 2)
    assert float(j[0, 0]) == pytest.approx(1 / 3)  # {0,1} vs {0,2}
    assert float(j[0, 1]) == pytest.approx(2 / 4)  # {0,2,3} vs {0,1,3}
    assert float(j[1, 0]) == 0.0  # {0} vs {}
    assert math.isnan(float(j[1, 1]))  # both empty: undefined


def test_jaccard_symmetric_identity_and_empty_union():
    g = torch.Generator().manual_seed(0)
    p = Pathway.from_masks([torch.rand(3, 5, 4, generator=g) < 0.5, torch.rand(3, 7, generator=g) < 0.3], ["a", "b"])
    q = Pathway.from_masks([torch.rand(3, 5, 4, generator=g) < 0.5, torch.rand(3, 7, generator=g) < 0.3], ["a", "b"])
    torch.testing.assert_close(jaccard(p, q), jaccard(q, p))
    torch.testing.assert_close(jaccard(p, q, per_site=True), jaccard(q, p, per_site=True), equal_nan=True)
    assert torch.equal(jaccard(p, p), torch.ones(3))
    # literal on random masks
    for i in range(3):
        fa, fb = p.flat()[i], q.flat()[i]
        assert float(jaccard(p, q)[i]) == pytest.approx(float((fa & fb).sum()) / float((fa | fb).sum()))
    empty = Pathway.from_masks([torch.zeros(1, 3, dtype=torch.bool)], ["a"])
    assert math.isnan(float(jaccard(empty, empty)[0]))


def test_jaccard_rejects_mismatched_pathways():
    other_sites = _path([[[T, T, F_, F_], [T, F_, F_, F_]], [[[T, F_], [T, T]], [[F_, F_], [F_, F_]]]], sites=("s0", "x"))
    with pytest.raises(ValueError):
        jaccard(A, other_sites)
    with pytest.raises(ValueError):
        jaccard(A, A[0])


def _expected_intersection_by_enumeration(kept_a, avail_a, kept_b, avail_b):
    """E|A n B| of two independent uniform draws, literally: every pair of equally likely subsets."""
    from itertools import combinations

    subsets_a = list(combinations(np.flatnonzero(avail_a), kept_a))
    subsets_b = list(combinations(np.flatnonzero(avail_b), kept_b))
    return sum(len(set(u) & set(v)) for u in subsets_a for v in subsets_b) / (len(subsets_a) * len(subsets_b))


def test_chance_jaccard_literal_on_one_site_by_enumeration():
    # 6 neurons; A keeps 2 of its available {0..4}, B keeps 3 of its available {1..5}
    avail_a = np.array([T, T, T, T, T, F_])
    avail_b = np.array([F_, T, T, T, T, T])
    a = _path([[[T, T, F_, F_, F_, F_]]], sites=("s",))
    b = _path([[[F_, T, T, T, F_, F_]]], sites=("s",))
    inter = _expected_intersection_by_enumeration(2, avail_a, 3, avail_b)
    found = chance_jaccard(a, b, [torch.tensor(avail_a)[None]], [torch.tensor(avail_b)[None]])
    assert float(found[0]) == pytest.approx(inter / (2 + 3 - inter), rel=1e-6)
    # no available sets: both draw from all 6
    inter = _expected_intersection_by_enumeration(2, np.ones(6, bool), 3, np.ones(6, bool))
    assert float(chance_jaccard(a, b)[0]) == pytest.approx(inter / (5 - inter), rel=1e-6)


def test_chance_jaccard_of_two_random_paths_is_q_over_2_minus_q():
    # keeping a share q of every site, uniformly: E|A n B| = q^2 n, so J = q / (2 - q) (33 % at q = 1/2)
    g = torch.Generator().manual_seed(1)
    for q in (0.5, 0.1):
        masks = [torch.rand(2, 100, generator=g).argsort(1) < int(q * 100), torch.rand(2, 40, generator=g).argsort(1) < int(q * 40)]
        path = Pathway.from_masks(masks, ["a", "b"])
        torch.testing.assert_close(chance_jaccard(path, path), torch.full((2,), q / (2 - q)))
        torch.testing.assert_close(chance_jaccard(path, path, per_site=True), torch.full((2, 2), q / (2 - q)))


def test_chance_jaccard_matches_simulated_paths_and_is_symmetric():
    """Against a Monte Carlo of the null (numpy draws), on sites of a few hundred neurons, where the
    ratio of expectations and the expected ratio agree."""
    rng = np.random.default_rng(0)
    sizes = (300, 200)
    avail_a = [rng.random(n) < 0.6 for n in sizes]  # A gets 40 % for free ("dead" neurons) ...
    avail_b = [v | (rng.random(len(v)) < 0.2) for v in avail_a]  # ... and B most of the same
    kept_a = [int(0.5 * v.sum()) for v in avail_a]
    kept_b = [int(0.3 * v.sum()) for v in avail_b]

    def draw(avail, kept):
        masks = []
        for v, k in zip(avail, kept):
            m = np.zeros(v.shape, bool)
            m[rng.choice(np.flatnonzero(v), k, replace=False)] = True
            masks.append(m)
        return masks

    simulated = []
    for _ in range(2000):
        ma, mb = draw(avail_a, kept_a), draw(avail_b, kept_b)
        inter = sum(int((u & v).sum()) for u, v in zip(ma, mb))
        simulated.append(inter / (sum(kept_a) + sum(kept_b) - inter))
    a = Pathway.from_masks([torch.tensor(m)[None] for m in draw(avail_a, kept_a)], ["s0", "s1"])
    b = Pathway.from_masks([torch.tensor(m)[None] for m in draw(avail_b, kept_b)], ["s0", "s1"])
    va, vb = [torch.tensor(v)[None] for v in avail_a], [torch.tensor(v)[None] for v in avail_b]
    found = float(chance_jaccard(a, b, va, vb)[0])
    assert found == pytest.approx(np.mean(simulated), abs=4 * np.std(simulated) / np.sqrt(len(simulated)) + 1e-3)
    assert float(chance_jaccard(b, a, vb, va)[0]) == pytest.approx(found, rel=1e-6)
    # shared free sets raise chance: drawn from all neurons, paths of the same sizes overlap less
    assert float(chance_jaccard(a, b)[0]) < found


def test_chance_jaccard_validates_available_sets():
    a = _path([[[T, T, F_]]], sites=("s",))
    with pytest.raises(ValueError, match="available_a must contain every neuron its pathway keeps"):
        chance_jaccard(a, a, [torch.tensor([[T, F_, T]])], None)
    with pytest.raises(ValueError, match="available_b must hold one bool mask per site"):
        chance_jaccard(a, a, None, [torch.ones(1, 4, dtype=torch.bool)])
    empty = _path([[[F_, F_, F_]]], sites=("s",))
    assert math.isnan(float(chance_jaccard(empty, empty)[0]))


def test_dead_share_literal():
    acts = [
        torch.tensor([[0.0, 2.0, 0.0, 1.0], [0.0, 0.0, 3.0, 0.0]]),
        torch.tensor([[[0.5, 0.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 2.0]]]),
    ]
    # image 0: kept site0 {0,1} -> dead {0}; kept site1 {0,2,3} -> acts .5,0,0 -> dead {2,3}
    #          overall 3 dead of 5 kept; per site 1/2 and 2/3
    # image 1: kept site0 {0} -> act 0 -> dead 1/1; site1 keeps nothing -> NaN; overall 1/1
    d = dead_share_of(A, acts)
    assert d.shape == (2,)
    assert float(d[0]) == pytest.approx(3 / 5)
    assert float(d[1]) == pytest.approx(1.0)
    ps = dead_share_of(A, acts, per_site=True)
    assert ps.shape == (2, 2)
    assert float(ps[0, 0]) == pytest.approx(1 / 2)
    assert float(ps[0, 1]) == pytest.approx(2 / 3)
    assert float(ps[1, 0]) == pytest.approx(1.0)
    assert math.isnan(float(ps[1, 1]))


def test_dead_share_counts_negative_as_dead_and_validates():
    acts = [torch.tensor([[-1.0, 1e-9, 0.0, -0.0], [1.0, 1.0, 1.0, 1.0]]), torch.ones(2, 2, 2)]
    full = Pathway.from_masks([torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 2, 2, dtype=torch.bool)], ["s0", "s1"])
    d = dead_share_of(full, acts, per_site=True)
    assert float(d[0, 0]) == pytest.approx(3 / 4)
    assert float(d[1, 0]) == 0.0
    assert float(d[0, 1]) == 0.0
    with pytest.raises(ValueError):
        dead_share_of(full, acts[:1])
    with pytest.raises(ValueError):
        dead_share_of(full, [acts[0][:, :3], acts[1]])


def test_dead_share_on_network_activations(tiny):
    net = tiny.make(seed=30)
    x = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(30))
    _, acts, names = record_activations(net, x)
    # the "dead path" (neurons <= 0) is all dead; the complement is never dead
    dead = Pathway.from_masks([a <= 0 for a in acts], names)
    alive = Pathway.from_masks([a > 0 for a in acts], names)
    assert torch.equal(dead_share_of(dead, acts), torch.ones(2))
    assert torch.equal(dead_share_of(alive, acts), torch.zeros(2))
    ones = Pathway.from_masks([torch.ones_like(a, dtype=torch.bool) for a in acts], names)
    base = sum(float((a[0] <= 0).sum()) for a in acts) / sum(a[0].numel() for a in acts)
    assert float(dead_share_of(ones, acts)[0]) == pytest.approx(base)


def test_output_change_literal(tiny):
    net = tiny.make(seed=31, classes=4)
    x = torch.randn((3, 3, 8, 8), generator=torch.Generator().manual_seed(31))
    g = torch.Generator().manual_seed(32)
    masks = [torch.rand((3, *s), generator=g) < 0.5 for s in tiny.shapes]
    path = Pathway.from_masks(masks, ["act#0", "act2", "act#1"])
    with torch.no_grad():
        p0 = tiny.manual(net, x).double().softmax(1)
        p1 = tiny.manual(net, x, [m.float() for m in masks]).double().softmax(1)
    tgt = p0.argmax(1)
    ref = [abs(float(p1[i, tgt[i]]) - float(p0[i, tgt[i]])) / float(p0[i, tgt[i]]) for i in range(3)]
    got = output_change(net, x, path)
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx(ref, rel=1e-4, abs=1e-6)
    assert max(ref) > 1e-3  # the masks change the output
    # explicit target and the pathway's recorded target
    ref2 = [abs(float(p1[i, 3]) - float(p0[i, 3])) / float(p0[i, 3]) for i in range(3)]
    assert output_change(net, x, path, target=3).tolist() == pytest.approx(ref2, rel=1e-4, abs=1e-6)
    path_t = Pathway.from_masks(masks, ["act#0", "act2", "act#1"], target=torch.tensor([3, 3, 3]))
    assert output_change(net, x, path_t).tolist() == pytest.approx(ref2, rel=1e-4, abs=1e-6)


def test_output_change_zero_for_all_ones_and_model_untouched(tiny, tools):
    net = tiny.make(seed=33)
    x = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(33))
    ones = Pathway.from_masks([torch.ones((1, *s), dtype=torch.bool) for s in tiny.shapes], ["a", "b", "c"])
    flags = tools.set_mixed_modes(net)
    assert torch.equal(output_change(net, x, ones), torch.zeros(2))
    assert tools.modes(net) == flags
    assert tools.no_hooks(net)
    # broadcast of a one-image path equals the per-image values
    g = torch.Generator().manual_seed(34)
    one = Pathway.from_masks([torch.rand((1, *s), generator=g) < 0.5 for s in tiny.shapes], ["a", "b", "c"])
    both = output_change(net, x, one)
    for i in range(2):
        torch.testing.assert_close(output_change(net, x[i : i + 1], one), both[i : i + 1])


def test_map_concentration_literal_values():
    from pathlib_pw.metrics import map_concentration

    uniform = np.ones((10, 10))
    peaked = np.zeros((10, 10))
    peaked[0, :5] = -2.0  # 5 pixels = the top 5 %: all the mass
    half = np.zeros((10, 10))
    half[0, :10] = 1.0  # the top 5 pixels hold half of it
    got = map_concentration(np.stack([uniform, peaked, half, np.zeros((10, 10))]), share=0.05)
    np.testing.assert_allclose(got[:3], [0.05, 1.0, 0.5])
    assert np.isnan(got[3])
    assert map_concentration(torch.ones(2, 3, 4, 4)).shape == (2, 3)
    assert map_concentration(peaked).shape == ()
    with pytest.raises(ValueError, match="share"):
        map_concentration(uniform, share=0)
