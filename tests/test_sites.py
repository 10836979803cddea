"""pathlib_pw.sites: rectifier call sites, hooks, modes, activations and gradients (book/methods.md: neurons, paths and sparsity)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import pathlib_pw
from pathlib_pw.sites import (
    activations_and_gradients,
    evaluating,
    hooked,
    makes_functional_calls,
    record_activations,
    resolve_target,
)
from tests import nets
from tests import reference_impl as R


def _x(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _independent_call_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Rectifier module names in call order, recorded with our own hooks (not pathlib_pw's)."""
    order: list[str] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, _o, n=n: order.append(n))
        for n, m in model.named_modules()
        if isinstance(m, (nn.ReLU, nn.ReLU6))
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return order


# ----------------------------------------------------------------------------------------------
# site counts, names and order
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture, size, n_sites, n_modules",
    [("resnet50", 32, 49, 17), ("resnet18", 32, 17, 9), ("vgg16", 32, 15, 15), ("mobilenet_random", 32, 35, 35)],
)
def test_site_counts(request, fixture, size, n_sites, n_modules):
    model = request.getfixturevalue(fixture)
    logits, acts, names = record_activations(model, _x((1, 3, size, size)))
    assert logits.shape == (1, 1000)
    assert len(acts) == len(names) == n_sites
    modules = {n.split("#")[0] for n in names}
    assert len(modules) == n_modules
    assert len(set(names)) == n_sites


@pytest.mark.parametrize("arch, n_sites, n_neurons", [("vgg16", 15, 13_555_712), ("resnet50", 49, 9_608_704)])
def test_neuron_counts_at_224_match_paper(arch, n_sites, n_neurons):
    # shapes only: build on the meta device so that 224 px costs nothing
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)().eval()
        with torch.no_grad(), hooked(model) as trace:
            model(torch.empty(1, 3, 224, 224))
    assert len(trace.sites) == n_sites
    assert sum(math.prod(s) for s in trace.shapes) == n_neurons


def test_resnet50_names_literal(resnet50):
    _, acts, names = record_activations(resnet50, _x((1, 3, 32, 32)))
    expected = ["relu"]
    for layer, blocks in zip(range(1, 5), (3, 4, 6, 3)):
        for b in range(blocks):
            expected += [f"layer{layer}.{b}.relu#{k}" for k in range(3)]
    assert names == expected
    # forward order, with an independent hook recording each module call
    order = _independent_call_order(resnet50, _x((1, 3, 32, 32)))
    assert [n.split("#")[0] for n in names] == order


def test_resnet18_and_vgg_and_mobilenet_names(resnet18, vgg16, mobilenet_random):
    _, _, names = record_activations(resnet18, _x((1, 3, 32, 32)))
    expected = ["relu"] + [f"layer{l}.{b}.relu#{k}" for l in range(1, 5) for b in range(2) for k in range(2)]
    assert names == expected

    _, _, names = record_activations(vgg16, _x((1, 3, 32, 32)))
    conv_relus = [1, 3, 6, 8, 11, 13, 15, 18, 20, 22, 25, 27, 29]
    assert names == [f"features.{i}" for i in conv_relus] + ["classifier.1", "classifier.4"]

    _, _, names = record_activations(mobilenet_random, _x((1, 3, 32, 32)))
    expected = ["features.0.2", "features.1.conv.0.2"]
    for i in range(2, 18):
        expected += [f"features.{i}.conv.0.2", f"features.{i}.conv.1.2"]
    expected.append("features.18.2")
    assert names == expected
    order = _independent_call_order(mobilenet_random, _x((1, 3, 32, 32)))
    assert names == order


def test_single_call_modules_have_no_suffix_reused_have_all(tiny):
    net = tiny.make(reuse=True)
    _, acts, names = record_activations(net, _x((2, 3, 8, 8)))
    assert names == ["act#0", "act2", "act#1"]
    assert [tuple(a.shape) for a in acts] == [(2, *s) for s in tiny.shapes]
    net = tiny.make(reuse=False)
    _, _, names = record_activations(net, _x((2, 3, 8, 8)))
    assert names == ["act", "act2", "act3"]


# ----------------------------------------------------------------------------------------------
# values recorded, in-place rectifiers
# ----------------------------------------------------------------------------------------------


