"""The paper's methods side by side (pathlib_pw.experiments.attribution): each pathway extracted once,
the same target for every method, options per method, against the individual calls and literal
references."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pathlib_pw.criteria import extract_pathway, extract_pathways
from pathlib_pw.experiments import attribution
from pathlib_pw.experiments.attribution import attribution_maps, attribution_maps_at, pathway_criteria
from pathlib_pw.saliency import SALIENCY_METHODS, pathway_grad, saliency
from tests.conftest import literal_input_grad as _literal_input_grad
from tests.conftest import randn as _x

ATOL = dict(rtol=1e-4, atol=1e-5)


def test_pathway_criteria_are_the_criteria_behind_pathway_methods():
    methods = ["gradients", "gradcam", "neuron_mct", "input_x_neuron_intgrad", "neuron_intgrad", "input_mct"]
    assert pathway_criteria(methods) == {"neuron_mct", "neuron_intgrad"}
    assert pathway_criteria(["input_x_dgr"]) == {"dgr"} and pathway_criteria(list(SALIENCY_METHODS)) == set()

_TINY_BASELINES = [m for m in SALIENCY_METHODS if m != "gradcam"]  # the tiny net has no default Grad-CAM layer


def _tiny_case(tiny, seed):
    net = tiny.make(seed=seed, classes=5)
    x = _x((3, 3, 8, 8), seed=seed) * 1.5
    with torch.no_grad():
        pred = tiny.manual(net, x).argmax(1)
    return net, x, pred


@pytest.mark.parametrize("explicit_target", [False, True])
def test_attribution_maps_equal_the_individual_calls(tiny, explicit_target):
    net, x, pred = _tiny_case(tiny, 30)
    target = torch.tensor([4, 0, 2]) if explicit_target else None
    tgt = target if explicit_target else pred
    if explicit_target:
        assert (tgt != pred).any()  # really a non-default target
    methods = _TINY_BASELINES + ["neuron_mct", "neuron_intgrad", "input_x_neuron_mct", "input_x_neuron_intgrad"]
    maps = attribution_maps(net, x, methods, sparsity=60, target=target)
    assert list(maps) == methods
    for m in _TINY_BASELINES:
        torch.testing.assert_close(maps[m], saliency(net, x, m, target=tgt), msg=m)
    for c in ("neuron_mct", "neuron_intgrad"):
        path = extract_pathway(net, x, c, 60, target=tgt)
        torch.testing.assert_close(maps[c], pathway_grad(net, x, path, target=tgt), msg=c)
        torch.testing.assert_close(maps["input_x_" + c], pathway_grad(net, x, path, target=tgt, times_input=True), msg=c)
    for m, v in maps.items():
        assert v.shape == (3, 8, 8)
        peaks = v.abs().flatten(1).amax(1)
        # normalized per image (an all-zero map, e.g. guided backprop of a class no ReLU unit feeds, stays 0)
        assert all(abs(float(p) - 1) < 1e-6 or float(p) == 0 for p in peaks), (m, peaks)
        if not m.startswith("guided"):
            np.testing.assert_allclose(peaks.numpy(), 1.0, rtol=1e-6, err_msg=m)
    # options are routed per method: IntGrad's steps do not reach NeuronMCT or the InputIntGrad baseline
    path2 = extract_pathway(net, x, "neuron_intgrad", 60, target=tgt, steps=2)
    two = attribution_maps(net, x, ["neuron_intgrad"], sparsity=60, target=target, options={"neuron_intgrad": {"steps": 2}})["neuron_intgrad"]
    torch.testing.assert_close(two, pathway_grad(net, x, path2, target=tgt))
    # the explicit target is honoured (maps differ from the prediction's)
    if explicit_target:
        default = attribution_maps(net, x, ["gradients", "neuron_mct"], sparsity=60)
        assert not torch.allclose(default["gradients"], maps["gradients"])
        assert not torch.allclose(default["neuron_mct"], maps["neuron_mct"])


def test_attribution_maps_target_defaults_to_unmasked_prediction(tiny):
    net, x, pred = _tiny_case(tiny, 31)
    methods = ["gradients", "input_mct", "neuron_mct", "input_x_neuron_mct"]
    default = attribution_maps(net, x, methods, sparsity=70)
    explicit = attribution_maps(net, x, methods, sparsity=70, target=pred)
    for m in methods:
        torch.testing.assert_close(default[m], explicit[m], msg=m)
    # literal: the gradient of the predicted logit through the NeuronMCT pathway's masks (own forward)
    path = extract_pathway(net, x, "neuron_mct", 70, target=pred)
    masks = [m.float() for m in path.masks]
    ref = _literal_input_grad(lambda t: tiny.manual(net, t, masks), x, pred)
    torch.testing.assert_close(default["neuron_mct"].double(), tiny.reduce(ref), **ATOL)


def test_attribution_maps_extracts_each_pathway_once(tiny, monkeypatch):
    net, x, _ = _tiny_case(tiny, 33)
    calls = []

    def counting(model, x_, method, *args, **kwargs):
        calls.append(method)
        return extract_pathways(model, x_, method, *args, **kwargs)

    monkeypatch.setattr(attribution, "extract_pathways", counting)
    attribution_maps(net, x, ["neuron_mct", "input_x_neuron_mct", "gradients", "input_x_neuron_intgrad"], 50)
    assert sorted(calls) == ["neuron_intgrad", "neuron_mct"]
    calls.clear()
    attribution_maps(net, x, ["gradients", "input_mct"])  # baselines only: no pathway, no sparsity needed
    assert calls == []
    # several sparsities: still one extraction per criterion
    attribution_maps_at(net, x, ["neuron_mct", "gradients"], [50, 80])
    assert calls == ["neuron_mct"]


def test_attribution_maps_at_equal_one_call_per_sparsity(tiny):
    net, x, pred = _tiny_case(tiny, 34)
    methods = ["gradients", "neuron_mct", "input_x_neuron_intgrad", "map_x_input_neuron_mct"]
    at = attribution_maps_at(net, x, methods, [40, 80], pred)
    assert len(at) == 2 and all(list(maps) == methods for maps in at)
    for level, maps in zip((40, 80), at):
        alone = attribution_maps(net, x, methods, level, pred)
        for m in methods:
            torch.testing.assert_close(maps[m], alone[m], msg=f"{m} at {level}")
    assert at[0]["gradients"] is at[1]["gradients"]  # computed once, shared
    assert not torch.allclose(at[0]["neuron_mct"], at[1]["neuron_mct"])
    with pytest.raises(ValueError, match="sparsity is required"):
        attribution_maps_at(net, x, methods, [])


def test_attribution_maps_options_per_method(tiny):
    net, x, pred = _tiny_case(tiny, 33)
    maps = attribution_maps(
        net, x, ["neuron_mct", "neuron_intgrad", "input_intgrad"], sparsity=60,
        options={"neuron_intgrad": {"steps": 2}, "input_intgrad": {"steps": 7}},
    )
    path2 = extract_pathway(net, x, "neuron_intgrad", 60, target=pred, steps=2)
    torch.testing.assert_close(maps["neuron_intgrad"], pathway_grad(net, x, path2, target=pred))
    torch.testing.assert_close(maps["neuron_mct"], pathway_grad(net, x, extract_pathway(net, x, "neuron_mct", 60, target=pred), target=pred))
    torch.testing.assert_close(maps["input_intgrad"], saliency(net, x, "input_intgrad", target=pred, steps=7))
    assert not torch.allclose(maps["input_intgrad"], saliency(net, x, "input_intgrad", target=pred))
    with pytest.raises(ValueError, match="options"):
        attribution_maps(net, x, ["gradients"], options={"neuron_mct": {}})


def test_attribution_maps_errors(tiny):
    net, x, _ = _tiny_case(tiny, 34)
    for bad in (["gradients", "grad"], ["input_x_gradients"], ["input_x_"], ["NeuronMCT"]):
        with pytest.raises(ValueError, match="methods") as err:
            attribution_maps(net, x, bad, sparsity=50)
        message = str(err.value)
        for accepted in ("gradients", "guided_backprop", "gradcam", "neuron_mct", "neuron_intgrad", "input_x_"):
            assert accepted in message, (bad, accepted)
    for methods in (["neuron_mct"], ["gradients", "input_x_neuron_intgrad"]):
        with pytest.raises(ValueError, match="sparsity"):
            attribution_maps(net, x, methods)


def test_attribution_maps_resnet18_all_paper_methods_and_model_untouched(resnet18, tools):
    model = copy.deepcopy(resnet18)
    reference = copy.deepcopy(resnet18).eval()
    flags = tools.set_mixed_modes(model)
    before = tools.params(model)
    x = _x((2, 3, 32, 32), seed=35)
    methods = ["gradients", "guided_backprop", "gradcam", "input_mct", "neuron_mct", "input_x_neuron_mct"]
    maps = attribution_maps(model, x, methods, sparsity=75)
    assert tools.modes(model) == flags
    assert tools.no_hooks(model)
    assert all(p.grad is None for p in model.parameters())
    for a, b in zip(before, tools.params(model)):
        assert torch.equal(a, b)
    with torch.no_grad():
        pred = reference(x).argmax(1)
    path = extract_pathway(reference, x, "neuron_mct", 75, target=pred)
    expected = {m: saliency(reference, x, m, target=pred) for m in methods[:4]}
    expected["neuron_mct"] = pathway_grad(reference, x, path, target=pred)
    expected["input_x_neuron_mct"] = pathway_grad(reference, x, path, target=pred, times_input=True)
    for m in methods:
        assert maps[m].shape == (2, 32, 32)
        assert not maps[m].requires_grad
        torch.testing.assert_close(maps[m], expected[m], rtol=1e-3, atol=1e-4, msg=m)


def test_input_x_pathway_grad_literal(tiny):
    """input_x_<criterion>: (d logit / d x through the masked net) * x, max-abs over channels, / max |.|."""
    net, x, pred = _tiny_case(tiny, 32)
    path = extract_pathway(net, x, "neuron_mct", 70, target=pred)
    assert float(path.sparsity.min()) > 50
    masks = [m.float() for m in path.masks]
    grad = _literal_input_grad(lambda t: tiny.manual(net, t, masks), x, pred)
    ref = tiny.reduce(grad * x)
    got = attribution_maps(net, x, ["input_x_neuron_mct"], sparsity=70)["input_x_neuron_mct"]
    torch.testing.assert_close(got.double(), ref, **ATOL)
    torch.testing.assert_close(pathway_grad(net, x, path, times_input=True).double(), ref, **ATOL)
    # multiplied BEFORE the channel reduction: differs from (reduced gradient) x (reduced input)
    after = tiny.reduce(tiny.reduce(grad).unsqueeze(1) * tiny.reduce(x).unsqueeze(1))
    assert not torch.allclose(ref, after, atol=1e-3)
    # the mask and the input both matter
    assert not torch.allclose(got, saliency(net, x, "input_mct"), atol=1e-3)
    assert not torch.allclose(got, pathway_grad(net, x, path), atol=1e-3)

    # the same literal with our own forward hooks on the real modules (act is called twice per forward)
    calls = {"i": 0}

    def hook(_m, _i, out):
        k = calls["i"]
        calls["i"] += 1
        return out * masks[k]

    handles = [net.act.register_forward_hook(hook), net.act2.register_forward_hook(hook)]
    try:

        def forward(t):
            calls["i"] = 0
            return net(t.clone())

        grad_hooks = _literal_input_grad(forward, x, pred)
    finally:
        for h in handles:
            h.remove()
    # hook order: act (conv site), act2, act (fc site) -> masks[0], masks[1], masks[2]
    torch.testing.assert_close(grad_hooks.double(), grad.double(), **ATOL)
