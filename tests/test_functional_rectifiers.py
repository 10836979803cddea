"""Models whose rectifiers are functional calls (``F.relu``, ``torch.relu_``, ``x.relu()``, ``F.relu6``).

``nets.MixedNet`` (modules and functional calls mixed) against its hand-written forward: masks applied
by ``Pathway.applied``, NeuronMCT, PathwayGrad and Guided Backprop, and every criterion running
without side effects. torchvision's Inception v3 (no rectifier module at all): its sites, every
criterion, PathwayGrad and Guided Backprop, and hooks and modes restored, also after an error.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import pathlib_pw as pw
from pathlib_pw.pathway import Pathway
from pathlib_pw.saliency import saliency
from pathlib_pw.sites import hooked, makes_functional_calls, record_activations
from tests import nets
from tests import reference_impl as R
from tests.conftest import ref_reduce
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

# (method, variant, sparsity, options), cheap enough for Inception v3 at 75 px
CASES = {
    "mct": ("neuron_mct", "intended", 60, {}),
    "intgrad": ("neuron_intgrad", "intended", 60, {"steps": 1}),
    "intgrad_full": ("neuron_intgrad", "intended", 60, {"steps": 1, "recompute": "full"}),
    "intgrad_original": ("neuron_intgrad", "original_code", 60, {"steps": 1}),
    "greedy": ("greedy", "intended", 30, {"step": 15}),
    "greedy_original": ("greedy", "original_code", 30, {"rounds": 2}),
    "random": ("random", "intended", 50, {"seed": 3}),
    "dgr": ("dgr", "intended", 50, {"iterations": 3, "lr": 0.05}),
    "dgr_r": ("dgr", "intended", 50, {"iterations": 3, "lr": 0.05, "init": "r", "seed": 9, "max_retries": 1}),
    "active": ("active_subnet", "intended", None, {}),
    "dead_random": ("dead_first_random", "intended", 60, {"seed": 3}),
    "dead_activation": ("dead_first_activation", "intended", 60, {}),
}
ATOL = dict(rtol=1e-6, atol=1e-9)


def _run(model: nn.Module, x: torch.Tensor, case: str) -> Pathway:
    method, variant, p, options = CASES[case]
    return pw.extract_pathway(model, x, method, p, variant=variant, **options)


class Untouched:
    """A model's parameters, modes and hooks (also always-called ones), and the function mode stack."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.state = self._now()

    def _now(self) -> tuple:
        hooks = [
            tuple(len(getattr(m, a)) for a in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_always_called",
                                                "_backward_hooks", "_backward_pre_hooks"))
            for m in self.model.modules()
        ]
        modes = [m.training for m in self.model.modules()]
        return hooks, modes, torch._C._len_torch_function_stack()

    def check(self, what: str = "") -> None:
        assert self._now() == self.state, what


def _masked_literal(net: nets.MixedNet, x: torch.Tensor, masks: list[torch.Tensor], rect=None) -> torch.Tensor:
    """``net.literal_forward`` with every site's output multiplied by its mask (``rect`` applied after)."""
    k = iter(range(len(masks)))

    def site(_name: str, out: torch.Tensor) -> torch.Tensor:
        out = out * masks[next(k)].to(out.dtype)
        return out if rect is None else rect(out)

    return net.literal_forward(x, site)


def _input_gradient(forward, x: torch.Tensor, target) -> torch.Tensor:
    xi = x.detach().clone().requires_grad_(True)
    out = forward(xi)
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), torch.as_tensor(target)].sum(), xi)
    return g


# ------------------------------------------------------------------------------------- MixedNet


@pytest.mark.parametrize("statement", [False, True])
def test_pathway_applied_masks_literal(statement):
    net = nets.mixed_net(seed=4, statement=statement)
    x = nets.images(3, seed=4)
    g = torch.Generator().manual_seed(4)
    masks = [torch.rand((3, *s), generator=g) > 0.4 for s in nets.MixedNet.SHAPES]
    path = Pathway.from_masks(masks, nets.MixedNet.SITES)
    with torch.no_grad(), path.applied(net):
        got = net(x)
    torch.testing.assert_close(got, _masked_literal(net, x, masks), **ATOL)
    assert not torch.allclose(got, net(x))
    with torch.no_grad(), path[1].applied(net):  # one image broadcasts over the batch
        got = net(x)
    torch.testing.assert_close(got, _masked_literal(net, x, [m[1:2] for m in masks]), **ATOL)


@pytest.mark.parametrize("statement", [False, True])
def test_neuron_mct_literal(statement):
    net = nets.mixed_net(seed=5, statement=statement)
    x = nets.images(2, seed=5)
    for p in (30, 75):
        path = pw.extract_pathway(net, x, "neuron_mct", p)
        assert path.sites == nets.MixedNet.SITES
        for b in range(2):
            scores, target = R.mct_scores(net, x[b : b + 1])
            ref, thr = R.percentile_masks(scores, p)
            R.assert_masks_equal(R.batch_masks(path, b), ref, f"mixed mct p={p} image {b}")
            assert int(path.info["target"][b]) == target
            assert float(path.info["threshold"][b]) == pytest.approx(thr, rel=1e-9, abs=1e-12)
    ref, _, _ = R.active_subnet_masks(net, x[:1])
    R.assert_masks_equal(R.batch_masks(pw.extract_pathway(net, x, "active_subnet"), 0), ref, "mixed active subnet")