def test_inplace_relu_values_resnet18(resnet18):
    """Each recorded activation equals relu of its independently captured pre-activation."""
    x = _x((2, 3, 32, 32), seed=3)
    pre: dict[str, torch.Tensor] = {}
    handles = []

    def save(name):
        def hook(_m, _i, out):
            pre[name] = out.detach().clone()  # clone: the in-place ReLU overwrites it afterwards

        return hook

    def save_in(name):
        def hook(_m, args):
            pre[name] = args[0].detach().clone()

        return hook

    handles.append(resnet18.bn1.register_forward_hook(save("bn1")))
    for l in range(1, 5):
        for b in range(2):
            blk = getattr(resnet18, f"layer{l}")[b]
            p = f"layer{l}.{b}"
            handles.append(blk.register_forward_pre_hook(save_in(p + ".in")))
            handles.append(blk.bn1.register_forward_hook(save(p + ".bn1")))
            handles.append(blk.bn2.register_forward_hook(save(p + ".bn2")))
            if blk.downsample is not None:
                handles.append(blk.downsample.register_forward_hook(save(p + ".ds")))
    try:
        logits, acts, names = record_activations(resnet18, x)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        assert torch.allclose(logits, resnet18(x), atol=1e-5)
    d = dict(zip(names, acts))
    torch.testing.assert_close(d["relu"], pre["bn1"].clamp(min=0))
    for l in range(1, 5):
        for b in range(2):
            p = f"layer{l}.{b}"
            torch.testing.assert_close(d[p + ".relu#0"], pre[p + ".bn1"].clamp(min=0))
            identity = pre.get(p + ".ds", pre[p + ".in"])
            torch.testing.assert_close(d[p + ".relu#1"], (pre[p + ".bn2"] + identity).clamp(min=0))
    # the activations are not all zero or all positive: a real test of the rectification
    assert (d["relu"] == 0).any() and (d["relu"] > 0).any()


def test_inplace_relu6_values_mobilenet(mobilenet_random):
    x = _x((1, 3, 32, 32), seed=4) * 3
    pre: dict[str, torch.Tensor] = {}
    handles = []
    modules = dict(mobilenet_random.named_modules())
    for name, m in modules.items():
        if isinstance(m, nn.ReLU6):
            parent, idx = name.rsplit(".", 1)
            bn = modules[f"{parent}.{int(idx) - 1}"]
            assert isinstance(bn, nn.BatchNorm2d)
            handles.append(bn.register_forward_hook(lambda _m, _i, o, n=name: pre.__setitem__(n, o.detach().clone())))
    try:
        _, acts, names = record_activations(mobilenet_random, x)
    finally:
        for h in handles:
            h.remove()
    assert len(pre) == 35
    for n, a in zip(names, acts):
        torch.testing.assert_close(a, pre[n].clamp(0, 6))


def test_edit_replaces_output_downstream(tiny):
    net = tiny.make()
    x = _x((2, 3, 8, 8))
    masks = [torch.rand((1, *s), generator=torch.Generator().manual_seed(i)) for i, s in enumerate(tiny.shapes)]
    with torch.no_grad(), hooked(net, lambda i, out: out * masks[i]) as trace:
        y = net(x)
        y2 = net(x)  # the site counter restarts with every forward call
    with torch.no_grad():
        keep = []
        ref = tiny.manual(net, x, masks, keep=keep)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(y2, ref)
    assert trace.sites == ["act#0", "act2", "act#1"]
    for o, r in zip(trace.outputs, keep):
        torch.testing.assert_close(o, r)


# ----------------------------------------------------------------------------------------------
# hooks and modes
# ----------------------------------------------------------------------------------------------


def test_hooked_removes_hooks_on_exit_and_on_error(resnet18, tools):
    user = resnet18.layer1[0].relu.register_forward_hook(lambda *a: None)
    before = tools.hook_counts(resnet18)
    try:
        with hooked(resnet18) as trace:
            assert sum(c[0] for c in tools.hook_counts(resnet18)) >= 9
            resnet18(_x((1, 3, 32, 32)))
        assert len(trace.sites) == 17
        assert tools.hook_counts(resnet18) == before

        with pytest.raises(RuntimeError, match="boom"):
            with hooked(resnet18, lambda i, o: o):
                resnet18(_x((1, 3, 32, 32)))
                raise RuntimeError("boom")
        assert tools.hook_counts(resnet18) == before

        # an error raised inside a hook (during the forward pass) also leaves no hooks
        def bad(i, o):
            raise KeyError("inside")

        with pytest.raises(KeyError):
            with hooked(resnet18, bad):
                resnet18(_x((1, 3, 32, 32)))
        assert tools.hook_counts(resnet18) == before
    finally:
        user.remove()
    assert tools.no_hooks(resnet18)


