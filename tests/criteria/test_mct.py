"""NeuronMCT (book/methods.md: pathway criteria): score |a * d logit / d a|, pooled over all sites, global numpy
percentile, every neuron with score <= thr removed."""

from __future__ import annotations

import functools

import pytest
import torch

import pathlib_pw as pw
from tests import nets
from tests import reference_impl as R
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

F, T = False, True


def _masks(path, b=0):
    return [m.tolist() for m in R.batch_masks(path, b)]


def _check_threshold_value(path, b, scores, masks_ref, tol=1e-6):
    """info["threshold"] must separate the reference scores like the masks do:
    max removed score <= thr < min kept score (whatever the exact convention)."""
    thr = float(path.info["threshold"][b])
    flat = torch.cat([s.flatten().double() for s in scores])
    keep = torch.cat([m.flatten() for m in masks_ref])
    if (~keep).any():
        assert float(flat[~keep].max()) <= thr + tol * max(1.0, abs(thr))
    if keep.any():
        assert thr < float(flat[keep].min()) * (1 + tol)


# ------------------------------------------------------------------------------------------ by hand
# HandNet at x = (1, 2): a1 = (1, 2, 0), a2 = (2, 2.5, 0), logits (7, 0.5) -> target 0.
#   g2 = W3[0] = (1, 2, 3)                           scores2 = |a2 * g2| = (2, 5, 0)
#   g1 = W2^T (g2 * relu'(h2)) = W2^T (1, 2, 0) = (2, 3, 2)   scores1 = (2, 6, 0)
# pooled sorted: 0 0 2 2 5 6 (N = 6, pos = p/100 * 5)


@pytest.mark.parametrize(
    ("p", "site0", "site1", "realized"),
    [
        (0, [T, T, F], [T, T, F], 100 * 2 / 6),  # thr = 0: the two zeros go although p = 0
        (20, [T, T, F], [T, T, F], 100 * 2 / 6),  # pos 1.0 -> thr 0
        (30, [T, T, F], [T, T, F], 100 * 2 / 6),  # pos 1.5 -> thr 1
        (50, [F, T, F], [F, T, F], 100 * 4 / 6),  # pos 2.5 -> thr 2: the tie at 2 removes both 2s
        (70, [F, T, F], [F, T, F], 100 * 4 / 6),  # pos 3.5 -> thr 3.5
        (80, [F, T, F], [F, F, F], 100 * 5 / 6),  # pos 4 -> thr 5
        (99, [F, F, F], [F, F, F], 100.0),  # pos 4.95 -> thr 5.95 ... every score <= 5.95 except 6
    ],
)
def test_hand_computed_masks(p, site0, site1, realized):
    model, x = nets.HandNet().double(), nets.hand_input()
    path = pw.extract_pathway(model, x, "neuron_mct", p)
    if p == 99:
        site0 = [F, T, F]  # 6 > 5.95 is kept
        realized = 100 * 5 / 6
    assert path.sites == ["relu1", "relu2"]
    assert _masks(path) == [site0, site1]
    assert path.sparsity[0].item() == pytest.approx(realized, abs=1e-4)
    assert int(path.info["target"][0]) == 0
    scores = [torch.tensor([2.0, 6.0, 0.0]), torch.tensor([2.0, 5.0, 0.0])]
    _check_threshold_value(path, 0, scores, [torch.tensor(site0), torch.tensor(site1)])


def test_hand_computed_other_target():
    # target 1: g2 = W3[1] = (-1, 1, 0) -> scores2 = (2, 2.5, 0);
    # g1 = W2^T((-1, 1, 0) * (1, 1, 0)) = (-0.5, 0, 1) -> scores1 = |(1, 2, 0) * g1| = (0.5, 0, 0)
    # pooled sorted 0 0 0 0.5 2 2.5: p = 50 -> thr 0.25, p = 60 -> thr 0.5
    model, x = nets.HandNet().double(), nets.hand_input()
    path = pw.extract_pathway(model, x, "neuron_mct", 50, target=1)
    assert _masks(path) == [[T, F, F], [T, T, F]]
    assert path.sparsity[0].item() == pytest.approx(50.0)
    assert int(path.info["target"][0]) == 1
    path = pw.extract_pathway(model, x, "neuron_mct", 60, target=1)
    assert _masks(path) == [[F, F, F], [T, T, F]]
    # the default target is the prediction (class 0), which gives other masks
    assert _masks(pw.extract_pathway(model, x, "neuron_mct", 60)) == [[F, T, F], [F, T, F]]


def test_reference_scores_of_hand_net():
    """The reference implementation itself reproduces the hand computation."""
    scores, t = R.mct_scores(nets.HandNet().double(), nets.hand_input())
    assert t == 0
    assert scores[0].tolist() == [2.0, 6.0, 0.0]
    assert scores[1].tolist() == [2.0, 5.0, 0.0]


# ------------------------------------------------------------------------------ versus reference

