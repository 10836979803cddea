"""DGR (book/methods.md: pathway criteria): a gate per neuron multiplies each rectifier output; loss = soft CE
sum_c -p_orig log(p_gated + 1e-20) + lambda * sum |gates|; SGD (lr, momentum), gates clamped to
[0, clamp_max] after each step; keep the lowest-loss iterate whose top-1 equals the original; path =
gates above the global p-th percentile. init "r": Uniform(0,1) start, lambda / 10 and retry when no
iterate keeps the prediction."""

from __future__ import annotations

import pytest
import torch

import pathlib_pw as pw
from tests import nets
from tests import reference_impl as R
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

FAST = dict(iterations=25, lr=0.05)
NETS = {"cnn": nets.tiny_cnn, "resnet_reused_relu": nets.tiny_resnet, "relu6": nets.tiny_relu6}


def _hard_hand_net():
    """HandNet with logits (7, 6.9): class 1 is constant 6.9, class 0 = a2 . (1, 2, 3) = 7; any gates
    that shrink the activations flip the prediction."""
    return nets.HandNet(b3=(0.0, 6.9), w3=[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]).double()


def _compare(path, b, ref, what):
    R.assert_masks_equal(R.batch_masks(path, b), ref["masks"], what)
    assert float(path.info["best_loss"][b]) == pytest.approx(ref["loss"], rel=1e-9, abs=1e-12), what
    assert bool(path.info["kept_prediction"][b]) == ref["kept"], what
    assert float(path.info["final_lambda"][b]) == pytest.approx(ref["final_lambda"], rel=1e-12), what
    assert int(path.info["retries"][b]) == ref["retries"], what


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize(
    "options",
    [
        dict(init="1", **FAST),
        dict(init="1", lam=0.05, momentum=0.5, **FAST),
        dict(init="r", seed=[5, 6], **FAST),
        dict(init="1", gates="channel", lam=0.05, **FAST),
        dict(init="1", lam=0.001, lr=0.5, iterations=15, clamp_max=1.2),  # the clamp is active
    ],
    ids=["init1", "init1-lam-momentum", "initr", "channel", "clamp"],
)
def test_batched_matches_literal_reference(net, options):
    model = NETS[net]()
    x = nets.images(2)
    p = 60
    for ties in ("random", "all"):
        path = pw.extract_pathway(model, x, "dgr", p, ties=ties, **options)
        for b in range(2):
            kw = dict(options)
            kw["seed"] = kw["seed"][b] if "seed" in kw else b  # extract_pathway's per-image seeds of seed=0
            ref = R.dgr_reference(model, x[b : b + 1], p, ties=ties, **kw)
            _compare(path, b, ref, f"{net} {options} ties={ties} image {b}")


def test_batched_equals_per_image_calls():
    model = nets.tiny_resnet()
    x = nets.images(3)
    for options in (dict(init="1", seed=[1, 2, 3], **FAST), dict(init="r", seed=[1, 2, 3], max_retries=3, **FAST)):
        batched = pw.extract_pathway(model, x, "dgr", 70, **options)
        for b in range(3):
            kw = dict(options)
            if "seed" in kw:
                kw["seed"] = [options["seed"][b]]
            single = pw.extract_pathway(model, x[b : b + 1], "dgr", 70, **kw)
            R.assert_masks_equal(R.batch_masks(batched, b), R.batch_masks(single, 0), f"{options} image {b}")
            assert float(batched.info["best_loss"][b]) == pytest.approx(float(single.info["best_loss"][0]), rel=1e-9)
        chunked = pw.extract_pathway(model, x, "dgr", 70, batch_size=2, **options)
        assert torch.equal(chunked.flat(), batched.flat())


def test_channel_gates_are_constant_over_space():
    model = nets.tiny_cnn()
    x = nets.images(2)
    path = pw.extract_pathway(model, x, "dgr", 50, gates="channel", lam=0.05, **FAST)
    for m in path.masks:
        if m.dim() == 4:
            flat = m.flatten(2)
            assert bool((flat == flat[..., :1]).all()), "a channel gate must keep or remove a whole channel"
    # neuron gates are not (the path is element-wise)
    neuron = pw.extract_pathway(model, x, "dgr", 50, lam=0.05, **FAST)
    m = neuron.masks[0].flatten(2)
    assert not bool((m == m[..., :1]).all())