def test_hooked_without_rectifier_raises_and_leaves_no_hooks(tools):
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 4))
    with pytest.raises(ValueError):
        with hooked(model):
            pass
    assert tools.no_hooks(model)
    with pytest.raises(ValueError):
        record_activations(model, _x((1, 3, 8, 8)))
    assert tools.no_hooks(model)

    class Tanh(nn.Module):
        """No rectifier, and not built from torch.nn layers only: found out by its first forward pass."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.tanh(self.fc(x.flatten(1)[:, :4]))

    model = Tanh()
    with pytest.raises(ValueError, match="no rectifier.*F.relu"):
        record_activations(model, _x((1, 3, 8, 8)))
    assert tools.no_hooks(model) and torch._C._len_torch_function_stack() == 0
    with pytest.raises(ValueError, match="no rectifier"):  # now known before any forward pass
        with hooked(model):
            pass
    assert tools.no_hooks(model)

    class Functional(Tanh):
        def forward(self, x):
            return torch.relu(self.fc(x.flatten(1)[:, :4]))

    _, acts, names = record_activations(Functional(), _x((1, 3, 8, 8)))
    assert names == ["/relu"] and acts[0].shape == (1, 3)


def test_evaluating_restores_mixed_modes(resnet18, tools):
    model = pathlib_pw.load_model("resnet18", pretrained=False, seed=9)
    flags = tools.set_mixed_modes(model)
    assert any(flags) and not all(flags)
    with evaluating(model):
        assert not any(tools.modes(model))
    assert tools.modes(model) == flags
    with pytest.raises(ZeroDivisionError):
        with evaluating(model):
            1 / 0
    assert tools.modes(model) == flags
    model.train()
    record_activations(model, _x((1, 3, 32, 32)))
    assert all(tools.modes(model))
    activations_and_gradients(model, _x((1, 3, 32, 32)))
    assert all(tools.modes(model))


# ----------------------------------------------------------------------------------------------
# activations_and_gradients
# ----------------------------------------------------------------------------------------------


def test_activations_and_gradients_literal_tiny(tiny):
    net = tiny.make(seed=5)
    x = _x((3, 3, 8, 8), seed=5)
    sentinel = torch.full_like(net.fc1.weight, 7.0)
    net.fc1.weight.grad = sentinel.clone()
    logits, acts, grads, names, tgt = activations_and_gradients(net, x)
    assert names == ["act#0", "act2", "act#1"]
    # .grad of parameters untouched (one set, the others still None)
    assert torch.equal(net.fc1.weight.grad, sentinel)
    assert all(p.grad is None for n, p in net.named_parameters() if n != "fc1.weight")
    net.fc1.weight.grad = None
    with torch.no_grad():
        ref_logits = tiny.manual(net, x)
    torch.testing.assert_close(logits, ref_logits)
    assert torch.equal(tgt, ref_logits.argmax(1))
    for i in range(3):
        xi = x[i : i + 1].clone().requires_grad_(True)
        keep: list[torch.Tensor] = []
        out = tiny.manual(net, xi, keep=keep)
        g = torch.autograd.grad(out[0, int(tgt[i])], keep)
        for s in range(3):
            torch.testing.assert_close(acts[s][i : i + 1], keep[s].detach())
            torch.testing.assert_close(grads[s][i : i + 1], g[s], atol=1e-6, rtol=1e-5)


def test_activations_and_gradients_explicit_target_and_edit(tiny):
    net = tiny.make(seed=6, classes=5)
    x = _x((2, 3, 8, 8), seed=6)
    masks = [(torch.rand((2, *s), generator=torch.Generator().manual_seed(10 + i)) > 0.4).float()
             for i, s in enumerate(tiny.shapes)]
    logits, acts, grads, _, tgt = activations_and_gradients(net, x, target=[4, 1], edit=lambda i, o: o * masks[i])
    assert tgt.tolist() == [4, 1]
    xi = x.clone().requires_grad_(True)
    keep: list[torch.Tensor] = []
    out = tiny.manual(net, xi, masks, keep=keep)
    torch.testing.assert_close(logits, out.detach())
    g = torch.autograd.grad(out[0, 4] + out[1, 1], keep)
    for s in range(3):
        torch.testing.assert_close(acts[s], keep[s].detach())
        torch.testing.assert_close(grads[s], g[s], atol=1e-6, rtol=1e-5)


def test_activations_and_gradients_batch_equals_per_image(resnet18, tools):
    x = _x((3, 3, 32, 32), seed=8)
    before = tools.params(resnet18)
    logits, acts, grads, names, tgt = activations_and_gradients(resnet18, x)
    assert all(p.grad is None for p in resnet18.parameters())
    for i in range(3):
        li, ai, gi, ni, ti = activations_and_gradients(resnet18, x[i : i + 1])
        assert ni == names
        assert int(ti) == int(tgt[i])
        torch.testing.assert_close(li, logits[i : i + 1], atol=1e-5, rtol=1e-4)
        for s in range(len(names)):
            torch.testing.assert_close(ai[s], acts[s][i : i + 1], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(gi[s], grads[s][i : i + 1], atol=1e-6, rtol=1e-4)
    for a, b in zip(before, tools.params(resnet18)):
        assert torch.equal(a, b)
    assert tools.no_hooks(resnet18)
    # a directional derivative check of one site gradient: d/dt logit(a + t v) = <g, v>
    s = 5
    v = torch.randn(acts[s][:1].shape, generator=torch.Generator().manual_seed(0))
    t = 1e-5
    x0 = x[:1].double()
    model64 = copy.deepcopy(resnet18).eval().double()
    with torch.no_grad():
        with hooked(model64, lambda i, o: o + t * v.double() if i == s else o):
            up = model64(x0)[0, int(tgt[0])]
        with hooked(model64, lambda i, o: o - t * v.double() if i == s else o):
            down = model64(x0)[0, int(tgt[0])]
    fd = float((up - down) / (2 * t))
    assert fd == pytest.approx(float((grads[s][:1] * v).sum()), rel=1e-3, abs=1e-5)


# ----------------------------------------------------------------------------------------------
# functional rectifier calls (nets.MixedNet: modules and F.relu / torch.relu_ / x.relu() / F.relu6)
# ----------------------------------------------------------------------------------------------


def _always_called(model: nn.Module) -> list[int]:
    return [len(m._forward_hooks_always_called) for m in model.modules()]


@pytest.mark.parametrize("statement", [False, True])
def test_mixed_net_sites_and_values_literal(statement):
    """Names, order, shapes and values against the hand-written forward (no hooks, no modes)."""
    net = nets.mixed_net(statement=statement)
    x = nets.images(3)
    x0 = x.clone()
    logits, acts, names = record_activations(net, x)
    assert names == nets.MixedNet.SITES
    assert [tuple(a.shape) for a in acts] == [(3, *s) for s in nets.MixedNet.SHAPES]
    assert torch.equal(x, x0)
    for b in range(3):
        ref_logits, ref_acts, ref_names = R.forward_sites(net, x[b : b + 1])
        assert ref_names == names
        torch.testing.assert_close(logits[b : b + 1], ref_logits.detach())
        for a, r in zip(acts, ref_acts):
            torch.testing.assert_close(a[b : b + 1], r.detach())
    assert all((a == 0).any() and (a > 0).any() for a in acts), "every site really rectifies something"


@pytest.mark.parametrize("statement", [False, True])
def test_mixed_net_edit_and_gradients_literal(statement):
    """Edited outputs are what the rest of the network sees, also for an in-place call whose result is
    ignored (``h.relu_()``), and gradients are taken w.r.t. them."""
    net = nets.mixed_net(seed=1, statement=statement)
    x = nets.images(2, seed=1)
    g = torch.Generator().manual_seed(1)
    masks = [(torch.rand((2, *s), generator=g, dtype=torch.float64) > 0.3).double() for s in nets.MixedNet.SHAPES]
    logits, acts, grads, names, tgt = activations_and_gradients(net, x, edit=lambda i, o: o * masks[i])
    assert names == nets.MixedNet.SITES
    for b in range(2):
        ref_logits, outs, _ = R.forward_sites(net, x[b : b + 1], lambda k, _n, o: o * masks[k][b : b + 1])
        torch.testing.assert_close(logits[b : b + 1], ref_logits.detach())
        ref_grads = torch.autograd.grad(ref_logits[0, int(tgt[b])], outs)
        for s in range(len(names)):
            torch.testing.assert_close(acts[s][b : b + 1], outs[s].detach())
            torch.testing.assert_close(grads[s][b : b + 1], ref_grads[s])
    # the masks change the output: the test sees the edit
    assert not torch.allclose(logits, activations_and_gradients(net, x)[0])


def test_nested_blocks_on_a_functional_model_see_the_outer_edit():
    """As with module hooks, an outer block's edit comes first and an inner block records its result."""
    net = nets.mixed_net(seed=2)
    x = nets.images(1, seed=2)
    g = torch.Generator().manual_seed(2)
    masks = [(torch.rand(s, generator=g) > 0.5).double() for s in nets.MixedNet.SHAPES]
    with torch.no_grad(), hooked(net, lambda i, o: o * masks[i]), hooked(net) as inner:
        logits = net(x)
    ref_logits, outs, _ = R.forward_sites(net, x, lambda k, _n, o: o * masks[k])
    torch.testing.assert_close(logits, ref_logits.detach())
    assert inner.sites == nets.MixedNet.SITES
    for o, r in zip(inner.outputs, outs):
        torch.testing.assert_close(o, r.detach())


