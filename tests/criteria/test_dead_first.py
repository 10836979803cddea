"""Dead-first controls: every dead neuron (activation <= 0 after the rectifier) removed first, then living
neurons uniformly at random (``dead_first_random``) or of lowest activation (``dead_first_activation``),
all sites pooled, by the paper's global rule (numpy percentile of the pooled scores, ``score <= thr``
removed) on scores 0 for dead neurons and a positive value for living ones."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import pathlib_pw as pw
from pathlib_pw import decisions
from pathlib_pw.criteria import SPECS, dead_first
from pathlib_pw.criteria.spec import FORWARD
from tests import nets
from tests import reference_impl as R
from tests.criteria.test_extract_pathway import State, _prepare
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

F, T = False, True
METHODS = ["dead_first_random", "dead_first_activation"]
NETS = {"cnn": nets.tiny_cnn, "resnet_reused_relu": nets.tiny_resnet, "relu6": nets.tiny_relu6}


# ------------------------------------------------------------------------------ literal references


@functools.cache
def _acts(net: str, b: int, seed: int = 0) -> list[torch.Tensor]:
    """Image b's rectifier outputs (site shape), from the reference forward pass."""
    with torch.no_grad():
        _, outs, _ = R.forward_sites(NETS[net](), nets.images(3, seed=seed)[b : b + 1])
    return [o[0].detach() for o in outs]


def _random_scores(acts: list[torch.Tensor], image_seed: int) -> list[torch.Tensor]:
    """0 for dead neurons; for living ones (perm[i] + 1) / N, perm = randperm(N) of a CPU generator
    seeded with the image's seed, sites pooled in order."""
    n = sum(a.numel() for a in acts)
    ranks = (torch.randperm(n, generator=torch.Generator().manual_seed(image_seed)) + 1).double() / n
    out, start = [], 0
    for a in acts:
        r = ranks[start : start + a.numel()].view(a.shape)
        out.append(torch.where(a <= 0, torch.zeros_like(r), r))
        start += a.numel()
    return out


def _activation_scores(acts: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.where(a <= 0, torch.zeros_like(a), a).double() for a in acts]


def _image_seed(seed: int, b: int) -> int:
    return seed * 1_000_003 + b


