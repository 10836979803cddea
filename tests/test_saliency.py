"""pathlib_pw.saliency: PathwayGrad and the baselines (book/methods.md: PathwayGrad and the baselines), against literal references."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathlib_pw.pathway import Pathway
from pathlib_pw.saliency import SALIENCY_METHODS, normalize, pathway_grad, reduce_channels, saliency
from pathlib_pw.sites import record_activations
from tests.conftest import literal_input_grad as _literal_input_grad
from tests.conftest import randn as _x


def _gen(seed):
    return torch.Generator().manual_seed(seed)

CAT_CLASSES = range(281, 286)
ATOL = dict(rtol=1e-4, atol=1e-5)


def _ones_path(model, x):
    _, acts, names = record_activations(model, x)
    return Pathway.from_masks([torch.ones_like(a, dtype=torch.bool) for a in acts], names)


# ----------------------------------------------------------------------------------------------
# reduction and normalization
# ----------------------------------------------------------------------------------------------


def test_reduce_channels_literal_signed_max_abs():
    a = torch.zeros(1, 3, 1, 3)
    a[0, :, 0, 0] = torch.tensor([1.0, -5.0, 4.0])  # negative winner keeps its sign
    a[0, :, 0, 1] = torch.tensor([0.5, 0.25, -0.1])
    a[0, :, 0, 2] = torch.tensor([-2.0, 3.0, -7.0])
    r = reduce_channels(a)
    assert r.shape == (1, 1, 3)
    assert r.tolist() == [[[-5.0, 0.5, -7.0]]]
    n = normalize(r)
    torch.testing.assert_close(n, torch.tensor([[[-5.0 / 7, 0.5 / 7, -1.0]]]))


def test_reduce_channels_matches_argmax_with_ties_and_nan():
    g = torch.Generator().manual_seed(3)
    a = torch.randint(-3, 4, (2, 4, 5, 6), generator=g).float()  # many ties in magnitude, also +-
    a[0, 2, 1, 1] = float("nan")
    a[1, :, 2, 2] = float("nan")
    a[1, 1, 3, 3], a[1, 3, 3, 3] = float("nan"), float("nan")
    literal = a.gather(1, a.abs().argmax(1, keepdim=True)).squeeze(1)
    torch.testing.assert_close(reduce_channels(a), literal, equal_nan=True, rtol=0, atol=0)


def test_normalize_per_image_and_zero_map():
    m = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 0.5), torch.arange(16.0).view(4, 4) - 20])
    n = normalize(m)
    assert torch.equal(n[0], torch.zeros(4, 4))
    assert torch.equal(n[1], torch.ones(4, 4))
    torch.testing.assert_close(n[2], (torch.arange(16.0).view(4, 4) - 20) / 20)
    assert float(n[2].abs().max()) == 1.0


# ----------------------------------------------------------------------------------------------
# gradients, input x gradient, integrated gradients
# ----------------------------------------------------------------------------------------------


def test_gradients_and_input_mct_literal(tiny):
    net = tiny.make(seed=11)
    x = _x((3, 3, 8, 8), seed=11)
    with torch.no_grad():
        tgt = tiny.manual(net, x).argmax(1)
    g = _literal_input_grad(lambda t: tiny.manual(net, t), x, tgt)
    torch.testing.assert_close(saliency(net, x, "gradients").double(), tiny.reduce(g), **ATOL)
    torch.testing.assert_close(saliency(net, x, "input_mct").double(), tiny.reduce(g * x), **ATOL)
    # explicit target
    g2 = _literal_input_grad(lambda t: tiny.manual(net, t), x, [2, 0, 1])
    torch.testing.assert_close(saliency(net, x, "gradients", target=[2, 0, 1]).double(), tiny.reduce(g2), **ATOL)
    torch.testing.assert_close(saliency(net, x, "input_mct", target=[2, 0, 1]).double(), tiny.reduce(g2 * x), **ATOL)


def _literal_intgrad(forward, x, target, steps=50):
    total = torch.zeros_like(x)
    for k in range(1, steps + 1):  # right Riemann sum from the all-zero baseline
        total += _literal_input_grad(forward, x * (k / steps), target)
    return total / steps * x


def test_input_intgrad_literal(tiny):
    net = tiny.make(seed=12)
    x = _x((2, 3, 8, 8), seed=12) * 2
    f = lambda t: tiny.manual(net, t)  # noqa: E731
    with torch.no_grad():
        tgt = f(x).argmax(1)
    ref = _literal_intgrad(f, x, tgt)
    # sanity of the reference itself: completeness, sum of attributions ~ f(x) - f(0)
    with torch.no_grad():
        gap = f(x)[torch.arange(2), tgt] - f(torch.zeros_like(x))[torch.arange(2), tgt]
    np.testing.assert_allclose(ref.sum((1, 2, 3)).numpy(), gap.numpy(), rtol=0.1, atol=0.05)
    got = saliency(net, x, "input_intgrad")
    torch.testing.assert_close(got.double(), tiny.reduce(ref), **ATOL)
    # fewer steps give a different (literal) answer: steps is honoured
    ref10 = _literal_intgrad(f, x, tgt, steps=10)
    torch.testing.assert_close(saliency(net, x, "input_intgrad", steps=10).double(), tiny.reduce(ref10), **ATOL)


# ----------------------------------------------------------------------------------------------
# guided backprop
# ----------------------------------------------------------------------------------------------


class _GuidedRect(torch.autograd.Function):
    """clamp(x, 0, hi); backward passes grad only where 0 < x (< hi) AND grad > 0."""

    @staticmethod
    def forward(ctx, t, hi):
        ctx.save_for_backward(t)
        ctx.hi = hi
        return t.clamp(min=0) if hi is None else t.clamp(0, hi)

    @staticmethod
    def backward(ctx, g):
        (t,) = ctx.saved_tensors
        ok = (t > 0) & (g > 0)
        if ctx.hi is not None:
            ok &= t < ctx.hi
        return g * ok.to(g.dtype), None


@pytest.mark.parametrize("act, hi", [(nn.ReLU, None), (nn.ReLU6, 6.0)])
@pytest.mark.parametrize("reuse", [True, False])
def test_guided_backprop_literal(tiny, act, hi, reuse):
    net = tiny.make(act=act, reuse=reuse, seed=13, scale=1.5 if hi else 1.0)
    x = _x((2, 3, 8, 8), seed=13) * (1 if hi else 2)
    if hi is not None:  # the ReLU6 net must really saturate somewhere, or the upper cut is untested
        keep = []
        with torch.no_grad():
            tiny.manual(net, x, rect=F.relu, keep=keep)
        assert any((k > 6).any() for k in keep)
    with torch.no_grad():
        tgt = tiny.manual(net, x).argmax(1)
    ref = _literal_input_grad(lambda t: tiny.manual(net, t, rect=lambda u: _GuidedRect.apply(u, hi)), x, tgt)
    plain = _literal_input_grad(lambda t: tiny.manual(net, t), x, tgt)
    assert ref.abs().max() > 0
    assert not torch.allclose(ref, plain)  # guided differs from the plain gradient here
    got = saliency(net, x, "guided_backprop")
    torch.testing.assert_close(got.double(), tiny.reduce(ref), **ATOL)


def test_guided_backprop_matches_captum(tiny):
    from captum.attr import GuidedBackprop

    net = tiny.make(act=nn.ReLU, inplace=False, reuse=False, seed=14)
    x = _x((3, 3, 8, 8), seed=14) * 2
    with torch.no_grad():
        tgt = net(x).argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GuidedBackprop(copy.deepcopy(net)).attribute(x.clone(), target=tgt)
    got = saliency(net, x, "guided_backprop")
    torch.testing.assert_close(got.double(), tiny.reduce(ref), **ATOL)


# ----------------------------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------------------------


def _literal_gradcam(model, module, x, target):
    store = {}
    h = module.register_forward_hook(lambda _m, _i, o: store.__setitem__("a", o))
    try:
        xi = x.detach().clone().requires_grad_(True)
        out = model(xi)
    finally:
        h.remove()
    a = store["a"]
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), torch.as_tensor(target)].sum(), a)
    w = g.mean((2, 3), keepdim=True)
    cam = (w * a).sum(1, keepdim=True).clamp(min=0).detach()
    up = F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)[:, 0]
    peak = up.flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1)
    return torch.where(up.flatten(1).amax(1).view(-1, 1, 1) > 0, up / peak, up)


def test_gradcam_literal_tiny_and_errors(tiny):
    net = tiny.make(seed=15, reuse=False)
    x = _x((3, 3, 8, 8), seed=15)
    with torch.no_grad():
        tgt = net(x).argmax(1)
    got = saliency(net, x, "gradcam", layer="act2")
    assert got.shape == (3, 8, 8)
    assert float(got.min()) >= 0 and float(got.max()) <= 1
    torch.testing.assert_close(got, _literal_gradcam(net, net.act2, x, tgt), **ATOL)
    with pytest.raises(ValueError, match="layer"):
        saliency(net, x, "gradcam")  # no default for this architecture
    with pytest.raises(ValueError, match="layer"):
        saliency(net, x, "gradcam", layer="no_such_layer")


@pytest.mark.parametrize(
    "fixture, default, size",
    [("resnet18", "layer4", 64), ("vgg16", "features", 64), ("mobilenet_random", "features", 64),
     ("efficientnet_random", "net._blocks.15", 64)],
)
def test_gradcam_default_layers(request, fixture, default, size):
    model = request.getfixturevalue(fixture)
    x = _x((2, 3, size, size), seed=16)
    with torch.no_grad():
        tgt = model(x).argmax(1)
    got = saliency(model, x, "gradcam")
    assert got.shape == (2, size, size)
    assert float(got.min()) >= 0 and float(got.max()) <= 1
    module = dict(model.named_modules())[default]
    torch.testing.assert_close(got, _literal_gradcam(model, module, x, tgt), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got, saliency(model, x, "gradcam", layer=default))


# ----------------------------------------------------------------------------------------------
# general contract of all methods
# ----------------------------------------------------------------------------------------------


def test_unknown_method():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3), nn.ReLU(), nn.Linear(3, 2))
    for bad in ["grad", "pathway_grad", "GRADIENTS", ""]:
        with pytest.raises(ValueError, match="method"):
            saliency(net, torch.randn(1, 3, 2, 2), bad)


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_all_methods_contract_resnet18(resnet18, tools, method):
    """Shape (B,H,W), values in [-1,1] with max |.| = 1, batched == per image, model left as found."""
    model = copy.deepcopy(resnet18)
    reference = copy.deepcopy(resnet18).eval()
    flags = tools.set_mixed_modes(model)  # BN layers in train mode must not matter
    model.layer1[0].conv1.weight.grad = torch.full_like(model.layer1[0].conv1.weight, 3.0)
    before = tools.params(model)
    x = _x((2, 3, 32, 32), seed=17)
    kwargs = {"steps": 4} if method == "input_intgrad" else {}
    maps = saliency(model, x, method, **kwargs).detach()
    assert maps.shape == (2, 32, 32)
    assert torch.isfinite(maps).all()
    assert float(maps.abs().max()) <= 1.0 + 1e-6
    np.testing.assert_allclose(maps.abs().flatten(1).amax(1).numpy(), 1.0, rtol=1e-6)
    if method == "gradcam":
        assert float(maps.min()) >= 0.0
    for i in range(2):
        one = saliency(model, x[i : i + 1], method, **kwargs).detach()
        torch.testing.assert_close(one, maps[i : i + 1], rtol=1e-3, atol=1e-4)
    # eval-mode semantics: identical to the same weights in eval mode
    torch.testing.assert_close(saliency(reference, x, method, **kwargs).detach(), maps, rtol=1e-3, atol=1e-4)
    # the model is left exactly as found
    assert tools.modes(model) == flags
    assert tools.no_hooks(model)
    for a, b in zip(before, tools.params(model)):
        assert torch.equal(a, b)
    assert torch.equal(model.layer1[0].conv1.weight.grad, torch.full_like(model.layer1[0].conv1.weight, 3.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "layer1.0.conv1.weight")


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_maps_are_plain_tensors(tiny, method):
    """A returned map is a result, not a node of an autograd graph (like every other method's)."""
    net = tiny.make(seed=22, reuse=False)
    x = _x((2, 3, 8, 8), seed=22)
    kwargs = {"layer": "act2"} if method == "gradcam" else {}
    maps = saliency(net, x, method, **kwargs)
    assert not maps.requires_grad
    assert maps.grad_fn is None


# ----------------------------------------------------------------------------------------------
# PathwayGrad
# ----------------------------------------------------------------------------------------------


def test_pathway_grad_all_ones_is_gradients(tiny, resnet18):
    net = tiny.make(seed=18)
    x = _x((3, 3, 8, 8), seed=18)
    with torch.no_grad():
        tgt = tiny.manual(net, x).argmax(1)
    ref = tiny.reduce(_literal_input_grad(lambda t: tiny.manual(net, t), x, tgt))
    got = pathway_grad(net, x, _ones_path(net, x))
    torch.testing.assert_close(got.double(), ref, **ATOL)
    torch.testing.assert_close(got, saliency(net, x, "gradients"))

    xr = _x((2, 3, 32, 32), seed=18)
    torch.testing.assert_close(pathway_grad(resnet18, xr, _ones_path(resnet18, xr)), saliency(resnet18, xr, "gradients"))


def _find_flipping_path(tiny, net, x):
    """A random pathway under which the masked net predicts another class than the unmasked one."""
    with torch.no_grad():
        pred = tiny.manual(net, x).argmax(1)
    for seed in range(200):
        g = _gen(seed)
        masks = [torch.rand((len(x), *s), generator=g) < 0.5 for s in tiny.shapes]
        with torch.no_grad():
            masked_pred = tiny.manual(net, x, [m.float() for m in masks]).argmax(1)
        if (masked_pred != pred).any():
            return masks, pred, masked_pred
    raise AssertionError("no flipping pathway found")


def test_pathway_grad_masked_literal_explains_unmasked_prediction(tiny):
    net = tiny.make(seed=19, classes=5)
    x = _x((3, 3, 8, 8), seed=19)
    masks, pred, masked_pred = _find_flipping_path(tiny, net, x)
    path = Pathway.from_masks(masks, ["act#0", "act2", "act#1"])
    fm = [m.float() for m in masks]
    ref = _literal_input_grad(lambda t: tiny.manual(net, t, fm), x, pred)  # target: the UNMASKED prediction
    got = pathway_grad(net, x, path)
    torch.testing.assert_close(got.double(), tiny.reduce(ref), **ATOL)
    # explicit target
    ref2 = _literal_input_grad(lambda t: tiny.manual(net, t, fm), x, [4, 4, 0])
    torch.testing.assert_close(pathway_grad(net, x, path, target=[4, 4, 0]).double(), tiny.reduce(ref2), **ATOL)
    # the pathway's own target (as recorded by a criterion) is the default
    path_t = Pathway.from_masks(masks, ["act#0", "act2", "act#1"], target=torch.tensor([4, 4, 0]))
    torch.testing.assert_close(pathway_grad(net, x, path_t).double(), tiny.reduce(ref2), **ATOL)
    # and it differs from the plain gradient
    assert not torch.allclose(got, saliency(net, x, "gradients"))


def test_pathway_grad_one_image_path_broadcasts(tiny):
    net = tiny.make(seed=20)
    x = _x((3, 3, 8, 8), seed=20)
    g = _gen(20)
    masks = [torch.rand((1, *s), generator=g) < 0.7 for s in tiny.shapes]
    path = Pathway.from_masks(masks, ["act#0", "act2", "act#1"])
    got = pathway_grad(net, x, path)
    assert got.shape == (3, 8, 8)
    with torch.no_grad():
        pred = tiny.manual(net, x).argmax(1)
    ref = _literal_input_grad(lambda t: tiny.manual(net, t, [m.float() for m in masks]), x, pred)
    torch.testing.assert_close(got.double(), tiny.reduce(ref), **ATOL)
    for i in range(3):
        torch.testing.assert_close(pathway_grad(net, x[i : i + 1], path, target=int(pred[i])), got[i : i + 1])


def test_pathway_grad_validation_and_model_untouched(tiny, tools):
    net = tiny.make(seed=21)
    x = _x((3, 3, 8, 8), seed=21)
    path2 = Pathway.from_masks([torch.ones((2, *s), dtype=torch.bool) for s in tiny.shapes], ["a", "b", "c"])
    with pytest.raises(ValueError):
        pathway_grad(net, x, path2)
    with pytest.raises(TypeError):
        pathway_grad(net, x, [torch.ones(3, *s, dtype=torch.bool) for s in tiny.shapes])
    assert tools.no_hooks(net)
    flags = tools.set_mixed_modes(net)
    before = tools.params(net)
    path3 = Pathway.from_masks([torch.rand((3, *s), generator=_gen(1)) < 0.5 for s in tiny.shapes], ["a", "b", "c"])
    out = pathway_grad(net, x, path3)
    assert out.shape == (3, 8, 8) and float(out.abs().max()) <= 1.0
    assert tools.modes(net) == flags
    assert tools.no_hooks(net)
    assert all(p.grad is None for p in net.parameters())
    for a, b in zip(before, tools.params(net)):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------
# the embedded pretrained default on a real photo
# ----------------------------------------------------------------------------------------------


def _own_hooks_forward(model, masks=None, store=None):
    """Hooks of our own on every ReLU6 module (MobileNetV2 calls each once), in call order."""
    count = {"i": 0}

    def hook(_m, _i, out):
        k = count["i"]
        count["i"] += 1
        if store is not None:
            store.append(out)
        if masks is not None:
            return out * masks[k]
        return None

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU6)]

    def forward(t):
        count["i"] = 0
        return model(t)

    return forward, handles