def test_module_only_model_runs_without_the_mode_after_its_first_pass(tiny):
    """The first forward pass under ``hooked`` also watches for functional calls; once a model is known
    to make none, only the module hooks remain (the same hooks as before functional sites existed)
    and the numbers are bit for bit those of the watched pass."""
    net = tiny.make(seed=3)
    x = _x((2, 3, 8, 8), seed=3)
    assert makes_functional_calls(net) is None
    seen = []

    def look(*_):
        hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())
        seen.append((torch._C._len_torch_function_stack(), hooks))

    handle = net.fc2.register_forward_hook(look)
    try:
        first = record_activations(net, x)
        assert makes_functional_calls(net) is False
        second = record_activations(net, x)
    finally:
        handle.remove()
    assert seen[0][0] == 1
    assert seen[1] == (0, 1 + 2 + 1), "reset pre-hook, the two ReLU modules' hooks and this test's hook"
    assert first[2] == second[2] == ["act#0", "act2", "act#1"]
    assert torch.equal(first[0], second[0]) and all(torch.equal(a, b) for a, b in zip(first[1], second[1]))
    # built from torch.nn layers only: known without a forward pass
    assert makes_functional_calls(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())) is False
    assert makes_functional_calls(nn.Sequential(nn.TransformerEncoderLayer(8, 2))) is None


