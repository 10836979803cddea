"""Rendering through a pathway with torch-lucent (pathlib_pw.decoding): hooks, seeding, the pathway
applied during the render, the model's state, sizes and errors. Tiny nets, few steps: seconds."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pathlib_pw import Pathway
from pathlib_pw import decoding as dec
from pathlib_pw.sites import record_activations
from tests import nets
from tests import reference_impl as R

SMALL = dec.Parameterization(size=6)  # upsampled to the tiny net's 8 px


def _net(tiny):
    return tiny.make(classes=3, scale=2.0)


def _path(net, keep: float = 0.5, seed: int = 0, size: int = 8, batch: int = 1) -> Pathway:
    """A random one-image pathway of the tiny net (its sites at ``size`` px)."""
    _, acts, names = record_activations(net, torch.zeros(batch, 3, size, size))
    g = torch.Generator().manual_seed(seed)
    masks = [torch.rand(a.shape, generator=g) < keep for a in acts]
    return Pathway.from_masks(masks, names, "test")


def _render(net, path=None, **kwargs):
    options = dict(input_size=8, parameterization=SMALL, steps=12, progress=False)
    options.update(kwargs)
    return dec.render(net, options.pop("objective", dec.logit(1)), path, **options)


def _counting_objective(fail_at: int, error: BaseException):
    """A lucent objective (the logit of class 1 via lucent's "labels") that raises at its ``fail_at``-th call."""
    calls = []

    def inner(hook):
        calls.append(1)
        if len(calls) == fail_at:
            raise error
        return -hook("labels")[:, 1].mean()

    return dec.lucent_modules().objectives.Objective(inner), calls


def test_lucent_render_vis_itself_leaks_a_hook_on_every_module(tiny):
    """torch-lucent 0.1.8: each render_vis call leaves one forward hook on every submodule."""
    net = _net(tiny)
    lucent = dec.lucent_modules()
    before = dec.hook_count(net)
    for calls in (1, 2):
        lucent.render.render_vis(
            net,
            dec.channel("fc2", 1),
            lambda: lucent.param.image(6, fft=False, decorrelate=False),
            transforms=[],
            thresholds=(2,),
            progress=False,
            show_image=False,
            fixed_image_size=8,
        )
        assert dec.hook_count(net) == before + calls * (len(list(net.modules())) - 1)


def test_render_leaves_no_hook_and_keeps_the_callers_hooks(tiny):
    net = _net(tiny)
    kept = net.fc1.register_forward_hook(lambda *a: None)
    before = dec.hook_count(net)
    path = _path(net)
    for p in (None, path, path):
        _render(net, p)
        _render(
            net,
            p,
            objective=dec.channel("act2", 0),
            parameterization=dec.Parameterization(size=6, fft=True, decorrelate=True, transforms="standard"),
        )
        assert dec.hook_count(net) == before
    assert len(net.fc1._forward_hooks) == 1
    kept.remove()


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("bad objective")])
def test_an_error_mid_render_leaves_no_hook_and_restores_everything(tiny, tools, error):
    net = _net(tiny)
    modes = tools.set_mixed_modes(net)
    params = tools.params(net)
    flags = [p.requires_grad for p in net.parameters()]
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    lucent = dec.lucent_modules()
    devices = lucent.spatial.device, lucent.transform.device, lucent.color._linear_decorrelate_color
    before = dec.hook_count(net)
    objective, calls = _counting_objective(4, error)
    with pytest.raises(type(error), match=str(error)):
        _render(net, _path(net), objective=objective)
    assert len(calls) == 4  # it failed in the middle of the optimization
    assert dec.hook_count(net) == before
    assert tools.modes(net) == modes
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(torch.equal(a, b) for a, b in zip(params, tools.params(net)))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1]) and np.random.get_state()[2] == numpy_state[2]
    assert (lucent.spatial.device, lucent.transform.device, lucent.color._linear_decorrelate_color) == devices


def test_an_interrupt_lucent_swallows_is_raised_again(tiny, capsys):
    """render_vis catches KeyboardInterrupt and returns the unfinished image: render refuses it."""
    net = _net(tiny)
    before = dec.hook_count(net)
    objective, _ = _counting_objective(3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        _render(net, objective=objective)
    assert "Interrupted optimization at step 3" in capsys.readouterr().out  # lucent's own message
    assert dec.hook_count(net) == before


def test_the_pathway_is_applied_during_the_render(tiny):
    net = _net(tiny)
    path = _path(net, keep=0.6, seed=3)
    start = _render(net, path, steps=1)
    through_path = _render(net, path, steps=40)
    through_full = _render(net, None, steps=40)
    x_start, x_path = dec.model_input(start, 8), dec.model_input(through_path, 8)
    # the logit through the path grows; the full network's differs from it
    before, after = dec.outputs(net, x_start, path)[0, 1], dec.outputs(net, x_path, path)[0, 1]
    assert after > before + 0.1
    assert not torch.allclose(dec.outputs(net, x_path)[0, 1], after)
    # the same start (seed) optimized through the full network ends elsewhere
    assert np.abs(through_path - through_full).max() > 1e-2
    # a path that keeps nothing in the last site cuts the input off: the gradient is 0 and Adam never moves
    cut = Pathway.from_masks([m.clone() for m in path.masks[:-1]] + [torch.zeros_like(path.masks[-1])], path.sites, "cut")
    assert np.array_equal(_render(net, cut, steps=1), _render(net, cut, steps=40))


def test_two_renders_with_one_seed_are_bit_identical(tiny):
    net = _net(tiny)
    path = _path(net)
    for parameterization in (SMALL, dec.Parameterization(size=6, fft=True, decorrelate=True, transforms="standard")):
        a = _render(net, path, parameterization=parameterization, seed=5)
        b = _render(net, path, parameterization=parameterization, seed=5)
        c = _render(net, path, parameterization=parameterization, seed=6)
        assert a.dtype == np.float32 and a.shape == (1, 6, 6, 3)
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)
    # the global generators continue where they were
    torch.manual_seed(123)
    np.random.seed(123)
    _render(net, path)
    after = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.equal(after[0], torch.rand(3)) and np.array_equal(after[1], np.random.rand(3))