NETS = {"cnn": nets.tiny_cnn, "resnet_reused_relu": nets.tiny_resnet, "relu6": nets.tiny_relu6}


@functools.cache
def _reference_scores(net: str, b: int, target: int | None = None):
    model = NETS[net]()
    return R.mct_scores(model, nets.images(3)[b : b + 1], target)


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("p", [0, 10, 37.5, 50, 90, 99.5])
def test_matches_reference_batched(net, p):
    model = NETS[net]()
    x = nets.images(3)
    path = pw.extract_pathway(model, x, "neuron_mct", p)
    assert path.masks[0].shape[0] == 3 and all(m.dtype == torch.bool for m in path.masks)
    for b in range(3):
        scores, t = _reference_scores(net, b)
        ref, _ = R.percentile_masks(scores, p)
        R.assert_masks_equal(R.batch_masks(path, b), ref, f"{net} p={p} image {b}")
        _check_threshold_value(path, b, scores, ref)
        assert int(path.info["target"][b]) == t
        removed = sum(int((~m).sum()) for m in ref)
        total = sum(m.numel() for m in ref)
        assert path.sparsity[b].item() == pytest.approx(100 * removed / total, abs=1e-4)
        # numpy's percentile puts thr at or above the order statistic floor(p/100 * (N-1)) (0-based)
        assert removed >= int(p / 100 * (total - 1)) + 1
        assert float(path.info["requested_sparsity"][b]) == pytest.approx(p)


def test_ties_at_zero_make_realized_sparsity_exceed_requested():
    """Dead neurons score exactly 0; with `<=` all of them go even at p = 10."""
    model = nets.tiny_cnn()
    x = nets.images(3)
    path = pw.extract_pathway(model, x, "neuron_mct", 10)
    for b in range(3):
        scores, _ = _reference_scores("cnn", b)
        zeros = sum(int((s == 0).sum()) for s in scores)
        total = sum(s.numel() for s in scores)
        assert zeros / total > 0.2
        assert path.sparsity[b].item() == pytest.approx(100 * zeros / total, abs=1e-4)
        assert path.sparsity[b].item() > 10 + 5


def test_relu6_derivative_by_hand():
    """ReLU6 is treated like ReLU, with its own derivative: HandNet with relu2 = ReLU6 at x = (3, 6):
    h1 = (3, 6, -3), a1 = (3, 6, 0); h2 = (8, 7.5, -3) -> a2 = relu6 = (6, 6, 0), both saturated,
    logits (18, 0). scores2 = |a2 * (1, 2, 3)| = (6, 12, 0); no gradient passes the saturated
    neurons, so scores1 = (0, 0, 0). With a plain ReLU scores1 would be |(3, 6, 0) * (2, 3, 2)| = (6, 18, 0)."""
    x = nets.hand_input(values=(3.0, 6.0))
    relu6 = nets.HandNet(act2=torch.nn.ReLU6).double()
    path = pw.extract_pathway(relu6, x, "neuron_mct", 10)
    assert path.sites == ["relu1", "relu2"]
    assert _masks(path) == [[F, F, F], [T, T, F]]
    assert path.sparsity[0].item() == pytest.approx(100 * 4 / 6, abs=1e-4)
    relu = nets.HandNet().double()
    path = pw.extract_pathway(relu, x, "neuron_mct", 10)
    assert _masks(path) == [[T, T, F], [T, T, F]]
    # pooled (6, 18, 0, 8, 15, 0) for ReLU (a2 = (8, 7.5, 0)): p = 60 -> pos 3 -> thr 8
    path = pw.extract_pathway(relu, x, "neuron_mct", 60)
    assert _masks(path) == [[F, T, F], [F, T, F]]


def test_per_image_sparsity():
    model = nets.tiny_resnet()
    x = nets.images(3)
    ps = [10.0, 55.0, 93.0]
    path = pw.extract_pathway(model, x, "neuron_mct", torch.tensor(ps))
    for b, p in enumerate(ps):
        ref, _ = R.percentile_masks(_reference_scores("resnet_reused_relu", b)[0], p)
        R.assert_masks_equal(R.batch_masks(path, b), ref, f"image {b}")
        single = pw.extract_pathway(model, x[b : b + 1], "neuron_mct", p)
        R.assert_masks_equal(R.batch_masks(single, 0), ref, f"single image {b}")
    assert path.info["requested_sparsity"].tolist() == pytest.approx(ps)


