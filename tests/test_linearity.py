"""pathlib_pw.linearity: the exact linear-region radius, state flips and the first-order error of a
pathway (Khakzar et al., CVPR 2021), against hand computations and literal references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import pathlib_pw.linearity as linearity
from pathlib_pw.linearity import first_order_error, in_dtype, linear_region_radius, random_directions, state_flip_share
from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import record_activations
from tests import reference_impl as ref
from tests.nets import images, mixed_net, single_thread, tiny_cnn, tiny_relu6  # noqa: F401 (single_thread: an autouse fixture)

NETS = {"tiny_cnn": tiny_cnn, "tiny_relu6": tiny_relu6}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _random_path(model, x, keep=0.5, seed=0):
    """Per image, each neuron kept with probability ``keep``."""
    _, acts, names = record_activations(model, x)
    g = _gen(seed)
    return Pathway.from_masks([torch.rand(a.shape, generator=g, dtype=torch.float64) < keep for a in acts], names)


def _image_masks(path, b):
    return None if path is None else [m[b if len(m) > 1 else 0] for m in path.masks]


def _hand_net(w1, b1, act=nn.ReLU):
    """Flatten -> Linear(2, n) -> act -> Linear(n, 2), float64; input (B, 2, 1, 1)."""
    w1 = torch.tensor(w1, dtype=torch.float64)
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, w1.shape[0]), act(), nn.Linear(w1.shape[0], 2)).double().eval()
    with torch.no_grad():
        net[1].weight.copy_(w1)
        net[1].bias.copy_(torch.tensor(b1, dtype=torch.float64))
        net[3].weight.copy_(torch.arange(2 * w1.shape[0], dtype=torch.float64).view(2, -1) / 4 - 0.7)
        net[3].bias.zero_()
    return net


def _hand_path(keep):
    return Pathway.from_masks([torch.tensor([keep])], ["2"])


def _vec(*rows):
    return torch.tensor(rows, dtype=torch.float64).view(len(rows), 2, 1, 1)


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ----------------------------------------------------------------------------------------------
# random directions
# ----------------------------------------------------------------------------------------------


def test_random_directions_unit_seeded_and_global_rng_untouched():
    state = torch.get_rng_state()
    d = random_directions((3, 4, 5), 6, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert d.shape == (6, 3, 4, 5) and d.dtype == torch.float64
    torch.testing.assert_close(d.flatten(1).norm(dim=1), torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-14)
    assert torch.equal(d, random_directions((3, 4, 5), 6, seed=3))
    assert not torch.equal(d, random_directions((3, 4, 5), 6, seed=4))
    assert random_directions((2,), 1, dtype=torch.float32).dtype == torch.float32
    # independent draws: the pairwise cosines of 6 directions in 60 dimensions are far from +-1
    cos = d.flatten(1) @ d.flatten(1).T
    assert (cos - torch.eye(6, dtype=torch.float64)).abs().max() < 0.8


@pytest.mark.parametrize("shape, n", [((3, 4), 0), ((3, 4), -1), ((), 2), ((3, 0), 2)])
def test_random_directions_rejects(shape, n):
    with pytest.raises(ValueError, match="shape|n must"):
        random_directions(shape, n)


# ----------------------------------------------------------------------------------------------
# the exact radius on hand-made nets
# ----------------------------------------------------------------------------------------------


def test_radius_hand_relu_and_masked_first_neuron():
    # x = (1, 1): z = (0.5, -2, 2.5). Along (-3, 4)/5: dz = (-0.6, 0.8, 0.2), so neuron 0 turns off at
    # 0.5/0.6 = 5/6, neuron 1 turns on at 2/0.8 = 2.5, neuron 2 never changes. Along (1, 0): dz = (1, 0, 1),
    # no neuron ever changes.
    net = _hand_net([[1, 0], [0, 1], [1, 1]], [-0.5, -3.0, 0.5])
    x = _vec((1, 1))
    d = _vec((-3, 4), (1, 0))  # not normalized: the radius is an L2 distance anyway
    radius = linear_region_radius(net, x, d)
    assert radius.shape == (1, 2) and radius.dtype == torch.float64
    assert abs(float(radius[0, 0]) - 5 / 6) < 1e-12
    assert radius[0, 1] == math.inf
    # the literal search agrees on the hand case (a check of the reference itself)
    assert abs(ref.radius_by_search(net, x, d[0]) - 5 / 6) < 1e-8
    # without neuron 0 the first crossing is neuron 1's, at 2.5
    masked = linear_region_radius(net, x, d, _hand_path([False, True, True]))
    assert abs(float(masked[0, 0]) - 2.5) < 1e-12 and masked[0, 1] == math.inf
    assert abs(ref.radius_by_search(net, x, d[0], [torch.tensor([False, True, True])]) - 2.5) < 1e-8
    # a path that keeps nothing: no neuron can cross
    assert torch.isinf(linear_region_radius(net, x, d, _hand_path([False, False, False]))).all()
    # the state flips match: nothing just inside, neuron 0 (1 of 3) just outside
    shares = state_flip_share(net, x, d, [0.99 * 5 / 6, 1.01 * 5 / 6])
    assert shares[0, :, 0].tolist() == [0.0, 1 / 3]
    assert shares[0, :, 1].tolist() == [0.0, 0.0]


def test_radius_hand_relu6_saturation_first():
    # x = (1, 1): z = (5, 1, 1, 8). Along (3, 4)/5: dz = (0.6, 0.8, 1.4, 1.4): neuron 0 saturates at
    # 1/0.6 = 5/3, neuron 2 at 5/1.4 = 25/7, neuron 1 at 5/0.8 = 6.25, neuron 3 stays saturated.
    # Along -(3, 4)/5: neuron 2 turns off at 1/1.4 = 5/7, neuron 1 at 1/0.8 = 1.25, neuron 3 leaves
    # saturation at 2/1.4 = 10/7, neuron 0 turns off at 5/0.6.
    net = _hand_net([[1, 0], [0, 1], [1, 1], [1, 1]], [4.0, 0.0, -1.0, 6.0], act=nn.ReLU6)
    x = _vec((1, 1))
    d = _vec((3, 4), (-3, -4))
    cases = [
        ([True] * 4, [5 / 3, 5 / 7]),
        ([False, True, True, True], [25 / 7, 5 / 7]),
        ([True, True, False, True], [5 / 3, 1.25]),
        ([True, False, False, True], [5 / 3, 10 / 7]),
        ([False, False, False, True], [math.inf, 10 / 7]),
    ]
    for keep, want in cases:
        got = linear_region_radius(net, x, d, _hand_path(keep))[0].tolist()
        for g, w in zip(got, want):
            assert (g == w == math.inf) or abs(g - w) < 1e-12, (keep, got, want)
    torch.testing.assert_close(linear_region_radius(net, x, d), linear_region_radius(net, x, d, _hand_path([True] * 4)))
    # the saturation boundary is 6: with 5 the first crossing along (3, 4) would already be at t = 0
    assert abs(ref.radius_by_search(net, x, d[0]) - 5 / 3) < 1e-8


def test_radius_zero_on_a_boundary():
    # neuron 0 sits at z = 0 (off), neuron 1 at z = 6 (saturated), neuron 2 at z = 3 (linear)
    net = _hand_net([[1, -1], [1, 1], [0, 1]], [0.0, 4.0, 2.0], act=nn.ReLU6)
    x = _vec((1, 1))
    d = _vec((1, 0), (-1, 0), (0, 1))
    # (1, 0): neuron 0 moves up into the linear side at once; (-1, 0): neuron 1 leaves 6 at once;
    # (0, 1): neuron 0 moves down (stays off), neuron 1 moves up (stays saturated), neuron 2 saturates at 3
    assert linear_region_radius(net, x, d)[0].tolist() == [0.0, 0.0, 3.0]
    shares = state_flip_share(net, x, d, [1e-9])
    assert shares[0, 0].tolist() == [1 / 3, 1 / 3, 0.0]


# ----------------------------------------------------------------------------------------------
# an exactly linear network
# ----------------------------------------------------------------------------------------------


def test_exactly_linear_network_until_the_radius():
    g = _gen(5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval()
    with torch.no_grad():
        net[1].weight.copy_(0.3 * torch.randn(5, 12, generator=g, dtype=torch.float64))
        net[1].bias.fill_(10.0)  # every hidden neuron far on the linear side
        net[3].weight.copy_(torch.randn(3, 5, generator=g, dtype=torch.float64))
    x = images(1, seed=5, shape=(3, 2, 2))
    d = random_directions((3, 2, 2), 4, seed=5)
    radius = linear_region_radius(net, x, d)[0]
    # by hand: z = W x + b and dz = W d; neuron j turns off at z_j / -dz_j where dz_j < 0
    w, b = net[1].weight.detach().numpy(), net[1].bias.detach().numpy()
    z = w @ x.flatten().numpy() + b
    for k in range(4):
        dz = w @ d[k].flatten().numpy()
        want = np.where(dz < 0, z / np.where(dz < 0, -dz, 1.0), np.inf).min()
        assert abs(float(radius[k]) - want) < 1e-12 * want
    assert torch.isfinite(radius).all()
    inside = [f * float(radius.min()) for f in (0.01, 0.3, 0.99)]
    out = first_order_error(net, x, d, inside)
    assert out["error"].max() < 1e-10
    assert (out["gradient_cosine"] - 1).abs().max() < 1e-12
    assert state_flip_share(net, x, d, inside).abs().max() == 0
    beyond = [f * float(radius.max()) for f in (1.5, 3.0)]
    far = first_order_error(net, x, d, beyond)
    assert far["error"].min() > 1e-6
    assert state_flip_share(net, x, d, beyond).min() > 0


# ----------------------------------------------------------------------------------------------
# literal references on the tiny nets, full network and a random 50 % pathway
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net_name", list(NETS))
@pytest.mark.parametrize("with_path", [False, True])
def test_radius_matches_literal_search(net_name, with_path):
    net = NETS[net_name]()
    x = images(2, seed=1)
    d = random_directions(x.shape[1:], 3, seed=1)
    path = _random_path(net, x, seed=1) if with_path else None
    radius = linear_region_radius(net, x, d, path)
    assert radius.shape == (2, 3)
    assert torch.isfinite(radius).all() and (radius > 0).all() and radius.max() < 3.0
    for b in range(2):
        masks = _image_masks(path, b)
        s0 = ref.rectifier_states(net, x[b : b + 1], masks)
        for k in range(3):
            t = float(radius[b, k])
            assert abs(ref.radius_by_search(net, x[b : b + 1], d[k], masks) - t) < 1e-8
            points = x[b : b + 1] + torch.tensor([0.999 * t, t + 1e-6], dtype=torch.float64).view(2, 1, 1, 1) * d[k]
            changed = ref.kept_state_changed(s0, ref.rectifier_states(net, points, masks), masks)
            assert changed.tolist() == [False, True]


def test_literal_radius_comparison_detects_a_wrong_saturation_boundary(monkeypatch):
    net = tiny_relu6()
    x = images(2, seed=1)
    d = random_directions(x.shape[1:], 3, seed=1)
    radius = linear_region_radius(net, x, d)
    searched = torch.tensor([[ref.radius_by_search(net, x[b : b + 1], d[k]) for k in range(3)] for b in range(2)], dtype=torch.float64)
    wrong_ref = torch.tensor([[ref.radius_by_search(net, x[b : b + 1], d[k], top=5.0) for k in range(3)] for b in range(2)], dtype=torch.float64)
    assert (radius - searched).abs().max() < 1e-8
    assert (radius - wrong_ref).abs().max() > 1e-3  # a reference with boundary 5 disagrees
    monkeypatch.setattr(linearity, "RELU6_TOP", 5.0)
    wrong = linear_region_radius(net, x, d)
    assert (wrong - searched).abs().max() > 1e-3  # and so does an implementation with boundary 5
    assert (wrong - wrong_ref).abs().max() < 1e-8


NETS_WITH_FUNCTIONAL = {**NETS, "mixed_net": mixed_net}


@pytest.mark.parametrize("net_name", list(NETS_WITH_FUNCTIONAL))
@pytest.mark.parametrize("with_path", [False, True])
def test_state_flip_share_matches_literal_count(net_name, with_path):
    net = NETS_WITH_FUNCTIONAL[net_name]()
    x = images(2, seed=2)
    d = random_directions(x.shape[1:], 2, seed=2)
    radii = [0.05, 0.3, 1.0]
    path = _random_path(net, x, seed=2) if with_path else None
    share = state_flip_share(net, x, d, radii, path, chunk_size=5)
    assert share.shape == (2, 3, 2)
    want = torch.tensor(
        [[[ref.flip_share_literal(net, x[b : b + 1], d[k], r, _image_masks(path, b)) for k in range(2)] for r in radii] for b in range(2)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(share, want, rtol=0, atol=1e-15)
    assert share.max() > 0 and share[:, 0].max() < share[:, 2].max()


@pytest.mark.parametrize("net_name", list(NETS_WITH_FUNCTIONAL))
@pytest.mark.parametrize("with_path", [False, True])
def test_first_order_error_matches_literal_loop(net_name, with_path):
    net = NETS_WITH_FUNCTIONAL[net_name]()
    x = images(2, seed=3)
    d = random_directions(x.shape[1:], 2, seed=3)
    radii = [0.01, 0.2, 1.0]
    path = _random_path(net, x, seed=3) if with_path else None
    out = first_order_error(net, x, d, radii, path, chunk_size=4)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        **dict.fromkeys(["error", "change", "relative", "gradient_cosine"], (2, 3, 2)),
        "gradient_norm": (2,),
        "logit": (2,),
    }
    for b in range(2):
        masks = _image_masks(path, b)
        target = ref.predicted(net, x[b : b + 1])  # the full network's prediction
        f0, g0 = ref.masked_logit_and_grad(net, x[b : b + 1], target, masks)
        assert abs(float(out["logit"][b]) - f0) < 1e-10
        assert abs(float(out["gradient_norm"][b]) - float(g0.norm())) < 1e-10
        for i, r in enumerate(radii):
            for k in range(2):
                f, g = ref.masked_logit_and_grad(net, x[b : b + 1] + r * d[k], target, masks)
                error = abs(f - f0 - r * float((g0 * d[k]).sum()))
                cosine = float((g0 * g).sum() / (g0.norm() * g.norm()))
                assert abs(float(out["error"][b, i, k]) - error) < 1e-10
                assert abs(float(out["change"][b, i, k]) - abs(f - f0)) < 1e-10
                assert abs(float(out["gradient_cosine"][b, i, k]) - cosine) < 1e-10
    torch.testing.assert_close(out["relative"], out["error"] / out["change"], rtol=1e-12, atol=0)
    # an explicit target is honoured, and so is the one a pathway carries
    other = first_order_error(net, x, d, radii[:1], path, target=1)
    f1, _ = ref.masked_logit_and_grad(net, x[:1], 1, _image_masks(path, 0))
    assert abs(float(other["logit"][0]) - f1) < 1e-10
    if path is not None:
        carried = Pathway.from_masks(path.masks, path.sites, target=torch.tensor([1, 1]))
        torch.testing.assert_close(first_order_error(net, x, d, radii[:1], carried)["logit"], other["logit"], rtol=0, atol=0)


def test_first_order_error_nan_where_undefined_and_full_network_target():
    # a path that keeps nothing: the logits are the last bias (0.1, 0) whatever the input, the gradient
    # is zero. The full network predicts class 1 (logits (-0.75, 1.4) at x = (1, 1)), the masked one
    # class 0: the default target is the full network's, so f is 0, not 0.1.
    net = _hand_net([[1, 0], [0, 1], [1, 1]], [-0.5, -3.0, 0.5])
    with torch.no_grad():
        net[3].bias.copy_(torch.tensor([0.1, 0.0], dtype=torch.float64))
    assert net(_vec((1, 1)))[0].tolist() == pytest.approx([-0.75, 1.4])
    out = first_order_error(net, _vec((1, 1)), _vec((1, 0)), [0.5], _hand_path([False, False, False]))
    assert out["logit"].tolist() == [0.0]
    assert first_order_error(net, _vec((1, 1)), _vec((1, 0)), [0.5], _hand_path([False] * 3), target=0)["logit"].tolist() == [0.1]
    assert out["change"].item() == 0 and out["error"].item() == 0
    assert out["relative"].isnan().all() and out["gradient_cosine"].isnan().all()
    assert out["gradient_norm"].tolist() == [0.0]
    assert state_flip_share(net, _vec((1, 1)), _vec((1, 0)), [0.5], _hand_path([False, False, False])).tolist() == [[[0.0]]]


# ----------------------------------------------------------------------------------------------
# invariances and batching
# ----------------------------------------------------------------------------------------------


def test_removing_last_site_neurons_never_shrinks_the_radius():
    # No rectifier follows the last site, so removing neurons there leaves every other pre-activation
    # as it was: fewer neurons can cross, the radius can only grow. (tiny_cnn's 10 last-site neurons
    # are never the first to cross; tiny_relu6's 64 often are, which makes the check non-vacuous.)
    grew = 0
    for net in (tiny_cnn(), tiny_relu6()):
        x = images(2, seed=4)
        d = random_directions(x.shape[1:], 6, seed=4)
        big = _random_path(net, x, keep=0.7, seed=4)
        thin = _random_path(net, x, keep=0.3, seed=5)
        small = Pathway.from_masks([*big.masks[:-1], big.masks[-1] & thin.masks[-1]], big.sites)
        last_only = Pathway.from_masks([*[torch.ones_like(m) for m in big.masks[:-1]], big.masks[-1]], big.sites)
        full = linear_region_radius(net, x, d)
        r_big = linear_region_radius(net, x, d, big)
        r_small = linear_region_radius(net, x, d, small)
        r_last = linear_region_radius(net, x, d, last_only)
        assert (r_small >= r_big).all() and (r_last >= full).all()
        grew += int((r_small > r_big).sum() + (r_last > full).sum())
    assert grew > 0


def test_removing_an_upstream_neuron_can_shrink_the_radius():
    # Removing a neuron changes the pre-activations downstream of it, so nested paths need not have
    # nested radii. x in R (shape (1, 1, 1, 1)), direction +1:
    #   a1 = relu(x + 1), a2 = relu(1 - x), z3 = a1 + a2 - 0.5, output = relu(z3).
    # Full network at x = 0: z3 = 1.5 along the ray until a2 turns off at t = 1: radius 1.
    # Without a1: z3 = 0.5 - t turns off at t = 0.5 < 1 while a2 is still linear: radius 0.5.
    net = nn.Sequential(nn.Flatten(), nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 2)).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[1].bias.copy_(torch.tensor([1.0, 1.0]))
        net[3].weight.copy_(torch.tensor([[1.0, 1.0]]))
        net[3].bias.fill_(-0.5)
        net[5].weight.fill_(1.0)
    x = torch.zeros(1, 1, 1, 1, dtype=torch.float64)
    d = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    sub = Pathway.from_masks([torch.tensor([[False, True]]), torch.tensor([[True]])], ["2", "4"])
    assert linear_region_radius(net, x, d).tolist() == [[1.0]]
    assert linear_region_radius(net, x, d, sub).tolist() == [[0.5]]
    assert ref.radius_by_search(net, x, d[0], [m[0] for m in sub.masks]) == pytest.approx(0.5, abs=1e-8)


def test_radius_invariant_to_direction_scale_chunking_and_path_broadcast():
    net = tiny_relu6()
    x = images(3, seed=6)
    d = random_directions(x.shape[1:], 4, seed=6)
    path = _random_path(net, x[:1], seed=6)
    radius = linear_region_radius(net, x, d, path)
    scale = torch.tensor([3.7, 0.01, 250.0, 1.0], dtype=torch.float64).view(4, 1, 1, 1)
    torch.testing.assert_close(linear_region_radius(net, x, d * scale, path), radius, rtol=1e-12, atol=0)
    torch.testing.assert_close(linear_region_radius(net, x, d, path, chunk_size=1), radius, rtol=1e-12, atol=0)
    # a one-image path broadcasts: the same as repeating its masks for every image
    repeated = Pathway.from_masks([m.expand(3, *m.shape[1:]) for m in path.masks], path.sites)
    torch.testing.assert_close(linear_region_radius(net, x, d, repeated), radius, rtol=1e-12, atol=0)
    radii = [0.05, 0.5]
    torch.testing.assert_close(state_flip_share(net, x, d, radii, repeated), state_flip_share(net, x, d, radii, path), rtol=0, atol=0)
    broadcast, expanded = first_order_error(net, x, d, radii, path), first_order_error(net, x, d, radii, repeated, chunk_size=3)
    for key in broadcast:
        torch.testing.assert_close(broadcast[key], expanded[key], rtol=1e-12, atol=1e-14, equal_nan=True)
    # a per-image path: row b uses image b's masks
    per_image = _random_path(net, x, seed=7)
    batched = linear_region_radius(net, x, d, per_image)
    for b in range(3):
        torch.testing.assert_close(linear_region_radius(net, x[b : b + 1], d, per_image[b]), batched[b : b + 1], rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------------------------
# bad input, cleanup after errors
# ----------------------------------------------------------------------------------------------


def _call(name, net, x, d, radii=(0.1,), path=None, **kwargs):
    if name == "radius":
        return linear_region_radius(net, x, d, path, **kwargs)
    if name == "flips":
        return state_flip_share(net, x, d, radii, path, **kwargs)
    return first_order_error(net, x, d, radii, path, **kwargs)


FUNCTIONS = ["radius", "flips", "first_order"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_bad_input_errors(name):
    net = tiny_cnn()
    x = images(2, seed=8)
    d = random_directions(x.shape[1:], 2, seed=8)
    bad_d = d.clone()
    bad_d[1] = 0
    cases = [
        (dict(d=d[:0]), "directions must have shape"),
        (dict(d=d[:, :2]), "directions must have shape"),
        (dict(d=d[0]), "directions must have shape"),
        (dict(d=bad_d), "directions must have a finite, non-zero"),
        (dict(x=x[0]), "x must have shape"),
        (dict(x=x.float()), "x must have the model's parameter dtype"),
        (dict(path=_random_path(net, images(3))), "path must hold 1 image"),
        (dict(path=_random_path(tiny_relu6(), x)), "different model|mask shape"),
        (dict(chunk_size=0), "chunk_size must be"),
    ]
    if name != "radius":
        cases += [(dict(radii=r), "radii must be a non-empty sequence of finite numbers > 0") for r in ([], [0.1, 0.0], [-1.0], [math.inf], [math.nan])]
    for change, message in cases:
        args = {"x": x, "d": d, **change}
        with pytest.raises(ValueError, match=message):
            _call(name, net, args.pop("x"), args.pop("d"), **args)
        assert _no_hooks(net)


def test_radius_rejects_functional_rectifiers():
    net = mixed_net()
    x = images(1)
    with pytest.raises(ValueError, match="needs rectifier modules.*state_flip_share"):
        linear_region_radius(net, x, random_directions(x.shape[1:], 1))
    assert _no_hooks(net)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_hooks_and_modes_restored_after_an_error(name):
    # the second layer does not fit the ReLU's output: the forward pass raises after the rectifier hooks ran
    broken = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(4, 2)).double().train()
    with pytest.raises(RuntimeError):
        _call(name, broken, _vec((1, 1)), _vec((1, 0)))
    assert _no_hooks(broken) and all(m.training for m in broken.modules())
    # a path from another model raises inside the forward pass too
    net = tiny_cnn().train()
    x = images(1)
    with pytest.raises(ValueError):
        _call(name, net, x, random_directions(x.shape[1:], 1), path=_random_path(tiny_relu6(), x))
    assert _no_hooks(net) and all(m.training for m in net.modules())
    # and the next call works (the forward-AD level was left too)
    net.eval()
    assert torch.isfinite(linear_region_radius(net, x, random_directions(x.shape[1:], 1))).all()


# ----------------------------------------------------------------------------------------------
# in_dtype
# ----------------------------------------------------------------------------------------------


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.BatchNorm2d(3)
        self.b = nn.BatchNorm2d(3)
        self.b.running_mean = self.a.running_mean  # one buffer in two modules
        self.b.weight = self.a.weight  # one parameter in two modules


def test_in_dtype_converts_and_restores():
    net = tiny_cnn(double=False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = list(net.parameters())
    x = images(2, seed=9)
    with in_dtype(net, torch.float64) as m:
        assert m is net
        assert all(v.dtype == torch.float64 for v in net.state_dict().values())
        torch.testing.assert_close(linear_region_radius(net, x, random_directions(x.shape[1:], 2)),
                                   linear_region_radius(tiny_cnn(), x, random_directions(x.shape[1:], 2)), rtol=0, atol=0)
    assert all(p is q for p, q in zip(net.parameters(), params))
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="dtype must be a floating-point"):
        with in_dtype(net, torch.int64):
            pass


def test_in_dtype_restores_after_an_exception_and_keeps_sharing():
    net = _Shared()
    net.a.weight.grad = torch.ones(3)
    with pytest.raises(KeyError):
        with in_dtype(net, torch.float64):
            assert net.a.weight.dtype == net.a.weight.grad.dtype == torch.float64
            assert net.a.running_mean.dtype == torch.float64 and net.b.running_mean is net.a.running_mean
            assert net.a.num_batches_tracked.dtype == torch.int64
            raise KeyError("inside")
    assert net.a.weight.dtype == net.a.weight.grad.dtype == torch.float32 and net.b.weight is net.a.weight
    assert net.a.running_var.dtype == net.a.running_mean.dtype == torch.float32
    assert net.b.running_mean is net.a.running_mean
    assert net.a.num_batches_tracked.dtype == torch.int64


def test_mobilenet_v2_in_float64_in_place_relu6():
    # the experiment's architecture (in-place ReLU6, residual additions, BatchNorm), randomly initialized
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.mobilenet_v2(num_classes=10).eval()
    x = images(1, seed=10, shape=(3, 32, 32))
    d = random_directions((3, 32, 32), 2, seed=10)
    with in_dtype(net, torch.float64):
        radius = linear_region_radius(net, x, d)
        assert torch.isfinite(radius).all() and (radius > 0).all()
        for k in range(2):
            t = float(radius[0, k])
            share = state_flip_share(net, x, d[k : k + 1], [0.999 * t, 1.001 * t])
            assert share[0, 0, 0] == 0 and share[0, 1, 0] > 0
    assert all(p.dtype == torch.float32 for p in net.parameters())