def test_render_keeps_weights_mode_and_grad(tiny, tools):
    net = _net(tiny)
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.25)
    net.fc1.weight.grad = None  # one parameter without a gradient stays without
    net.fc2.requires_grad_(False)
    modes = tools.set_mixed_modes(net)
    params = tools.params(net)
    grads = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    flags = [p.requires_grad for p in net.parameters()]
    _render(net, _path(net))
    assert all(torch.equal(a, b) for a, b in zip(params, tools.params(net)))
    assert all((g is None and p.grad is None) or torch.equal(g, p.grad) for g, p in zip(grads, net.parameters()))
    assert [p.requires_grad for p in net.parameters()] == flags
    assert tools.modes(net) == modes


def test_the_network_sees_exactly_the_input_size_and_model_input_reproduces_it(tiny):
    net = _net(tiny)
    seen = []
    handle = net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        for parameterization in (SMALL, dec.LUCENT_DEFAULT):  # lucent's transforms pad and rescale before the upsampling
            seen.clear()
            images = _render(net, _path(net), parameterization=parameterization, steps=3, thresholds=(1, 2, 3))
            assert {tuple(s.shape) for s in seen} - {(1, 3, 8, 8)} == set()
        seen.clear()
        images = _render(net, _path(net), steps=3, thresholds=(1, 2, 3))
        # step k + 1 saw the image kept after step k, preprocessed as model_input does it
        renders = [s for s in seen if s.abs().sum() > 0][-3:]
        assert torch.equal(dec.model_input(images[0:1], 8), renders[1])
        assert torch.equal(dec.model_input(images[1:2], 8), renders[2])
    finally:
        handle.remove()


def test_lucent_runs_on_the_models_device_and_its_devices_are_restored(tiny, monkeypatch):
    """lucent places its tensors on a module-level device (cuda:0 whenever CUDA exists)."""
    lucent = dec.lucent_modules()
    monkeypatch.setattr(lucent.spatial, "device", torch.device("meta"))
    monkeypatch.setattr(lucent.transform, "device", torch.device("meta"))
    net = _net(tiny)
    image = _render(
        net, _path(net), parameterization=dec.Parameterization(size=6, fft=True, decorrelate=True, transforms="standard")
    )
    assert np.isfinite(image).all()
    assert lucent.spatial.device == torch.device("meta") and lucent.transform.device == torch.device("meta")


def test_bad_input_is_a_clear_error(tiny):
    net = _net(tiny)
    with pytest.raises(ValueError, match=r"cannot render through this pathway at 16 px.*extracted at"):
        _render(net, _path(net, size=8), input_size=16)
    with pytest.raises(ValueError, match="one-image pathway"):
        _render(net, _path(net, batch=2))
    with pytest.raises(ValueError, match=r"class index in \[0, 3\)"):
        _render(net, objective=dec.logit(3))
    with pytest.raises(ValueError, match="non-negative class index"):
        dec.logit(-1)
    with pytest.raises(ValueError, match="thresholds"):
        _render(net, thresholds=(13,))
    with pytest.raises(ValueError, match="steps"):
        _render(net, steps=0)
    with pytest.raises(ValueError, match="transforms"):
        dec.Parameterization(transforms="jitter")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        _render(net, seed=-1)
    with pytest.raises(TypeError, match="Pathway"):
        _render(net, [torch.ones(1)])
    assert dec.hook_count(net) == 0


def test_no_leaked_hooks_removes_only_new_hooks(tiny):
    net = _net(tiny)
    old = net.act2.register_forward_hook(lambda *a: None)
    with pytest.raises(RuntimeError), dec.no_leaked_hooks(net):
        net.act2.register_forward_hook(lambda *a: None, with_kwargs=True)
        net.fc1.register_forward_pre_hook(lambda *a: None)
        net.register_full_backward_hook(lambda *a: None)
        raise RuntimeError
    assert dec.hook_count(net) == 1 and list(net.act2._forward_hooks) == [old.id]
    assert not net.act2._forward_hooks_with_kwargs
    old.remove()