def test_pretrained_mobilenet_on_chelsea(mobilenet_pretrained, chelsea, tiny, tools):
    model, x = mobilenet_pretrained, chelsea
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        pred = int(model(x).argmax(1))
    assert pred in CAT_CLASSES

    plain = _literal_input_grad(model, x, [pred])
    grad_map = saliency(model, x, "gradients")
    assert grad_map.shape == (1, 224, 224)
    torch.testing.assert_close(grad_map.double(), tiny.reduce(plain), **ATOL)
    torch.testing.assert_close(pathway_grad(model, x, _ones_path(model, x)), grad_map)

    # a NeuronMCT pathway at 90 % built literally: |a * dlogit/da|, numpy percentile, score <= thr removed
    store: list[torch.Tensor] = []
    forward, handles = _own_hooks_forward(model, store=store)
    try:
        xi = x.clone().requires_grad_(True)
        out = forward(xi)
        grads = torch.autograd.grad(out[0, pred], store)
    finally:
        for h in handles:
            h.remove()
    assert len(store) == 35
    scores = [(a * g).abs().detach() for a, g in zip(store, grads)]
    pooled = np.concatenate([s.double().numpy().ravel() for s in scores])
    thr = np.percentile(pooled, 90.0)
    masks = [(s.double() > thr).float() for s in scores]
    kept = sum(float(m.sum()) for m in masks) / pooled.size
    assert kept <= 0.1 + 1e-6
    path = Pathway.from_masks([m.bool() for m in masks], record_activations(model, x)[2])

    forward, handles = _own_hooks_forward(model, masks=masks)
    try:
        ref = _literal_input_grad(forward, x, [pred])
    finally:
        for h in handles:
            h.remove()
    got = pathway_grad(model, x, path)
    assert got.shape == (1, 224, 224)
    torch.testing.assert_close(got.double(), tiny.reduce(ref), rtol=1e-3, atol=1e-4)
    assert not torch.allclose(got, grad_map, atol=1e-2)
    assert tools.no_hooks(model)


