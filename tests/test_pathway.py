"""pathlib_pw.pathway: the Pathway container, masking, and the global percentile threshold (PAPER.md s. 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pathlib_pw.pathway import Pathway, as_percent, global_threshold, map_images, realized_sparsity
from pathlib_pw.sites import record_activations


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


def _masks(b=3, seed=0, keep=0.5):
    g = _gen(seed)
    return [torch.rand((b, *s), generator=g) < keep for s in SHAPES]


def test_realized_sparsity_flat_kept_per_site_literal():
    masks = _masks(3, seed=1)
    path = Pathway.from_masks(masks, ["a", "b", "c"], method="m", target=torch.tensor([1, 2, 0]), note="x")
    n = sum(math.prod(s) for s in SHAPES)
    assert path.num_neurons == n == 59
    assert len(path) == path.batch_size == 3
    for i in range(3):
        kept = sum(int(m[i].sum()) for m in masks)
        assert float(path.sparsity[i]) == pytest.approx(100.0 * (n - kept) / n, abs=1e-5)
        flat = []
        for m in masks:
            flat += m[i].flatten().tolist()
        assert path.flat()[i].tolist() == flat
        for s, m in enumerate(masks):
            assert float(path.kept_per_site()[i, s]) == pytest.approx(m[i].float().mean().item())
    assert path.flat().shape == (3, n)
    assert path.kept_per_site().shape == (3, 3)
    assert path.info == {"target": path.info["target"], "note": "x"}


def test_pathway_validation():
    masks = _masks(2)
    with pytest.raises(ValueError):
        Pathway(masks, ["a", "b"], realized_sparsity(masks))
    with pytest.raises(TypeError):
        Pathway([m.float() for m in masks], ["a", "b", "c"], realized_sparsity(masks))
    # from_masks converts 0/1 floats to bool
    p = Pathway.from_masks([m.float() for m in masks], ["a", "b", "c"])
    assert all(m.dtype == torch.bool for m in p.masks)


def test_getitem_and_cat_roundtrip():
    masks = _masks(4, seed=2)
    tgt = torch.tensor([5, 6, 7, 8])
    path = Pathway.from_masks(masks, ["a", "b", "c"], method="mct", target=tgt, thr=torch.arange(4.0), p=90.0)
    one = path[2]
    assert len(one) == 1
    for m, o in zip(masks, one.masks):
        assert torch.equal(o, m[2:3])
    assert one.info["target"].tolist() == [7]
    assert one.info["thr"].tolist() == [2.0]
    assert one.info["p"] == 90.0
    assert one.method == "mct" and one.sites == ["a", "b", "c"]
    assert torch.equal(one.sparsity, path.sparsity[2:3])

    sub = path[[3, 0]]
    assert sub.info["target"].tolist() == [8, 5]
    for m, o in zip(masks, sub.masks):
        assert torch.equal(o, m[[3, 0]])
    sl = path[1:3]
    assert sl.info["target"].tolist() == [6, 7]

    back = Pathway.cat([path[0], path[1:3], path[3]])
    assert len(back) == 4
    for m, o in zip(masks, back.masks):
        assert torch.equal(o, m)
    assert torch.equal(back.sparsity, path.sparsity)
    assert back.info["target"].tolist() == [5, 6, 7, 8]
    assert back.info["thr"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert back.info["p"] == 90.0

    other = Pathway.from_masks(masks, ["a", "b", "x"])
    with pytest.raises(ValueError):
        Pathway.cat([path, other])
    with pytest.raises(ValueError):
        Pathway.cat([])


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


def _tiny_path(tiny, b, seed, keep=0.6):
    g = _gen(seed)
    masks = [torch.rand((b, *s), generator=g) < keep for s in tiny.shapes]
    return Pathway.from_masks(masks, ["act#0", "act2", "act#1"])


@pytest.mark.parametrize("act", [nn.ReLU, nn.ReLU6])
@pytest.mark.parametrize("inplace", [True, False])
def test_applied_equals_manual_masked_forward(tiny, tools, act, inplace):
    net = tiny.make(act=act, inplace=inplace, seed=3, scale=4.0 if act is nn.ReLU6 else 1.0)
    x = torch.randn((3, 3, 8, 8), generator=_gen(3))
    path = _tiny_path(tiny, 3, seed=4)
    with torch.no_grad():
        with path.applied(net):
            y = net(x)
            y_again = net(x)
        ref = tiny.manual(net, x, [m.float() for m in path.masks])
        plain = net(x)
    tol = dict(rtol=1e-5, atol=1e-4)  # ReLU6 net has large weights (scale 4)
    torch.testing.assert_close(y, ref, **tol)
    torch.testing.assert_close(y_again, ref, **tol)
    assert not torch.allclose(y, plain)  # the masks matter
    torch.testing.assert_close(plain, tiny.manual(net, x), **tol)  # and are gone afterwards
    assert tools.no_hooks(net)


def test_applied_broadcasts_one_image_pathway(tiny):
    net = tiny.make(seed=5)
    x = torch.randn((4, 3, 8, 8), generator=_gen(5))
    path = _tiny_path(tiny, 1, seed=6)
    with torch.no_grad(), path.applied(net):
        y = net(x)
    ref = tiny.manual(net, x, [m.float() for m in path.masks])
    torch.testing.assert_close(y, ref)


def test_applied_all_ones_is_identity_and_all_zero_kills(tiny):
    net = tiny.make(seed=7)
    x = torch.randn((2, 3, 8, 8), generator=_gen(7))
    ones = Pathway.from_masks([torch.ones((2, *s), dtype=torch.bool) for s in tiny.shapes], ["a", "b", "c"])
    zeros = Pathway.from_masks([torch.zeros((2, *s), dtype=torch.bool) for s in tiny.shapes], ["a", "b", "c"])
    with torch.no_grad():
        plain = net(x)
        with ones.applied(net):
            y1 = net(x)
        with zeros.applied(net):
            y0 = net(x)
    torch.testing.assert_close(y1, plain)
    torch.testing.assert_close(y0, net.fc2.bias.detach().expand(2, -1))


def test_applied_torchvision_single_site(resnet18, tools):
    """Zeroing exactly one site of resnet18 equals a hand-written forward hook that zeroes it."""
    x = torch.randn((2, 3, 32, 32), generator=_gen(8))
    _, acts, names = record_activations(resnet18, x)
    s = names.index("layer2.1.relu#0")
    g = _gen(9)
    masks = [torch.ones_like(a, dtype=torch.bool) for a in acts]
    masks[s] = torch.rand(acts[s].shape, generator=g) < 0.3
    path = Pathway.from_masks(masks, names)
    with torch.no_grad(), path.applied(resnet18):
        y = resnet18(x)
    # independent reference: layer2[1].relu is called twice; mask only its first call
    calls = {"n": 0}

    def hook(_m, _i, out):
        calls["n"] += 1
        return out * masks[s].float() if calls["n"] == 1 else None

    h = resnet18.layer2[1].relu.register_forward_hook(hook)
    try:
        with torch.no_grad():
            ref = resnet18(x)
    finally:
        h.remove()
    torch.testing.assert_close(y, ref)
    assert tools.no_hooks(resnet18)


def test_applied_rejects_shape_mismatch_and_wrong_model(tiny, resnet18, tools):
    net = tiny.make(seed=8)
    path = _tiny_path(tiny, 2, seed=8)
    # batch 3 with a 2-image pathway
    with pytest.raises(ValueError):
        with torch.no_grad(), path.applied(net):
            net(torch.randn(3, 3, 8, 8))
    assert tools.no_hooks(net)
    # other input size: the first site has another spatial shape
    with pytest.raises(ValueError):
        with torch.no_grad(), path.applied(net):
            net(torch.randn(2, 3, 16, 16))
    assert tools.no_hooks(net)
    # a module without any rectifier
    with pytest.raises(ValueError):
        with torch.no_grad(), path.applied(net.conv1):
            pass
    assert tools.no_hooks(net)
    with pytest.raises(ValueError):
        with torch.no_grad(), path.applied(resnet18):
            resnet18(torch.randn(2, 3, 32, 32))
    assert tools.no_hooks(resnet18)
    # a model with more rectifier calls than the pathway has sites
    more = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU())
    short = Pathway.from_masks([torch.ones(1, 6, dtype=torch.bool)], ["1"])
    with pytest.raises(ValueError):
        with torch.no_grad(), short.applied(more):
            more(torch.randn(2, 6))
    assert tools.no_hooks(more)


def test_applied_rejects_model_with_fewer_sites(tools):
    """A pathway over 3 sites applied to a model with 2 rectifier calls (same shapes) is the wrong model."""
    small = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU())
    three = Pathway.from_masks([torch.ones(1, 6, dtype=torch.bool)] * 3, ["1", "3", "5"])
    with pytest.raises(ValueError):
        with torch.no_grad(), three.applied(small):
            small(torch.randn(2, 6))
    assert tools.no_hooks(small)


def test_applied_removes_hooks_when_body_raises(tiny, tools):
    net = tiny.make(seed=9)
    path = _tiny_path(tiny, 1, seed=9)
    with pytest.raises(RuntimeError, match="inside"):
        with path.applied(net):
            net(torch.randn(1, 3, 8, 8))
            raise RuntimeError("inside")
    assert tools.no_hooks(net)
    with torch.no_grad():
        torch.testing.assert_close(net(torch.ones(1, 3, 8, 8)), tiny.manual(net, torch.ones(1, 3, 8, 8)))


def test_applied_gradient_flows_through_masks(tiny):
    net = tiny.make(seed=10)
    x = torch.randn((2, 3, 8, 8), generator=_gen(10))
    path = _tiny_path(tiny, 2, seed=10)
    xi = x.clone().requires_grad_(True)
    with path.applied(net):
        y = net(xi)
    (g,) = torch.autograd.grad(y[:, 0].sum(), xi)
    xr = x.clone().requires_grad_(True)
    (gr,) = torch.autograd.grad(tiny.manual(net, xr, [m.float() for m in path.masks])[:, 0].sum(), xr)
    torch.testing.assert_close(g, gr)


def test_kth_smallest_is_the_order_statistic_on_both_sides_and_with_ties():
    from pathlib_pw.pathway import kth_smallest

    g = torch.Generator().manual_seed(5)
    for flat in (torch.rand(3, 1001, generator=g), torch.randint(0, 4, (3, 1001), generator=g).float()):
        ordered = flat.sort(1).values
        # one site, and the same scores split into three sites of different shapes
        for per_site in ([flat], [flat[:, :1].view(3, 1, 1), flat[:, 1:401].view(3, 4, 10, 10), flat[:, 401:]]):
            for k in (0, 3, 499, 500, 501, 997, 1000):
                got = kth_smallest(per_site, torch.full((3,), k))
                assert torch.equal(got, ordered[:, k]), k
            per_row = torch.tensor([0, 600, 1000])
            assert torch.equal(kth_smallest(per_site, per_row), ordered[torch.arange(3), per_row])
            assert torch.equal(kth_smallest([t.double() for t in per_site], per_row), ordered[torch.arange(3), per_row].double())


def test_kth_smallest_counts_nan_as_largest_and_falls_back_for_other_dtypes():
    from pathlib_pw.pathway import kth_smallest

    flat = torch.tensor([[3.0, float("nan"), 1.0, 2.0]])
    assert kth_smallest([flat], torch.tensor([2])).item() == 3.0
    assert torch.isnan(kth_smallest([flat], torch.tensor([3]))).all()
    # bfloat16 has no numpy type: torch's kthvalue path, same order statistic
    flat = torch.tensor([[4.0, 1.0, 3.0, 2.0], [0.5, 0.25, 1.0, 2.0]], dtype=torch.bfloat16)
    assert kth_smallest([flat], torch.tensor([1, 2])).tolist() == [2.0, 1.0]
    assert kth_smallest([flat], torch.tensor([0, 0])).tolist() == [1.0, 0.25]


@pytest.mark.parametrize("samples", [8, 64, 4096])
def test_sampled_kth_is_the_order_statistic_on_every_branch(samples, monkeypatch):
    from pathlib_pw import pathway

    fallbacks = []
    kthvalue_rows = pathway._kthvalue_rows
    monkeypatch.setattr(pathway, "_kthvalue_rows", lambda flat, k: fallbacks.append(len(k)) or kthvalue_rows(flat, k))
    g = torch.Generator().manual_seed(samples)
    n = 4 * samples + 5000
    datasets = {
        "continuous": torch.rand(5, n, generator=g) * torch.rand(5, n, generator=g),
        "half zeros": torch.where(torch.rand(5, n, generator=g) < 0.5, 0.0, torch.rand(5, n, generator=g)),
        "three values": torch.randint(0, 3, (5, n), generator=g).float(),
        "with nan": torch.rand(5, n, generator=g).index_put_((torch.tensor([1]), torch.tensor([7])), torch.tensor(float("nan"))),
    }
    for name, flat in datasets.items():
        k = torch.tensor([0, 3, n // 2, int(0.9 * (n - 1)), n - 1])
        got = pathway.sampled_kth(flat, k, samples=samples)
        want = flat.sort(1).values[torch.arange(5), k]
        assert torch.equal(got, want) or torch.allclose(got, want, equal_nan=True), (name, got, want)
    if samples == 8:  # a sample of 8 rarely holds the extreme order statistics: the fallback ran
        assert fallbacks


def test_per_image_broadcasts_one_value_per_image():
    from pathlib_pw.pathway import per_image

    like = torch.zeros(3, 2, 4, 5)
    shaped = per_image(torch.tensor([1.0, 2.0, 3.0]), like)
    assert shaped.shape == (3, 1, 1, 1)
    assert torch.equal((like + shaped)[:, 1, 3, 4], torch.tensor([1.0, 2.0, 3.0]))
    assert per_image(torch.tensor([1.0, 2.0]), torch.zeros(2, 7)).shape == (2, 1)


def test_count_true_matches_a_plain_sum_per_image():
    from pathlib_pw.pathway import count_true

    g = torch.Generator().manual_seed(2)
    mask = torch.rand(3, 4, 5, 6, generator=g) > 0.3
    assert torch.equal(count_true(mask), mask.flatten(1).long().sum(1))
    assert torch.equal(count_true(mask[:, 1:3]), mask[:, 1:3].flatten(1).long().sum(1))  # a non-contiguous view
    assert count_true(mask).dtype == torch.int64


def test_remove_lowest_removes_an_exact_count_breaking_ties_by_position():
    from pathlib_pw.pathway import remove_lowest

    site_a = torch.tensor([[3.0, 1.0, 1.0], [5.0, 5.0, 5.0]])
    site_b = torch.tensor([[1.0, 0.5], [5.0, 5.0]])
    keep = remove_lowest([site_a, site_b], torch.tensor([3, 2]))
    # image 0: 0.5 (site b), then the two first 1.0s in site order (site a) -> the 1.0 in site b stays
    assert keep[0][0].tolist() == [True, False, False] and keep[1][0].tolist() == [True, False]
    # image 1: all tied: the first two positions go
    assert keep[0][1].tolist() == [False, False, True] and keep[1][1].tolist() == [True, True]
    none = remove_lowest([site_a, site_b], torch.tensor([0, 5]))
    assert all(m[0].all() for m in none) and not any(m[1].any() for m in none)


def test_map_images_keeps_order_on_threads():
    import threading

    both_running = threading.Barrier(2, timeout=10)  # images 0 and 1 must run at the same time

    def square(b: int) -> int:
        if b < 2:
            both_running.wait()
        return b * b

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert map_images(square, 7) == [0, 1, 4, 9, 16, 25, 36]
        assert map_images(lambda b: b, 0) == []
    finally:
        torch.set_num_threads(before)
    assert map_images(lambda b: -b, 2) == [0, -1]