def test_importing_lucent_prints_no_warning():
    code = "import warnings; warnings.simplefilter('error'); from pathlib_pw.decoding import lucent_modules; lucent_modules()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


# ---- measuring decodings and paths ------------------------------------------------------------------


def _tiny_path(model: torch.nn.Module, x: torch.Tensor, keep: float = 0.6, seed: int = 0) -> Pathway:
    _, acts, names = record_activations(model, x)
    g = torch.Generator().manual_seed(seed)
    masks = [torch.rand(a.shape, generator=g) < keep for a in acts]
    return Pathway.from_masks(masks, names, "test", target=torch.tensor([1]))


def test_penultimate_is_the_input_of_the_last_linear_layer():
    model, x = nets.tiny_cnn(), nets.images(2, seed=1)
    h = F.relu(model.conv2(F.relu(model.conv1(x))))
    literal = F.relu(model.fc1(torch.flatten(F.adaptive_avg_pool2d(h, 2), 1)))
    torch.testing.assert_close(dec.penultimate(model, x), literal)
    assert dec.hook_count(model) == 0
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        dec.penultimate(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.ReLU()), x)


def test_cosine_matrix_by_hand():
    a, b = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    np.testing.assert_allclose(dec.cosine_matrix(a, b), [[0.0, 1.0], [2**-0.5, 2**-0.5]], rtol=1e-15)


def test_ssim_matrix_is_the_pairwise_ssim():
    from skimage.metrics import structural_similarity

    images = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
    out = dec.ssim_matrix(images)
    assert np.array_equal(np.diag(out), np.ones(3)) and np.array_equal(out, out.T)
    assert out[0, 2] == structural_similarity(images[0], images[2], channel_axis=2, data_range=1.0)


def test_input_gradient_sum_is_the_literal_gradient_through_the_path():
    model, x = nets.tiny_cnn(), nets.images(1, seed=2)
    path = _tiny_path(model, x)
    masks = R.batch_masks(path, 0)

    def literal(masked: bool) -> float:
        m = [k.to(x.dtype) if masked else torch.ones_like(k, dtype=x.dtype) for k in masks]
        inp = x.clone().requires_grad_(True)
        h = F.relu(model.conv2(F.relu(model.conv1(inp)) * m[0])) * m[1]
        logits = model.fc2(F.relu(model.fc1(torch.flatten(F.adaptive_avg_pool2d(h, 2), 1))) * m[2])
        (grad,) = torch.autograd.grad(logits[0, 3], inp)
        return float(grad.abs().sum())

    assert dec.input_gradient_sum(model, x, path, target=3) == pytest.approx(literal(True), rel=1e-12)
    assert dec.input_gradient_sum(model, x, None, target=3) == pytest.approx(literal(False), rel=1e-12)
    cut = Pathway.from_masks(path.masks[:-1] + [torch.zeros_like(path.masks[-1])], path.sites)
    assert dec.input_gradient_sum(model, x, cut, target=3) == 0.0
    assert dec.hook_count(model) == 0


def test_greedy_scores_are_activation_times_gradient_through_the_masked_network():
    model, x = nets.tiny_cnn(), nets.images(1, seed=3)
    path = _tiny_path(model, x, seed=1)
    want, _ = R.mct_scores(model, x, target=1, masks=R.batch_masks(path, 0))
    got = dec.greedy_scores(model, x, path)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g[0], w, rtol=1e-12, atol=1e-14)


def test_top_neuron_is_the_highest_kept_score_of_the_last_conv_site():
    sites = ["conv1", "conv2", "fc"]
    scores = [torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2), torch.full((1, 4), 1.0)]
    scores[0][0, 1, 0, 0] = 50.0  # the largest overall, but not in the last conv site
    scores[1][0, 2, 1, 0] = 9.0  # removed from the path: not counted
    scores[1][0, 1, 0, 1] = 6.0
    scores[1][0, 1, 1, 1] = 1.0  # the same channel: counted in its channel's share
    masks = [torch.ones_like(s, dtype=torch.bool) for s in scores]
    masks[1][0, 2, 1, 0] = False
    top = dec.top_neuron(Pathway.from_masks(masks, sites), scores)
    total = 50.0 + 6.0 + 1.0 + 4.0
    assert top["site"] == "conv2" and top["index"] == 1 * 4 + 1 and top["channel"] == 1
    assert top["share"] == pytest.approx(6.0 / total) and top["channel_share"] == pytest.approx(7.0 / total)
    # a path in which nothing in the last conv site scores: no top neuron
    top = dec.top_neuron(Pathway.from_masks(masks, sites), [s * 0 for s in scores])
    assert top["channel"] == -1 and np.isnan(top["share"])
    with pytest.raises(ValueError, match=r"one tensor per site of the path \(3\), got 2"):
        dec.top_neuron(Pathway.from_masks(masks, sites), scores[:2])
    with pytest.raises(ValueError, match="no convolutional site"):
        dec.top_neuron(Pathway.from_masks(masks[2:], sites[2:]), scores[2:])