def test_functional_hooks_and_mode_removed_on_exit_and_on_error(tools):
    net = nets.mixed_net()
    x = nets.images(1)
    before, always = tools.hook_counts(net), _always_called(net)

    def clean() -> bool:
        stack = torch._C._len_torch_function_stack()
        return tools.hook_counts(net) == before and _always_called(net) == always and stack == 0

    with hooked(net) as trace:
        assert torch._C._len_torch_function_stack() == 1
        net(x)
        torch.relu(x)  # outside the model's forward pass: not a site
        torch.relu_(x.clone())
    assert trace.sites == nets.MixedNet.SITES and len(trace.outputs) == 8
    assert makes_functional_calls(net) is True
    assert clean()

    with pytest.raises(RuntimeError, match="boom"):
        with hooked(net, lambda i, o: o):
            net(x)
            raise RuntimeError("boom")
    assert clean()

    def bad(i, o):
        if i == 3:  # inside block/relu#1, two modules deep
            raise KeyError("inside")
        return o

    with pytest.raises(KeyError):
        with hooked(net, bad):
            net(x)
    assert clean()
    with hooked(net) as trace:  # the next block starts from scratch
        net(x)
    assert trace.sites == nets.MixedNet.SITES
    assert clean() and tools.no_hooks(net)