def test_explicit_target_per_image():
    model = nets.tiny_cnn()
    x = nets.images(3)
    targets = [1, 4, 2]
    path = pw.extract_pathway(model, x, "neuron_mct", 60, target=targets)
    assert path.info["target"].tolist() == targets
    for b, t in enumerate(targets):
        scores, _ = R.mct_scores(model, x[b : b + 1], t)
        ref, _ = R.percentile_masks(scores, 60)
        R.assert_masks_equal(R.batch_masks(path, b), ref, f"image {b} target {t}")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_float32(name):
    """float32 torchvision models (reused ReLU in ResNet, ReLU6 in MobileNetV2), 32 px, random init."""
    model = pw.load_model(name, pretrained=False, seed=5)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    path = pw.extract_pathway(model, x, "neuron_mct", 70)
    n_sites = {"resnet18": 17, "mobilenet_v2": 35}[name]
    assert len(path.sites) == n_sites
    for b in range(2):
        scores, _ = R.mct_scores(model, x[b : b + 1])
        _, thr = R.percentile_masks(scores, 70)
        R.assert_masks_match_scores(R.batch_masks(path, b), scores, thr, what=f"{name} image {b}")


class _SharedAndBroadcast(torch.nn.Module):
    """Two sites on one tensor (``relu_`` twice: one gradient object for both) and a last site whose
    gradient is a broadcast view (its output is only summed)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.head = torch.nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = torch.relu_(h)
        h = h.relu_()
        pooled = torch.relu(h * 2.0).sum(dim=(2, 3))
        return self.head(pooled)


@pytest.mark.parametrize("net", ["shared and broadcast", "tiny_relu6", "tiny_resnet"])
def test_scores_written_over_the_gradients_equal_the_literal_product(net):

    # neuron_mct_scores writes |a x g| over the gradient where it owns it: the same values as the
    # product on fresh memory, also where two sites share one gradient or a gradient is a broadcast view
    model = _SharedAndBroadcast().double().eval() if net == "shared and broadcast" else getattr(nets, net)()
    x = nets.images(3) if net != "shared and broadcast" else torch.randn(3, 2, 5, 5, dtype=torch.float64)
    _, acts, grads, names, _ = pw.sites.activations_and_gradients(model, x)
    want = [torch.mul(a, g).abs() for a, g in zip(acts, grads)]
    got, got_names, _, _ = pw.criteria.mct.neuron_mct_scores(model, x)
    assert got_names == names
    assert all(torch.equal(w, s) for w, s in zip(want, got))
    if net == "shared and broadcast":
        flags = pw.criteria.mct._writable(pw.sites.activations_and_gradients(model, x)[2])
        assert flags[:2] == [False, False] and flags[2] is False  # shared, shared, broadcast


class _KeepsGradient(torch.nn.Module):
    """Keeps its site's gradient (a Grad-CAM-style tensor hook) and hands a buffer back as a gradient
    (a custom backward): neither may be overwritten by the scores."""

    class _Weighted(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, w):  # noqa: ANN001, ANN205
            ctx.w = w
            return (a * w).sum(1, keepdim=True)

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            return ctx.w.view(1, -1), None  # the buffer itself (one image)

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = torch.nn.Linear(4, 6), torch.nn.Linear(4, 6)
        self.head = torch.nn.Linear(6, 3)
        self.register_buffer("w", torch.randn(6))
        self.saved: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = torch.relu(self.first(x.flatten(1)))
        if kept.requires_grad:
            kept.register_hook(lambda g: setattr(self, "saved", g))
        other = torch.relu(self.second(x.flatten(1)))
        return self.head(kept) + torch.cat([self._Weighted.apply(other, self.w)] * 3, 1)


def test_scores_never_overwrite_a_gradient_held_elsewhere():

    torch.manual_seed(0)
    model, x = _KeepsGradient().eval(), torch.randn(1, 4, 1, 1)
    _, acts, grads, _, _ = pw.sites.activations_and_gradients(model, x)
    saved, buffer = model.saved.clone(), model.w.clone()
    assert torch.equal(saved, grads[0]) and torch.equal(buffer.view(1, -1), grads[1])
    scores, _, _, _ = pw.criteria.mct.neuron_mct_scores(model, x)
    assert torch.equal(model.saved, saved) and torch.equal(model.w, buffer)  # both untouched
    assert all(torch.equal(s, torch.mul(a, g).abs()) for s, a, g in zip(scores, acts, grads))
    # an ordinary network's gradients are its own: written over (else the step does nothing)
    relu6 = nets.tiny_relu6()
    assert any(pw.criteria.mct._writable(pw.sites.activations_and_gradients(relu6, nets.images(2))[2]))


def test_scores_written_in_place_keep_the_products_operand_order_bit_for_bit():

    # a NaN activation times a NaN gradient: the product's NaN payload depends on the operand order,
    # so the in-place score must be a x g as the literal product computes it (bits compared)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    with torch.no_grad():
        model[1].bias.view(torch.int32)[:] = 0x7FC00123
        model[3].weight.view(torch.int32)[:] = 0x7FC00456
    x = torch.randn(1, 4, 1, 1)
    _, acts, grads, _, _ = pw.sites.activations_and_gradients(model, x)
    want = torch.mul(acts[0], grads[0]).abs()
    assert pw.criteria.mct._writable(grads) == [True]  # the in-place path is the one tested
    scores, _, _, _ = pw.criteria.mct.neuron_mct_scores(model, x)
    assert torch.equal(scores[0].view(torch.int32), want.view(torch.int32))
