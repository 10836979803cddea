"""Active subnet (book/methods.md: pathway criteria, helpers): NeuronMCT with p = int(100 * base sparsity) + 1, base
sparsity = share of neurons <= 0 in the unpruned net."""

from __future__ import annotations

import pytest
import torch

import pathlib_pw as pw
from tests import nets
from tests import reference_impl as R
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

F, T = False, True


def test_hand_net():
    # a1 = (1, 2, 0), a2 = (2, 2.5, 0): base sparsity 2/6 -> p = int(33.33) + 1 = 34;
    # MCT scores (2, 6, 0 | 2, 5, 0): pos = .34 * 5 = 1.7 -> thr 1.4 -> the two zeros go
    model, x = nets.HandNet().double(), nets.hand_input()
    path = pw.extract_pathway(model, x, "active_subnet")
    assert float(path.info["requested_sparsity"][0]) == 34
    assert float(path.info["base_sparsity_share"][0]) == pytest.approx(1 / 3, abs=1e-6)
    assert [m[0].tolist() for m in path.masks] == [[T, T, F], [T, T, F]]


def test_base_share_on_an_exact_percent_goes_one_past_it():
    # x = (-1, 2): a1 = relu(-1, 2, -3) = (0, 2, 0), a2 = relu(1, 2, 0) = (1, 2, 0): 3 of 6 neurons
    # dead, base sparsity exactly 0.5 -> p = int(50) + 1 = 51 (ceil(50) would give 50)
    model, x = nets.HandNet().double(), nets.hand_input(values=(-1.0, 2.0))
    path = pw.extract_pathway(model, x, "active_subnet")
    assert float(path.info["base_sparsity_share"][0]) == 0.5
    assert float(path.info["requested_sparsity"][0]) == 51


@pytest.mark.parametrize("net", [nets.tiny_cnn, nets.tiny_resnet, nets.tiny_relu6])
def test_matches_reference_and_mct(net):
    model = net()
    x = nets.images(3)
    path = pw.extract_pathway(model, x, "active_subnet")
    ps = []
    for b in range(3):
        base = R.base_sparsity(model, x[b : b + 1])
        ref, _, p = R.active_subnet_masks(model, x[b : b + 1])
        assert p == int(100 * base) + 1
        assert float(path.info["requested_sparsity"][b]) == p
        assert float(path.info["base_sparsity_share"][b]) == pytest.approx(base, abs=1e-6)
        R.assert_masks_equal(R.batch_masks(path, b), ref, f"image {b}")
        ps.append(float(p))
    mct = pw.extract_pathway(model, x, "neuron_mct", ps)
    assert torch.equal(mct.flat(), path.flat())
    assert torch.equal(mct.sparsity, path.sparsity)
    # every neuron that is <= 0 in the unpruned net is removed (score 0 <= thr)
    _, acts, _ = pw.record_activations(model, x)
    for m, a in zip(path.masks, acts):
        assert not bool(m[a <= 0].any())


def test_with_target():
    model = nets.tiny_cnn()
    x = nets.images(2)
    path = pw.extract_pathway(model, x, "active_subnet", target=[3, 1])
    assert path.info["target"].tolist() == [3, 1]
    for b, t in enumerate([3, 1]):
        ref, _, _ = R.active_subnet_masks(model, x[b : b + 1], target=t)
        R.assert_masks_equal(R.batch_masks(path, b), ref, f"image {b}")


@pytest.mark.parametrize("sparsity", [50, 0, [10, 20]])
def test_sparsity_must_be_none(sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        pw.extract_pathway(nets.tiny_cnn(), nets.images(2), "active_subnet", sparsity)