def test_functional_call_inside_a_rectifier_module_is_that_module():
    """``nn.ReLU.forward`` calls ``F.relu``: one site, the module's. A subclass that calls it twice too."""

    class TwiceReLU(nn.ReLU):
        def forward(self, x):
            return F.relu(F.relu(x) - 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = TwiceReLU()
            self.plain = nn.ReLU()

        def forward(self, x):
            h = self.plain(self.fc(x.flatten(1)[:, :4]))
            return self.act(h).relu()

    _, acts, names = record_activations(Net(), _x((2, 3, 8, 8)))
    assert names == ["plain", "act", "/relu"]

# ----------------------------------------------------------------------------------------------
# resolve_target
# ----------------------------------------------------------------------------------------------


def test_resolve_target_values():
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0], [5.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 9.0]])
    assert resolve_target(None, logits).tolist() == [1, 0, 3]
    assert resolve_target(2, logits).tolist() == [2, 2, 2]
    assert resolve_target([0, 3, 1], logits).tolist() == [0, 3, 1]
    assert resolve_target(torch.tensor([3, 2, 1]), logits).tolist() == [3, 2, 1]
    assert resolve_target(np.array([1, 1, 0]), logits).tolist() == [1, 1, 0]
    assert resolve_target(torch.tensor(2), logits).dtype == torch.long


@pytest.mark.parametrize("bad", [4, -1, [0, 1, 4], [0, 1], [0, 1, 2, 3], 1000])
def test_resolve_target_out_of_range_or_wrong_length(bad):
    logits = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="target"):
        resolve_target(bad, logits)


@pytest.mark.parametrize(
    "bad", [1.5, 2.0, [0.0, 1.0, 2.0], torch.tensor([0.0, 1.0, 2.0]), np.array([0.5, 1.5, 2.5]), True, "1"]
)
def test_resolve_target_non_integer_is_type_error(bad):
    logits = torch.zeros(3, 4)
    with pytest.raises(TypeError, match="target"):
        resolve_target(bad, logits)


@pytest.mark.parametrize("net", ["tiny_cnn", "tiny_resnet"])
@pytest.mark.parametrize("input_requires_grad", [False, True])
def test_recorded_activations_gradients_and_logits_are_detached(net, input_requires_grad):
    """What the recorders return holds no autograd graph, whatever the caller's grad mode, input and
    parameters (which require grad here): keeping one would keep the whole forward graph alive per
    tensor and let a caller's backward reach into the model."""
    model = getattr(nets, net)()
    assert all(p.requires_grad for p in model.parameters())
    x = nets.images(2).requires_grad_(input_requires_grad)
    with torch.enable_grad():
        logits, acts, _ = record_activations(model, x)
        logits2, acts2, grads, _, _ = activations_and_gradients(model, x)
    for name, t in [("logits", logits), ("logits2", logits2)] + [
        (f"{kind}[{i}]", t) for kind, ts in (("acts", acts), ("acts2", acts2), ("grads", grads)) for i, t in enumerate(ts)
    ]:
        assert t.requires_grad is False and t.grad_fn is None, name
    assert all(p.grad is None for p in model.parameters())


def test_check_input_rejects_every_nan_and_infinity_and_accepts_finite_values_whose_sum_overflows():
    from pathlib_pw.sites import check_input

    # the sum answers for most batches; finite values that overflow it (or cancel an infinity into
    # NaN) must still be told apart by the element-wise test
    big = torch.full((2, 3, 4, 4), 3e38)
    assert check_input(big) is big and not torch.isfinite(big.sum())
    for dtype in (torch.float16, torch.float32, torch.float64):
        x = torch.zeros(2, 3, 4, 4, dtype=dtype)
        assert check_input(x) is x
        for bad in (float("nan"), float("inf"), -float("inf")):
            y = x.clone()
            y[1, 2, 3, 0] = bad
            with pytest.raises(ValueError, match="x contains NaN or infinite values"):
                check_input(y)
        both = x.clone()
        both[0, 0, 0, 0], both[1, 0, 0, 0] = float("inf"), -float("inf")  # a NaN sum
        with pytest.raises(ValueError, match="images contains NaN"):
            check_input(both, "images")
    half = torch.full((1, 3, 8, 8), 60000.0, dtype=torch.float16)  # finite, its float16 sum is not
    assert check_input(half) is half
