"""pathlib_pw.pathway: the Pathway container and masking (book/methods.md: neurons, paths and sparsity)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pathlib_pw import pathway
from pathlib_pw.pathway import Masking, Pathway, float_copies, realized_sparsity, zero_removed_
from pathlib_pw.sites import hooked, record_activations


def _gen(seed):
    return torch.Generator().manual_seed(seed)


SHAPES = [(3, 4, 4), (5,), (2, 3)]


def _masks(b=3, seed=0, keep=0.5):
    g = _gen(seed)
    return [torch.rand((b, *s), generator=g) < keep for s in SHAPES]


def test_realized_sparsity_flat_kept_per_site_literal():
    masks = _masks(3, seed=1)
    path = Pathway.from_masks(masks, ["a", "b", "c"], criterion="m", target=torch.tensor([1, 2, 0]), note="x")
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
    path = Pathway.from_masks(masks, ["a", "b", "c"], criterion="mct", target=tgt, thr=torch.arange(4.0), p=90.0)
    one = path[2]
    assert len(one) == 1
    for m, o in zip(masks, one.masks):
        assert torch.equal(o, m[2:3])
    assert one.info["target"].tolist() == [7]
    assert one.info["thr"].tolist() == [2.0]
    assert one.info["p"] == 90.0
    assert one.criterion == "mct" and one.sites == ["a", "b", "c"]
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_float_copies_are_the_masks_converted(dtype):

    # converted from the masks' bytes: the same 0/1 values as .to(dtype), also for a transposed (not
    # contiguous) mask and a mask that is not boolean
    g = _gen(9)
    masks = [torch.rand((2, 3, 5), generator=g) < 0.5, (torch.rand((2, 5, 3), generator=g) < 0.3).transpose(1, 2)]
    masks.append(torch.rand((1, 4), generator=g) * 3)
    copies = float_copies(masks, torch.device("cpu"), dtype)
    for m, c in zip(masks, copies):
        assert c.dtype == dtype and c.shape == m.shape
        assert torch.equal(c, m.to(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_zero_removed_sets_exactly_the_removed_elements_to_plus_zero(dtype, step):

    # against torch.where, bit for bit: kept elements untouched (infinities, NaN, -0 included), removed
    # ones +0 whatever they held; one mask per image and one mask broadcast over the batch; steps that
    # do and do not divide the sizes
    g = _gen(10)
    x = torch.randn((3, 4, 5, 6), generator=g).to(dtype)
    flat = x.view(-1)
    flat[::11], flat[3::13], flat[5::17], flat[7::19] = math.inf, -math.inf, math.nan, -0.0
    integer = pathway._SAME_SIZE_INTEGER[dtype]
    for keep in (torch.rand(x.shape, generator=g) < 0.5, torch.rand((1, *x.shape[1:]), generator=g) < 0.5):
        want = torch.where(keep, x, torch.zeros((), dtype=dtype))
        got = zero_removed_(x.clone(), keep, torch.empty(step, dtype=integer))
        assert torch.equal(got.view(integer), want.view(integer))


def _output_and_gradient(net, x, path):
    x = x.clone().requires_grad_(True)
    with path.applied(net):
        y = net(x)
    y[:, 1].sum().backward()
    return y.detach(), x.grad


@pytest.mark.parametrize("act", [nn.ReLU, nn.ReLU6])
@pytest.mark.parametrize("images", [3, 1])
def test_zeroed_inputs_give_the_products_outputs_and_gradients(tiny, tools, act, images, monkeypatch):

    # in-place rectifiers: every site's input is zeroed where its mask removes a neuron, and the
    # rectifier's own backward stops the gradient there; against the product with the mask after the
    # rectifier (the same class with the zeroing turned off) and the literal masked forward, exactly
    net = tiny.make(act=act, inplace=True, seed=3, scale=4.0 if act is nn.ReLU6 else 1.0).double()
    x = torch.randn((3, 3, 8, 8), generator=_gen(3), dtype=torch.float64)
    path = _tiny_path(tiny, images, seed=4)
    zeroed = []
    monkeypatch.setattr(pathway, "zero_removed_", lambda *a: zeroed.append(1) or zero_removed_(*a))
    y, grad = _output_and_gradient(net, x, path)
    assert len(zeroed) == 3  # every site, the reused module's two calls included
    monkeypatch.setattr(Masking, "zero_removed_inputs", lambda self, index, x: False)
    y_product, grad_product = _output_and_gradient(net, x, path)
    assert len(zeroed) == 3
    assert torch.equal(y, y_product) and torch.equal(grad, grad_product)
    torch.testing.assert_close(y, tiny.manual(net, x, [m.double() for m in path.masks]).detach())  # its BN formula rounds otherwise
    assert tools.no_hooks(net)


def test_zeroed_inputs_leave_an_earlier_edit_before_the_mask(tiny):

    # a hook registered before the pathway's (an outer block's edit) must see the rectifier's own
    # output, as with the product: the zeroing then steps aside; an inner block's edit comes after the mask
    net = tiny.make(act=nn.ReLU, inplace=True, seed=5).double()
    x = torch.randn((2, 3, 8, 8), generator=_gen(5), dtype=torch.float64)
    path = _tiny_path(tiny, 2, seed=6)
    masks = [m.double() for m in path.masks]
    shift = [torch.full((1, *shape), 0.5, dtype=torch.float64) for shape in tiny.shapes]
    with torch.no_grad():
        with hooked(net, lambda i, o: o + shift[i], keep_outputs=False), path.applied(net):
            outer = net(x)
        with path.applied(net), hooked(net, lambda i, o: o + shift[i], keep_outputs=False):
            inner = net(x)

    def manual(order):
        calls = []

        def rect(t):
            i = len(calls)
            calls.append(i)
            a = torch.relu(t)
            return (a + shift[i]) * masks[i] if order == "edit first" else a * masks[i] + shift[i]

        return tiny.manual(net, x, rect=rect)

    with torch.no_grad():
        edit_first, mask_first = manual("edit first"), manual("mask first")
    assert not torch.allclose(edit_first, mask_first)  # the order shows
    torch.testing.assert_close(outer, edit_first)
    torch.testing.assert_close(inner, mask_first)


@pytest.mark.parametrize("act", [nn.ReLU, nn.ReLU6])
def test_a_removed_neuron_is_zero_whatever_its_pre_activation(act):

    # the product gives NaN for NaN (and, after ReLU, +inf) times zero; the zeroed input gives 0
    pre = torch.tensor([[math.inf, -math.inf, math.nan, 2.0, math.inf, -math.inf, math.nan, 2.0]])
    keep = torch.tensor([[False] * 4 + [True] * 4])
    path = Pathway.from_masks([keep], ["0"])
    net = nn.Sequential(act(inplace=True))
    with torch.no_grad(), path.applied(net):
        out = net(pre.clone())
    kept = act()(pre[:, 4:])
    assert out[:, :4].tolist() == [[0.0] * 4]
    assert torch.equal(out[:, 4:].nan_to_num(-1.0), kept.nan_to_num(-1.0))


def test_zeroed_inputs_step_aside_for_tensors_they_cannot_edit(tiny):

    # a view, a leaf that needs its gradient, a forward-mode dual tensor, a mask that is not boolean:
    # nothing edited (the caller makes the product), the tensor untouched
    masking = Masking([torch.tensor([[True, False, True, False]])], ["s"])
    base = torch.arange(1.0, 9.0).view(2, 4)
    leaf = torch.ones(1, 4, requires_grad=True)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(torch.ones(1, 4), torch.ones(1, 4)) * 1.0  # not a view
        for x in (base[:1], leaf, dual):
            before = x.detach().clone()
            assert masking.zero_removed_inputs(0, x) is False
            assert torch.equal(x.detach(), before)
    assert Masking([torch.ones(1, 4)], ["s"]).zero_removed_inputs(0, torch.ones(1, 4)) is False
    fresh = torch.ones(1, 4)
    assert masking.zero_removed_inputs(0, fresh) is True and fresh.tolist() == [[1.0, 0.0, 1.0, 0.0]]


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


# ---------------------------------------------------------------- repr, equality, save and load


def _info_path(b=3, seed=2):
    masks = [torch.rand((b, *s), generator=_gen(seed)) < 0.4 for s in [(3, 5, 7), (1,), (2, 9, 1, 3)]]
    return Pathway.from_masks(
        masks,
        ["features.0", "fc/relu#1", "x"],
        "neuron_mct",
        requested_sparsity=torch.full((b,), 60.0),
        target=torch.arange(b),
        threshold=torch.linspace(0, 1, b, dtype=torch.float64),
        label="a string",
        steps=7,
        alpha=0.25,
        flag=True,
        nothing=None,
        nested={"a": [1, 2.5, "b"], "c": False},
    )


def test_repr_is_one_line_and_never_shows_masks():
    path = Pathway.from_masks([torch.ones(4, 1000, dtype=torch.bool), torch.zeros(4, 3, dtype=torch.bool)], ["a", "b"], "random",
                              requested_sparsity=torch.full((4,), 50.0))
    text = repr(path)
    assert text == (
        "Pathway(criterion='random', images=4, sites=2, neurons=1,003 per image, requested sparsity 50 %, realized 0.3 %)"
    )
    assert "\n" not in str(path) and "tensor" not in str(path)
    mixed = _info_path()
    mixed.sparsity = torch.tensor([10.0, 12.5, 30.0])
    assert repr(mixed).endswith("requested sparsity 60 %, realized 10.0-30.0 %)")
    assert "requested" not in repr(Pathway.from_masks([torch.ones(1, 2, dtype=torch.bool)], ["a"], "x"))


def test_equality_compares_contents():
    a, b = _info_path(), _info_path()
    assert a is not b and a == b and not (a != b)
    assert a != _info_path(seed=3)
    c = _info_path()
    c.info["threshold"] = c.info["threshold"].clone()
    c.info["threshold"][0] += 1e-12
    assert a != c  # info tensors by torch.equal
    d = _info_path()
    d.criterion = "dgr"
    assert a != d
    e = _info_path()
    e.masks[1] = e.masks[1].reshape(3, 1, 1)  # the same values in another shape
    assert a != e
    f = _info_path()
    f.info["label"] = "other"
    assert a != f
    g = _info_path()
    g.info["target"] = g.info["target"].float()  # a dtype change is a difference
    assert a != g
    assert (a == "not a pathway") is False
    with pytest.raises(TypeError):
        hash(a)


def test_save_load_round_trip(tmp_path):
    path = _info_path()
    file = tmp_path / "path.npz"
    path.save(file)
    back = Pathway.load(file)
    assert back == path
    assert list(back.info) == list(path.info)
    assert back.info["threshold"].dtype == torch.float64 and back.info["nested"] == {"a": [1, 2.5, "b"], "c": False}
    assert all(m.dtype == torch.bool for m in back.masks)
    # the file holds no pickle: numpy reads every entry with allow_pickle=False
    import numpy as np

    with np.load(file, allow_pickle=False) as stored:
        assert all(stored[k].dtype != object for k in stored.files)
    # an in-memory file works too
    import io

    buffer = io.BytesIO()
    path[1].save(buffer)
    buffer.seek(0)
    assert Pathway.load(buffer) == path[1]


def test_save_load_a_real_pathway(tmp_path):
    import pathlib_pw
    from tests import nets

    model, x = nets.tiny_resnet(), nets.images(2)
    path = pathlib_pw.extract_pathway(model, x, "neuron_mct", 50.0)
    path.save(tmp_path / "p.npz")
    back = Pathway.load(tmp_path / "p.npz")
    assert back == path
    with torch.no_grad(), back.applied(model):
        masked = model(x.clone())
    with torch.no_grad(), path.applied(model):
        torch.testing.assert_close(model(x.clone()), masked, rtol=0, atol=0)


def test_save_refuses_values_it_cannot_store(tmp_path):
    path = _info_path()
    path.info["callback"] = object()
    with pytest.raises(TypeError, match=r"info\['callback'\]"):
        path.save(tmp_path / "p.npz")


def test_load_rejects_foreign_and_damaged_files(tmp_path):
    import numpy as np

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ValueError, match="not a valid Pathway file"):
        Pathway.load(foreign)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a Pathway file"):
        Pathway.load(text)
    good = tmp_path / "good.npz"
    _info_path().save(good)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match="Pathway file"):
        Pathway.load(damaged)
    with pytest.raises(FileNotFoundError):
        Pathway.load(tmp_path / "missing.npz")


def test_torch_save_is_refused_under_weights_only(tmp_path):
    """What the docstring says: torch.load(weights_only=True) refuses a pickled Pathway; save/load is the way."""
    path = _info_path()
    torch.save(path, tmp_path / "p.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        torch.load(tmp_path / "p.pt", weights_only=True)
    assert "weights_only=True" in Pathway.__doc__


def test_unpickles_a_pathway_pickled_with_the_old_method_field():
    import pickle

    old = Pathway.__new__(Pathway)
    old.__dict__.update(masks=[torch.ones(1, 2, dtype=torch.bool)], sites=["a"], sparsity=torch.zeros(1), method="mct", info={})
    back = pickle.loads(pickle.dumps(old))
    assert back.criterion == "mct" and "method" not in back.__dict__
    assert back == Pathway.from_masks([torch.ones(1, 2, dtype=torch.bool)], ["a"], "mct")


def test_review_edge_cases_of_equality_save_load_and_cat(tmp_path):
    """NaN in info equals itself, a tuple survives save/load as an equal list, an empty mask list and
    a text file get clear errors, and cat refuses mixed criteria and drops what is not per image in all."""
    masks = [torch.tensor([[True, False], [False, True]])]
    a = Pathway.from_masks(masks, ["s"], "x", score=torch.tensor([float("nan"), 1.0]), pair=(1, 2), worst=float("nan"))
    assert a == a
    a.save(tmp_path / "a.npz")
    assert Pathway.load(tmp_path / "a.npz") == a
    with pytest.raises(ValueError, match="at least one site"):
        Pathway.from_masks([], [], "x")
    (tmp_path / "t.npz").write_text("not a pathway")
    with pytest.raises(ValueError, match=r"not a Pathway file written by Pathway.save \(not a .npz archive\)"):
        Pathway.load(tmp_path / "t.npz")
    other = Pathway.from_masks([masks[0][:1]], ["s"], "y")
    with pytest.raises(ValueError, match=r"one criterion, got \['x', 'y'\]"):
        Pathway.cat([a, other])
    plain = Pathway.from_masks([masks[0][:1]], ["s"], "x", pair=(1, 2))
    joined = Pathway.cat([a, plain])
    assert len(joined) == 3 and "score" not in joined.info and joined.info["pair"] == (1, 2)


def test_info_tensors_must_have_one_row_per_image():
    """A tensor in info with a dimension is per image: with any other first dimension than the batch
    size it would be kept whole by path[i] and dropped or mis-joined by cat, so it is refused at
    construction, naming the key; shared values are plain values or 0-d tensors."""
    masks = _masks(3, seed=4)
    message = r"info\['thr'\] has shape \(2,\), but a tensor in info is per image and must have 3 rows"
    with pytest.raises(ValueError, match=message):
        Pathway.from_masks(masks, ["a", "b", "c"], "mct", target=torch.arange(3), thr=torch.zeros(2))
    with pytest.raises(ValueError, match=message):
        Pathway(masks, ["a", "b", "c"], realized_sparsity(masks), "mct", {"thr": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"info\['grid'\] has shape \(4, 3\)"):
        Pathway.from_masks(masks, ["a", "b", "c"], "mct", grid=torch.zeros(4, 3))
    # shared values: a 0-d tensor, a list, a number; per image: (B,) and (B, ...) tensors
    path = Pathway.from_masks(
        masks, ["a", "b", "c"], "mct", level=torch.tensor(50.0), alphas=[0.1, 0.2], steps=7,
        target=torch.arange(3), curve=torch.arange(6.0).view(3, 2),
    )
    one = path[1]
    assert torch.equal(one.info["level"], torch.tensor(50.0)) and one.info["alphas"] == [0.1, 0.2] and one.info["steps"] == 7
    assert one.info["target"].tolist() == [1] and one.info["curve"].tolist() == [[2.0, 3.0]]
    assert Pathway.cat([path[2], path[0]]).info["curve"].tolist() == [[4.0, 5.0], [0.0, 1.0]]
    # a value set after construction is checked where the images are taken apart, also when the
    # part taken happens to have as many images as the value has rows
    path.info["late"] = torch.zeros(2)
    for index in (0, slice(0, 2), [2, 1]):
        with pytest.raises(ValueError, match=r"info\['late'\] has shape \(2,\)"):
            path[index]
    with pytest.raises(ValueError, match=r"info\['late'\] has shape \(2,\)"):
        Pathway.cat([path, path])