def _reference(method: str, net: str, b: int, p: float, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(reference keep-masks, scores) of image b of nets.images(3) at sparsity p."""
    acts = _acts(net, b)
    scores = _random_scores(acts, _image_seed(seed, b)) if method == "dead_first_random" else _activation_scores(acts)
    masks, _ = R.percentile_masks(scores, p)
    return masks, scores


def _dead(acts: list[torch.Tensor]) -> int:
    return sum(int((a <= 0).sum()) for a in acts)


def _kept(masks) -> int:
    return sum(int(m.sum()) for m in masks)


# ------------------------------------------------------------------------------------------ by hand
# HandNet at x = (1, 2): a1 = (1, 2, 0), a2 = (2, 2.5, 0): 2 dead of N = 6.
# Activation scores (1, 2, 0 | 2, 2.5, 0), sorted 0 0 1 2 2 2.5, pos = p/100 * 5.


@pytest.mark.parametrize(
    ("p", "site0", "site1"),
    [
        (0, [T, T, F], [T, T, F]),  # thr 0: the two dead neurons go although p = 0
        (10, [T, T, F], [T, T, F]),  # pos 0.5 -> thr 0: the realized sparsity is the dead share, 2/6
        (40, [F, T, F], [T, T, F]),  # pos 2.0 -> thr 1: 0 0 1 removed
        (50, [F, T, F], [T, T, F]),  # pos 2.5 -> thr 1.5: 0 0 1 removed
        (70, [F, F, F], [F, T, F]),  # pos 3.5 -> thr 2: the two activations of 2 tie and go together
        (99, [F, F, F], [F, T, F]),  # pos 4.95 -> thr 2.475: 2.5 stays
    ],
)
def test_hand_computed_activation_control(p, site0, site1):
    model, x = nets.HandNet().double(), nets.hand_input()
    path = pw.extract_pathway(model, x, "dead_first_activation", p)
    assert path.sites == ["relu1", "relu2"]
    assert [m[0].tolist() for m in path.masks] == [site0, site1]
    removed = 6 - sum(site0) - sum(site1)
    assert path.sparsity[0].item() == pytest.approx(100 * removed / 6, abs=1e-4)
    assert float(path.info["base_sparsity_share"][0]) == pytest.approx(2 / 6, abs=1e-6)
    assert int(path.info["target"][0]) == 0


def test_hand_net_random_control():
    """x = (1, 2): the two dead neurons always go; at pos 3.5 (p = 70) k = 3, so k + 1 = 4 neurons go:
    the dead two and the two living neurons of lowest literal rank."""
    model, x = nets.HandNet().double(), nets.hand_input()
    path = pw.extract_pathway(model, x, "dead_first_random", 70, seed=4)
    ranks = (torch.randperm(6, generator=torch.Generator().manual_seed(4 * 1_000_003)) + 1).tolist()
    living = [0, 1, 3, 4]  # pooled indices of a1 = (1, 2, 0), a2 = (2, 2.5, 0)
    kept = sorted(living, key=lambda i: ranks[i])[2:]
    assert path.flat()[0].tolist() == [i in kept for i in range(6)]
    assert path.sparsity[0].item() == pytest.approx(100 * 4 / 6, abs=1e-4)


# ------------------------------------------------------------------------------ versus reference


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("p", [60, 75, 90, 99.5])
def test_matches_the_global_percentile_rule_above_the_dead_share(method, net, p):
    """Above the dead share (at most 56 % on these nets): every dead neuron goes, and the masks and
    the kept count are the literal numpy percentile rule's on the pooled scores."""
    model = NETS[net]()
    x = nets.images(3)
    options = {"seed": 0} if method == "dead_first_random" else {}
    path = pw.extract_pathway(model, x, method, p, **options)
    assert path.criterion == method and all(m.dtype == torch.bool for m in path.masks)
    for b in range(3):
        acts = _acts(net, b)
        n, dead = sum(a.numel() for a in acts), _dead(acts)
        assert 100 * dead / n < p
        ref, scores = _reference(method, net, b, p)
        R.assert_masks_equal(R.batch_masks(path, b), ref, f"{method} {net} p={p} image {b}")
        for m, a in zip(R.batch_masks(path, b), acts):
            assert not bool(m[a <= 0].any()), "a dead neuron was kept"
        pooled = np.concatenate([s.numpy().ravel() for s in scores])
        kept = int((pooled > np.percentile(pooled, p)).sum())
        assert _kept(R.batch_masks(path, b)) == kept
        if method == "dead_first_random":  # distinct living scores: exactly k + 1 neurons go
            assert kept == n - (math.floor(p / 100 * (n - 1)) + 1)
        assert path.sparsity[b].item() == pytest.approx(100 * (n - kept) / n, abs=1e-4)
        assert float(path.info["base_sparsity_share"][b]) == pytest.approx(dead / n, abs=1e-6)
        assert float(path.info["requested_sparsity"][b]) == pytest.approx(p)


@pytest.mark.parametrize("net", ["cnn", "resnet_reused_relu"])
@pytest.mark.parametrize("p", [60, 80, 95])
def test_activation_control_keeps_the_largest_living_activations(net, p):
    """No ties on these nets: the kept set is the n - k - 1 largest activations (literal sort)."""
    path = pw.extract_pathway(NETS[net](), nets.images(3), "dead_first_activation", p)
    for b in range(3):
        acts = torch.cat([a.flatten() for a in _acts(net, b)])
        n = acts.numel()
        kept = n - (math.floor(p / 100 * (n - 1)) + 1)
        order = sorted(range(n), key=lambda i: float(acts[i]), reverse=True)
        expected = torch.zeros(n, dtype=torch.bool)
        expected[order[:kept]] = True
        assert torch.equal(path.flat()[b], expected), f"{net} p={p} image {b}"
        assert float(acts[order[kept - 1]]) > float(acts[order[kept]]) > 0  # no tie at the cut


def test_relu6_saturated_neurons_tie_and_go_together():
    """TinyReLU6Net saturates neurons at exactly 6: at p = 99.5 the cut reaches 6 and every saturated
    neuron goes with it, more than the rule's k + 1 = 318 of 320."""
    model, x = nets.tiny_relu6(), nets.images(3)
    path = pw.extract_pathway(model, x, "dead_first_activation", 99.5)
    for b in range(3):
        acts = _acts("relu6", b)
        assert sum(int((a == 6).sum()) for a in acts) >= 3
        assert float(path.info["threshold"][b]) == 6.0
        assert path.sparsity[b].item() == 100.0
        R.assert_masks_equal(R.batch_masks(path, b), _reference("dead_first_activation", "relu6", b, 99.5)[0])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("p", [0, 10, 30, 49])
def test_below_the_dead_share_exactly_the_dead_neurons_go(method, p):
    """TinyCNN's dead share is 51-52 %: below it the cut is 0, every dead neuron goes (and no living
    one), and the realized sparsity is the dead share, as with NeuronMCT's zero scores."""
    model, x = nets.tiny_cnn(), nets.images(3)
    path = pw.extract_pathway(model, x, method, p)
    mct = pw.extract_pathway(model, x, "neuron_mct", p)
    for b in range(3):
        acts = _acts("cnn", b)
        n, dead = sum(a.numel() for a in acts), _dead(acts)
        assert p < 100 * dead / n
        R.assert_masks_equal(R.batch_masks(path, b), [a > 0 for a in acts], f"{method} p={p} image {b}")
        assert path.sparsity[b].item() == pytest.approx(100 * dead / n, abs=1e-4)
        assert path.sparsity[b].item() == pytest.approx(100 * float(path.info["base_sparsity_share"][b]), abs=1e-4)
        assert float(path.info["threshold"][b]) == 0.0
        # NeuronMCT's zeros are the dead neurons and the living ones of zero gradient: it removes at least these
        assert bool((mct.flat()[b] <= path.flat()[b]).all())


def test_dead_neurons_are_those_of_dead_share():
    """The dead set is pathlib_pw.metrics.dead_share's: a path of the control keeps a dead share of 0."""
    model, x = nets.tiny_resnet(), nets.images(3)
    _, acts, _ = pw.record_activations(model, x)
    for method in METHODS:
        path = pw.extract_pathway(model, x, method, 70)
        assert torch.equal(pw.dead_share(model, x, path), torch.zeros(3))


# --------------------------------------------------------------------------------- random control


def test_random_same_seed_same_path_and_seeds_differ():
    model, x = nets.tiny_resnet(), nets.images(3)
    a = pw.extract_pathway(model, x, "dead_first_random", 70, seed=7)
    b = pw.extract_pathway(model, x, "dead_first_random", 70, seed=7)
    c = pw.extract_pathway(model, x, "dead_first_random", 70, seed=8)
    assert torch.equal(a.flat(), b.flat())
    assert not torch.equal(a.flat(), c.flat())
    assert torch.equal(a.sparsity, c.sparsity)  # the same count, other neurons
    default = pw.extract_pathway(model, x, "dead_first_random", 70)
    assert torch.equal(default.flat(), pw.extract_pathway(model, x, "dead_first_random", 70, seed=0).flat())


def test_random_chunked_and_per_image_calls_equal_one_call():
    model, x = nets.tiny_resnet(), nets.images(5)
    one = pw.extract_pathway(model, x, "dead_first_random", 65, seed=11)
    for bs in (1, 2):
        chunked = pw.extract_pathway(model, x, "dead_first_random", 65, seed=11, batch_size=bs)
        assert torch.equal(one.flat(), chunked.flat()), bs
        assert torch.equal(one.sparsity, chunked.sparsity)
    seeds = [101, 202, 303]
    batched = pw.extract_pathway(model, x[:3], "dead_first_random", 65, seed=seeds)
    for b in range(3):
        single = pw.extract_pathway(model, x[b : b + 1], "dead_first_random", 65, seed=[seeds[b]])
        assert torch.equal(batched.flat()[b], single.flat()[0]), b


def test_random_does_not_depend_on_the_target():
    model, x = nets.tiny_cnn(), nets.images(2)
    a = pw.extract_pathway(model, x, "dead_first_random", 70, seed=5)
    b = pw.extract_pathway(model, x, "dead_first_random", 70, seed=5, target=3)
    assert torch.equal(a.flat(), b.flat()) and b.info["target"].tolist() == [3, 3]


def test_random_keep_frequency_is_uniform_over_living_neurons():
    """400 per-image seeds on one image: each living neuron, whatever its site, is kept with frequency
    kept / living (binomial), every dead neuron never."""
    model = nets.tiny_cnn()
    n_images, p = 400, 75
    x = nets.images(1).expand(n_images, -1, -1, -1).contiguous()
    path = pw.extract_pathway(model, x, "dead_first_random", p, seed=0)
    alive = torch.cat([a.flatten() > 0 for a in _acts("cnn", 0)])
    n, living = alive.numel(), int(alive.sum())
    kept = n - (math.floor(p / 100 * (n - 1)) + 1)
    assert 0 < kept < living
    flat = path.flat()
    assert bool((flat.sum(1) == kept).all())
    assert not bool(flat[:, ~alive].any())
    freq = flat[:, alive].double().mean(0)
    q = kept / living
    assert float(freq.mean()) == pytest.approx(q, abs=1e-12)
    # binomial std sqrt(q (1 - q) / 400) <= 0.025: 7 sigma
    assert float((freq - q).abs().max()) < 7 * math.sqrt(q * (1 - q) / n_images)
    # global, not per site: the 10-neuron fc site keeps a varying number of neurons
    fc = path.masks[2].flatten(1).sum(1)
    assert len(set(fc.tolist())) > 1
    assert len({tuple(row.tolist()) for row in flat[:50]}) == 50


@pytest.mark.parametrize("seed", ["a", [1, 2]])
def test_bad_seed(seed):
    with pytest.raises((TypeError, ValueError), match="seed"):
        pw.extract_pathway(nets.tiny_cnn(), nets.images(3), "dead_first_random", 50, seed=seed)


# ------------------------------------------------------------------------------------ both controls


@pytest.mark.parametrize("method", METHODS)
def test_several_levels_are_nested_and_equal_separate_calls(method):
    model, x = nets.tiny_resnet(), nets.images(2)
    levels = [10.0, 50.0, 70.0, 95.0]
    paths = pw.extract_pathways(model, x, method, levels)
    for level, path in zip(levels, paths):
        assert torch.equal(path.flat(), pw.extract_pathway(model, x, method, level).flat())
    for smaller, larger in zip(paths, paths[1:]):
        assert bool((larger.flat() <= smaller.flat()).all())


@pytest.mark.parametrize("method", METHODS)
def test_model_hooks_and_input_restored(method):
    model = _prepare(nets.tiny_resnet())
    x = nets.images(2)
    x0 = x.clone()
    before = State(model)
    pw.extract_pathway(model, x, method, 70)
    before.check(model, method)
    pw.extract_pathway(model, x, method, 70, batch_size=1)
    before.check(model, f"{method} chunked")
    assert torch.equal(x, x0) and not x.requires_grad and x.grad is None


def test_specs():
    assert SPECS["dead_first_random"].options == ("seed",) and SPECS["dead_first_random"].seeded
    assert SPECS["dead_first_activation"].options == () and not SPECS["dead_first_activation"].seeded
    for method in METHODS:
        assert SPECS[method].variants == ("intended",) and SPECS[method].needs_sparsity
        assert SPECS[method].rounding_for({}) == FORWARD
        assert method in pw.CRITERIA


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(sparsity=-1), ValueError, r"sparsity.*\[0, 100\)"),
        (dict(sparsity=100), ValueError, r"sparsity.*\[0, 100\)"),
        (dict(sparsity=None), ValueError, r"sparsity"),
        (dict(sparsity=[10, 20, 30]), ValueError, r"sparsity.*one value per image"),
        (dict(variant="original_code"), ValueError, r"variant.*intended"),
        (dict(foo=1), TypeError, r"foo.*accepted options"),
        (dict(criterion="dead_first_activation", seed=1), TypeError, r"seed.*accepted options: \[\]"),
        (dict(target=5), ValueError, r"target.*\[0, 5\)"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_bad_arguments(method, kwargs, error, match):
    args = dict(model=nets.tiny_cnn(), x=nets.images(2), criterion=method, sparsity=50)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pw.extract_pathway(**args)


# ---------------------------------------------------------------------------------------- rounding


def test_a_relu_flipped_by_rounding_replays_within_sharp(monkeypatch):
    """A dead neuron whose ReLU input sits at zero may come out tiny and positive on another machine:
    then it is living, and with a high random rank it is kept, far from the cut. It is passed as near
    zero, so the replay admits the change (2 neurons: it and the one at the shifted cut) and restores
    the recorded path; without that (NEAR_ZERO = 0) the change lies outside FORWARD's band."""
    model, x, p = nets.tiny_cnn(), nets.images(1), 55.0
    acts = _acts("cnn", 0)
    assert 100 * _dead(acts) / sum(a.numel() for a in acts) < p
    scores = torch.cat([s.flatten() for s in _random_scores(acts, _image_seed(0, 0))])
    ranks = (torch.randperm(scores.numel(), generator=torch.Generator().manual_seed(0)) + 1).double()
    dead = torch.cat([a.flatten() <= 0 for a in acts])
    flip = int(torch.where(dead, ranks, torch.zeros_like(ranks)).argmax())  # the dead neuron of highest rank
    real = dead_first.record_activations

    def rounded(model, x):
        logits, outs, names = real(model, x)
        outs = [o.clone() for o in outs]
        pooled = torch.cat([o.flatten(1) for o in outs], 1)
        pooled[0, flip] = 1e-12
        start = 0
        for o in outs:
            o.view(1, -1).copy_(pooled[:, start : start + o[0].numel()])
            start += o[0].numel()
        return logits, outs, names

    for method in METHODS:
        with decisions.recording() as log:
            recorded = pw.extract_pathway(model, x, method, p)
        with monkeypatch.context() as patch:
            patch.setattr(dead_first, "record_activations", rounded)
            free = pw.extract_pathway(model, x, method, p)
            with decisions.replaying(log) as report:
                replayed = pw.extract_pathway(model, x, method, p)
            assert report.ok, report.problems()
            assert torch.equal(replayed.flat(), recorded.flat())
            changed = int((free.flat() != recorded.flat()).sum())
            if method == "dead_first_random":
                assert changed == 2 and report.changed == 2 and bool(free.flat()[0, flip])
                patch.setattr(dead_first, "NEAR_ZERO", 0.0)
                with decisions.replaying(log) as report:
                    pw.extract_pathway(model, x, method, p)
                assert not report.ok and "from the cut" in report.problems()[0]
            else:  # a tiny activation goes like a dead one: nothing changes
                assert changed == 0 and report.changed == 0