@pytest.mark.parametrize("statement", [False, True])
def test_pathway_grad_literal(statement):
    """PathwayGrad: the input gradient of the hand-written forward with the masks applied, explaining
    the pathway's target, reduced and normalized literally."""
    net = nets.mixed_net(seed=6, statement=statement)
    x = nets.images(2, seed=6)
    path = pw.extract_pathway(net, x, "neuron_mct", 70)
    target = path.info["target"]
    ref = _input_gradient(lambda t: _masked_literal(net, t, path.masks), x, target)
    got = pw.pathway_grad(net, x, path)
    torch.testing.assert_close(got.double(), ref_reduce(ref), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(got, saliency(net, x, "gradients"))


class _PositiveGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


def test_guided_backprop_literal():
    net = nets.mixed_net(seed=7)
    x = nets.images(2, seed=7)
    ones = [torch.ones(s) for s in nets.MixedNet.SHAPES]
    with torch.no_grad():
        target = net(x).argmax(1)
    ref = _input_gradient(lambda t: _masked_literal(net, t, ones, rect=_PositiveGradient.apply), x, target)
    plain = _input_gradient(lambda t: _masked_literal(net, t, ones), x, target)
    assert not torch.allclose(ref, plain)
    torch.testing.assert_close(saliency(net, x, "guided_backprop").double(), ref_reduce(ref), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("statement", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_criterion_runs_without_side_effects(case, statement):
    net = nets.mixed_net(seed=8, statement=statement)
    x = nets.images(2, seed=8)
    x0 = x.clone()
    params = [p.detach().clone() for p in net.parameters()]
    before = Untouched(net)
    path = _run(net, x, case)
    before.check(case)
    assert torch.equal(x, x0)
    assert all(torch.equal(p, q) and p.grad is None for p, q in zip(net.parameters(), params))
    assert path.sites == nets.MixedNet.SITES
    assert [tuple(m.shape) for m in path.masks] == [(2, *s) for s in nets.MixedNet.SHAPES]
    assert ((path.sparsity > 0) & (path.sparsity < 100)).all()


class InPlaceOnInput(nn.Module):
    """``x.relu_()`` on the model's own input, its result ignored: the caller's tensor must stay intact."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.relu_()
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


def test_in_place_functional_rectifier_on_the_input():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = InPlaceOnInput().double().eval()
    x = nets.images(2)
    x0 = x.clone()
    for case in sorted(CASES):
        path = _run(model, x, case)
        assert path.sites == ["/relu#0", "/relu#1"], case
    record_activations(model, x)
    pw.pathway_grad(model, x, path)
    saliency(model, x, "guided_backprop")
    assert torch.equal(x, x0)


# --------------------------------------------------------------------------------- Inception v3


@pytest.fixture(scope="module")
def inception():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    x = torch.randn(1, 3, 75, 75, generator=torch.Generator().manual_seed(0))
    return model, x


def test_inception_sites(inception):
    model, x = inception
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in model.modules())
    logits, acts, names = record_activations(model, x)
    assert makes_functional_calls(model) is True
    assert len(names) == len(set(names)) == 94  # one F.relu per BasicConv2d, each called once
    conv_blocks = [n for n, m in model.named_modules() if type(m).__name__ == "BasicConv2d"]
    assert names == [f"{n}/relu" for n in conv_blocks]
    assert names[:3] == ["Conv2d_1a_3x3/relu", "Conv2d_2a_3x3/relu", "Conv2d_2b_3x3/relu"]
    assert tuple(acts[0].shape) == (1, 32, 37, 37) and all(a.min() >= 0 and (a == 0).any() for a in acts)
    with torch.no_grad():
        assert torch.equal(logits, model(x.clone()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_inception_every_criterion(inception, case):
    model, x = inception
    before = Untouched(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NeuronIntGrad splits Inception with torch.fx: no fallback warning
        path = _run(model, x, case)
    before.check(case)
    assert len(path.sites) == 94 and path.sites[-1] == "Mixed_7c.branch_pool/relu"
    assert 0 <= float(path.sparsity[0]) <= 100
    if case == "mct":
        maps = pw.pathway_grad(model, x, path)
        assert maps.shape == (1, 75, 75) and bool(torch.isfinite(maps).all()) and float(maps.abs().max()) == 1.0
        with path.applied(model):  # every site sees its mask (a nested block records the masked outputs)
            _, acts, names = record_activations(model, x)
        assert names == path.sites
        _, plain, _ = record_activations(model, x)
        assert all(bool((a[~m] == 0).all()) for a, m in zip(acts, path.masks))
        assert any(not torch.equal(a, p) for a, p in zip(acts, plain))
        before.check("pathway_grad")


def test_inception_guided_backprop(inception):
    model, x = inception
    before = Untouched(model)
    gbp = saliency(model, x, "guided_backprop")
    before.check("guided backprop")
    assert gbp.shape == (1, 75, 75) and float(gbp.abs().max()) == 1.0
    assert not torch.allclose(gbp, saliency(model, x, "gradients"))


def test_inception_hooks_and_mode_restored_after_an_error(inception):
    model, x = inception
    before = Untouched(model)
    with pytest.raises(RuntimeError, match="boom"):
        with torch.no_grad(), hooked(model, lambda i, o: o) as trace:
            assert torch._C._len_torch_function_stack() == 1
            model(x.clone())
            assert len(trace.sites) == 94
            raise RuntimeError("boom")
    before.check("error in the block")

    def bad(i, o):
        if i == 50:
            raise KeyError("inside the forward pass")
        return o

    with pytest.raises(KeyError):
        with torch.no_grad(), hooked(model, bad):
            model(x.clone())
    before.check("error inside the forward pass")