def test_gradcam_default_layer_and_suggestion_look_through_a_wrapper():
    """select_output(resnet18, 0) keeps ResNet's default Grad-CAM layer (model.layer4); a wrapped custom
    model gets a suggestion inside the wrapper, and the old argument order a short error."""
    import torchvision

    from pathlib_pw.models import select_output

    class Pair(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return out, out

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    wrapped = select_output(Pair(resnet), 0)
    direct = saliency(resnet, x, "gradcam", target=1)
    through = saliency(wrapped, x, "gradcam", target=1)
    torch.testing.assert_close(through, direct)
    custom = select_output(Pair(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                                                    torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                                    torch.nn.Linear(4, 2))), 0)
    with pytest.raises(ValueError, match=r'layer="model.inner.2"'):
        saliency(custom, x, "gradcam")
    with pytest.raises(TypeError, match=r"saliency takes \(model, x, method\): call saliency\(model, x, 'gradcam'\)"):
        saliency("gradcam", resnet, x)


def test_old_homes_re_export_the_new_ones():
    """pathlib_pw.saliency, .attribution_methods and .quantus_adapter keep their names for one release,
    as the very objects of pathlib_pw.attribution (so that registering or patching one is the other)."""
    import importlib

    from pathlib_pw.architectures import GRADCAM_LAYERS
    from pathlib_pw.attribution import baselines, controls, maps, quantus, registry
    from pathlib_pw.attribution import pathway_grad as pathway_grad_module

    new_homes = (baselines, controls, maps, quantus, registry, pathway_grad_module)
    for old in ("pathlib_pw.saliency", "pathlib_pw.attribution_methods", "pathlib_pw.quantus_adapter"):
        module = importlib.import_module(old)
        assert module.__doc__ and "next release" in module.__doc__
        for name in module.__all__:
            value = getattr(module, name)
            if name == "GRADCAM_LAYERS":
                assert value is GRADCAM_LAYERS
                continue
            assert any(getattr(home, name, None) is value for home in new_homes), f"{old}.{name}"
    from pathlib_pw.saliency import _input_gradient  # another module's helper imports it from here

    assert _input_gradient is maps.input_gradient
    assert registry.ATTRIBUTION_METHODS is importlib.import_module("pathlib_pw.attribution_methods").ATTRIBUTION_METHODS