def test_no_iterate_keeps_prediction_no_crash():
    """init "r" with a huge lambda: every iterate flips the prediction. No crash; kept_prediction False;
    lambda divided by 10 per retry."""
    model, x = _hard_hand_net(), nets.hand_input()
    assert model(x).argmax(1).item() == 0
    opts = dict(init="r", lam=10.0, lr=0.1, iterations=5, max_retries=3, seed=[3])
    path = pw.extract_pathway(model, x, "dgr", 50, **opts)
    assert path.info["kept_prediction"].tolist() == [False]
    assert int(path.info["retries"][0]) == 3
    assert float(path.info["final_lambda"][0]) == pytest.approx(10.0 / 1000)
    ref = R.dgr_reference(model, x, 50, **dict(opts, seed=3))
    assert ref["kept"] is False
    _compare(path, 0, ref, "no iterate keeps")
    # max_retries = 0: a single run, lambda unchanged
    path = pw.extract_pathway(model, x, "dgr", 50, **dict(opts, max_retries=0))
    assert path.info["kept_prediction"].tolist() == [False]
    assert int(path.info["retries"][0]) == 0
    assert float(path.info["final_lambda"][0]) == pytest.approx(10.0)


def test_init_1_without_iterations_no_crash():
    path = pw.extract_pathway(nets.tiny_cnn(), nets.images(2), "dgr", 50, iterations=0)
    assert path.info["kept_prediction"].tolist() == [False, False]


def test_retry_divides_lambda_until_prediction_kept():
    model, x = _hard_hand_net(), nets.hand_input()
    opts = dict(init="r", lam=10.0, lr=0.1, iterations=20, max_retries=3, seed=[3])
    path = pw.extract_pathway(model, x, "dgr", 50, **opts)
    assert path.info["kept_prediction"].tolist() == [True]
    retries = int(path.info["retries"][0])
    assert retries >= 1
    assert float(path.info["final_lambda"][0]) == pytest.approx(10.0 / 10**retries)
    ref = R.dgr_reference(model, x, 50, **dict(opts, seed=3))
    _compare(path, 0, ref, "retry")


def test_retry_only_for_failed_images():
    """In a batch, only the image whose prediction was lost gets retries and a smaller lambda."""
    hard, x_hard = _hard_hand_net(), nets.hand_input()
    easy_x = nets.hand_input(values=(3.0, 6.0))  # logit0 = 8 + 15 = 23 >> 6.9: gates can shrink a lot
    x = torch.cat([x_hard, easy_x])
    opts = dict(init="r", lam=10.0, lr=0.1, iterations=20, max_retries=3, seed=[3, 4])
    path = pw.extract_pathway(hard, x, "dgr", 50, **opts)
    for b in range(2):
        ref = R.dgr_reference(hard, x[b : b + 1], 50, **dict(opts, seed=opts["seed"][b]))
        _compare(path, b, ref, f"image {b}")
    assert path.info["retries"].tolist()[0] >= 1


def test_init_1_never_retries():
    model, x = _hard_hand_net(), nets.hand_input()
    path = pw.extract_pathway(model, x, "dgr", 50, init="1", lam=10.0, lr=0.1, iterations=5)
    # the first iterate (all gates 1) is the original network: it keeps the prediction
    assert path.info["kept_prediction"].tolist() == [True]
    assert int(path.info["retries"][0]) == 0
    assert float(path.info["final_lambda"][0]) == pytest.approx(10.0)


def test_model_parameters_untouched():
    model = nets.tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pw.extract_pathway(model, nets.images(2), "dgr", 50, **FAST)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("option", "value"),
    [("init", "x"), ("gates", "pixel"), ("iterations", -1), ("max_retries", -2), ("iterations", 1.5)],
)
def test_bad_options(option, value):
    with pytest.raises((ValueError, TypeError), match=option):
        pw.extract_pathway(nets.tiny_cnn(), nets.images(1), "dgr", 50, **{option: value})
