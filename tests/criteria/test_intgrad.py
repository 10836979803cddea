"""NeuronIntGrad (book/methods.md: pathway criteria).

Intended: for each site separately, scale its activation by alpha in {0, 0.1, ..., 1} with the rest
of the network recomputed, average d logit / d(scaled activation), times the activation, abs, global
threshold. ``original_code``: accumulated alphas 0, 0.1, 0.3, ..., 5.5 and a loop over MODULES with
masks indexed by CALL (only the first n_modules call sites scored and masked).
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

import pathlib_pw as pw
from pathlib_pw.criteria import intgrad
from tests import nets
from tests import reference_impl as R
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

F, T = False, True
ACCUMULATED = [0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.1, 2.8, 3.6, 4.5, 5.5]


def _masks(path, b=0):
    return [m.tolist() for m in R.batch_masks(path, b)]


# -------------------------------------------------------------------------------------- alphas


def test_intended_alphas():
    a = intgrad.intended_alphas()
    assert len(a) == 11
    assert a.tolist() == pytest.approx([i / 10 for i in range(11)], abs=1e-12)
    assert intgrad.intended_alphas(4).tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0], abs=1e-12)


def test_original_code_alphas():
    a = intgrad.original_code_alphas()
    assert len(a) == 11
    assert a.tolist() == pytest.approx(ACCUMULATED, abs=1e-12)
    assert R.accumulated_alphas() == pytest.approx(ACCUMULATED, abs=1e-12)
    assert intgrad.original_code_alphas(4).tolist() == pytest.approx([0, 0.25, 0.75, 1.5, 2.5], abs=1e-12)


# ------------------------------------------------------------------------------------- by hand
# HandNet at x = (1, 2): a1 = (1, 2, 0), h2 = alpha * W2 a1 + b2 = alpha * (3, 2.5, -1) + (-1, 0, 0)
# when site 0 is scaled. Row 0 is active for alpha > 1/3, row 1 for alpha > 0, row 2 never.
# g1(alpha) = act0 * (1, 1, 0) + act1 * (1, 2, 2)       (W2^T (W3[0] * active))
#   intended alphas: row 0 active at 7 of 11, row 1 at 10 of 11:
#     mean g1 = (7 (1,1,0) + 10 (1,2,2)) / 11 = (17, 27, 20) / 11 -> scores1 = (17/11, 54/11, 0)
#   accumulated alphas: row 0 active at 8 of 11 (0.6 .. 5.5), row 1 at 10:
#     mean g1 = (18, 28, 20) / 11 -> scores1 = (18/11, 56/11, 0)
# Site 1 feeds a linear layer: its gradient is W3[0] at every alpha -> scores2 = (2, 5, 0).
# NeuronMCT for comparison: scores1 = (2, 6, 0), scores2 = (2, 5, 0).
#   intended pooled sorted 0 0 1.545 2 4.909 5;  accumulated 0 0 1.636 2 5 5.091


def test_reference_hand_values():
    model, x = nets.HandNet().double(), nets.hand_input()
    scores, _ = R.intgrad_scores(model, x)
    assert scores[0].tolist() == pytest.approx([17 / 11, 54 / 11, 0.0])
    assert scores[1].tolist() == pytest.approx([2.0, 5.0, 0.0])
    scores, _ = R.intgrad_scores(model, x, alphas=R.accumulated_alphas())
    assert scores[0].tolist() == pytest.approx([18 / 11, 56 / 11, 0.0])


@pytest.mark.parametrize("recompute", ["downstream", "full", "auto"])
@pytest.mark.parametrize(
    ("p", "want"),
    [
        (30, [[T, T, F], [T, T, F]]),  # pos 1.5 -> thr 0.77: zeros only
        (50, [[F, T, F], [T, T, F]]),  # pos 2.5 -> between 17/11 and 2 (NeuronMCT: [[F,T,F],[F,T,F]])
        (60, [[F, T, F], [F, T, F]]),  # pos 3 -> thr 2
        (80, [[F, F, F], [F, T, F]]),  # pos 4 -> thr 54/11: only site 1's 5 survives (NeuronMCT keeps site 0's 6)
    ],
)
def test_hand_computed_intended(recompute, p, want):
    model, x = nets.HandNet().double(), nets.hand_input()
    path = pw.extract_pathway(model, x, "neuron_intgrad", p, recompute=recompute)
    assert _masks(path) == want
    thr = float(path.info["threshold"][0])
    flat = sorted([17 / 11, 54 / 11, 0.0, 2.0, 5.0, 0.0])
    removed = sum(1 for s in flat if s <= thr + 1e-6)
    assert removed == sum(not k for site in want for k in site)


def test_hand_computed_alpha_chunk_and_steps():
    model, x = nets.HandNet().double(), nets.hand_input()
    for chunk in (1, 3, 4, 11, 50):
        for recompute in ("downstream", "full"):
            path = pw.extract_pathway(model, x, "neuron_intgrad", 80, recompute=recompute, alpha_chunk=chunk)
            assert _masks(path) == [[F, F, F], [F, T, F]], (chunk, recompute)
    # steps = 2: alphas 0, .5, 1: rows 0 and 1 active at 2 of 3 -> mean g1 = (2/3)(2, 3, 2),
    # scores1 = (4/3, 4, 0), scores2 = (2, 5, 0): sorted 0 0 1.33 2 4 5; p = 80 -> thr 4
    path = pw.extract_pathway(model, x, "neuron_intgrad", 80, steps=2, recompute="full")
    assert _masks(path) == [[F, F, F], [F, T, F]]
    # steps = 1: alphas 0, 1 -> mean g1 = (2, 3, 2) / 2, scores1 = (1, 3, 0): sorted 0 0 1 2 3 5;
    # p = 60 -> thr 2 keeps site 0's 3 and site 1's 5
    for recompute in ("downstream", "full"):
        path = pw.extract_pathway(model, x, "neuron_intgrad", 60, steps=1, recompute=recompute)
        assert _masks(path) == [[F, T, F], [F, T, F]]
        path = pw.extract_pathway(model, x, "neuron_intgrad", 70, steps=1, recompute=recompute)
        # pos 3.5 -> thr 2.5: removes 0 0 1 2
        assert _masks(path) == [[F, T, F], [F, T, F]]
        path = pw.extract_pathway(model, x, "neuron_intgrad", 80, steps=1, recompute=recompute)
        # pos 4 -> thr 3: only site 1's 5
        assert _masks(path) == [[F, F, F], [F, T, F]]


def test_hand_computed_original_code():
    # no reused module: the original code is the intended method with the accumulated alphas.
    # accumulated pooled sorted 0 0 18/11 2 5 56/11: p = 80 -> thr 5 keeps only site 0's 56/11
    model, x = nets.HandNet().double(), nets.hand_input()
    for recompute in ("downstream", "full"):
        path = pw.extract_pathway(model, x, "neuron_intgrad", 80, variant="original_code", recompute=recompute)
        assert _masks(path) == [[F, T, F], [F, F, F]], recompute
    intended = pw.extract_pathway(model, x, "neuron_intgrad", 80)
    assert _masks(intended) == [[F, F, F], [F, T, F]]


# ---------------------------------------------------------------------------- versus reference

NETS = {
    "resnet_reused_relu": nets.tiny_resnet,
    "cnn_inplace": nets.tiny_cnn,
    "relu6": nets.tiny_relu6,
    "no_reuse": nets.no_reuse_net,
    "mixed_functional": nets.mixed_net,
}


@functools.cache
def _ref_scores(net: str, b: int, kind: str = "intended"):
    model = NETS[net]()
    x1 = nets.images(2)[b : b + 1]
    if kind == "intended":
        return R.intgrad_scores(model, x1)[0]
    if kind == "accumulated":
        return R.intgrad_scores(model, x1, alphas=R.accumulated_alphas())[0]
    return R.intgrad_original_scores(model, x1)[0]


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize(
    ("recompute", "alpha_chunk"), [("downstream", None), ("full", None), ("downstream", 4), ("full", 3), ("downstream", "auto")]
)
def test_intended_matches_reference(net, recompute, alpha_chunk):
    model = NETS[net]()
    x = nets.images(2)
    for p in (30, 75):
        path = pw.extract_pathway(model, x, "neuron_intgrad", p, recompute=recompute, alpha_chunk=alpha_chunk)
        for b in range(2):
            ref, _ = R.percentile_masks(_ref_scores(net, b), p)
            R.assert_masks_equal(R.batch_masks(path, b), ref, f"{net} {recompute} chunk={alpha_chunk} p={p} image {b}")


def test_intended_differs_from_mct():
    model = nets.tiny_resnet()
    x = nets.images(2)
    a = pw.extract_pathway(model, x, "neuron_intgrad", 75)
    b = pw.extract_pathway(model, x, "neuron_mct", 75)
    assert not torch.equal(a.flat(), b.flat())


@functools.cache
def _torchvision(name: str):
    model = pw.load_model(name, pretrained=False, seed=7)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    return model, x


@functools.cache
def _torchvision_ref(name: str, kind: str):
    model, x = _torchvision(name)
    if kind == "intended":
        return R.intgrad_scores(model, x, alphas=R.intended_alphas(2))[0]
    return R.intgrad_original_scores(model, x, steps=2)[0]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize(("recompute", "alpha_chunk"), [("downstream", None), ("full", 2)])
def test_torchvision_intended(name, recompute, alpha_chunk):
    """Real architectures (ResNet's reused ReLU and residual adds, MobileNetV2's in-place ReLU6), float32,
    steps=2 (alphas 0, .5, 1) to keep it fast: the logic is the same for every number of steps."""
    model, x = _torchvision(name)
    scores = _torchvision_ref(name, "intended")
    path = pw.extract_pathway(model, x, "neuron_intgrad", 60, steps=2, recompute=recompute, alpha_chunk=alpha_chunk)
    _, thr = R.percentile_masks(scores, 60)
    R.assert_masks_match_scores(R.batch_masks(path, 0), scores, thr, what=f"{name} {recompute}")


def test_torchvision_resnet18_original_code():
    """torchvision ResNet18: 9 ReLU modules, 17 calls -> only the first 9 call sites are scored/masked."""
    model, x = _torchvision("resnet18")
    path = pw.extract_pathway(model, x, "neuron_intgrad", 60, steps=2, variant="original_code", recompute="downstream")
    assert len(path.sites) == 17
    scores = _torchvision_ref("resnet18", "original")
    assert len(scores) == 9
    _, thr = R.percentile_masks(scores, 60)
    got = R.batch_masks(path, 0)
    R.assert_masks_match_scores(got[:9], scores, thr, what="resnet18 original_code")
    assert all(bool(m.all()) for m in got[9:])
    # the intended method masks every site
    intended = pw.extract_pathway(model, x, "neuron_intgrad", 60, steps=2)
    assert not R.batch_masks(intended, 0)[16].all()


# -------------------------------------------------------------------- original_code module/call


@pytest.mark.parametrize("recompute", ["downstream", "full"])
def test_original_code_on_reused_relu_net(recompute):
    """TinyResNet: modules [relu (5 calls), head_relu (1 call)], 6 sites. The original code scores
    site 0 (relu#0) while every call of ``relu`` is scaled, and site 1 (relu#1) while only head_relu is
    scaled (no integration of site 1 at all); sites 2..5 keep every neuron."""
    model = nets.tiny_resnet()
    x = nets.images(2)
    for p in (30, 75):
        path = pw.extract_pathway(model, x, "neuron_intgrad", p, variant="original_code", recompute=recompute)
        assert path.sites == ["relu#0", "relu#1", "relu#2", "relu#3", "relu#4", "head_relu"]
        for b in range(2):
            ref, _ = R.percentile_masks(_ref_scores("resnet_reused_relu", b, "original"), p)
            got = R.batch_masks(path, b)
            R.assert_masks_equal(got[:2], ref, f"original_code p={p} image {b}")
            assert all(bool(m.all()) for m in got[2:]), "sites after n_modules must be all ones"
        intended = pw.extract_pathway(model, x, "neuron_intgrad", p)
        assert not torch.equal(intended.flat(), path.flat())
        # the intended method masks every site, also those after the first n_modules
        assert all(not bool(m.all()) for m in intended.masks[2:5])


def test_original_code_reference_is_not_intended_with_accumulated_alphas_on_reused_net():
    """Sanity of the test itself: on the reused net the module/call mix-up matters."""
    a = _ref_scores("resnet_reused_relu", 0, "original")
    b = _ref_scores("resnet_reused_relu", 0, "accumulated")
    assert not torch.allclose(a[1], b[1])
    # site 1 (relu#1) is read while only head_relu is scaled; the logit is linear in that scale, so
    # its gradient is alpha * (the plain gradient): score = mean(alphas) * NeuronMCT = 22/11 * MCT
    mct, _ = R.mct_scores(nets.tiny_resnet(), nets.images(2)[:1])
    assert torch.allclose(a[1], 2.0 * mct[1], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(a[0], 2.0 * mct[0])


@pytest.mark.parametrize("recompute", ["downstream", "full"])
@pytest.mark.parametrize("net", ["cnn_inplace", "no_reuse", "relu6"])
def test_original_code_without_reuse_is_accumulated_intended(net, recompute):
    model = NETS[net]()
    x = nets.images(2)
    for p in (30, 75):
        path = pw.extract_pathway(model, x, "neuron_intgrad", p, variant="original_code", recompute=recompute)
        for b in range(2):
            ref, _ = R.percentile_masks(_ref_scores(net, b, "accumulated"), p)
            R.assert_masks_equal(R.batch_masks(path, b), ref, f"{net} original_code p={p} image {b}")
        intended = pw.extract_pathway(model, x, "neuron_intgrad", p)
        for b in range(2):
            ref, _ = R.percentile_masks(_ref_scores(net, b, "intended"), p)
            R.assert_masks_equal(R.batch_masks(intended, b), ref, f"{net} intended p={p} image {b}")


# ------------------------------------------------------------------------------ recompute modes


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nets.tiny_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e9:
            return self.inner(x)
        return self.inner(-x)


def _assert_literal_masks(model, x, path, p, label):
    """Each image's masks equal the literal batch-1 reference's at sparsity ``p``."""
    for b in range(len(x)):
        scores, _ = R.intgrad_scores(model, x[b : b + 1])
        ref, _ = R.percentile_masks(scores, p)
        R.assert_masks_equal(R.batch_masks(path, b), ref, f"{label}, image {b}")


def test_untraceable_model_auto_falls_back_to_full():
    model = Untraceable()
    x = nets.images(2)
    with pytest.warns(UserWarning, match="fx"):
        auto = pw.extract_pathway(model, x, "neuron_intgrad", 50, recompute="auto")
    full = pw.extract_pathway(model, x, "neuron_intgrad", 50, recompute="full")
    assert torch.equal(auto.flat(), full.flat())
    _assert_literal_masks(model, x, full, 50, "untraceable")


def test_untraceable_model_downstream_raises():
    with pytest.raises(RuntimeError, match="recompute"):
        pw.extract_pathway(Untraceable(), nets.images(1), "neuron_intgrad", 50, recompute="downstream")


def test_untraceable_model_downstream_raises_also_after_an_auto_call():
    """recompute="downstream" must not silently become "full" because an earlier "auto" call on the
    same model cached the failed trace."""
    model = Untraceable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pw.extract_pathway(model, nets.images(1), "neuron_intgrad", 50, recompute="auto")
    with pytest.raises(RuntimeError, match="recompute"):
        pw.extract_pathway(model, nets.images(1), "neuron_intgrad", 50, recompute="downstream")


@pytest.mark.parametrize(
    ("option", "value"),
    [("steps", 0), ("steps", 2.5), ("alpha_chunk", 0), ("alpha_chunk", "all"), ("alpha_chunk", True), ("recompute", "bogus")],
)
def test_bad_options(option, value):
    with pytest.raises((ValueError, TypeError), match=option):
        pw.extract_pathway(nets.tiny_cnn(), nets.images(1), "neuron_intgrad", 50, **{option: value})


def test_auto_alpha_chunks_by_device_and_batch():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    per_pass = intgrad.CPU_SAMPLES_PER_PASS
    assert intgrad.AlphaChunks("auto", 11, 1, cpu).size == min(11, per_pass)
    assert intgrad.AlphaChunks("auto", 11, 4, cpu).size == per_pass // 4
    assert intgrad.AlphaChunks("auto", 11, 10 * per_pass, cpu).size == 1
    assert intgrad.AlphaChunks("auto", 11, 64, cuda).size == 11  # all, halved only after an OOM
    assert intgrad.AlphaChunks(None, 11, 4, cpu).size == 11
    assert intgrad.AlphaChunks(3, 11, 4, cuda).size == 3 and intgrad.AlphaChunks(30, 11, 4, cpu).size == 11
    assert intgrad.AlphaChunks("auto", 11, 64, cuda).adaptive and not intgrad.AlphaChunks(3, 11, 4, cuda).adaptive
    assert not intgrad.AlphaChunks("auto", 11, 4, cpu).adaptive


def _fits(largest: int, calls: list[int]):
    """A pass that sums its alphas, and runs out of memory above ``largest`` alphas at once."""

    def gradient_sum(alphas: torch.Tensor) -> torch.Tensor:
        calls.append(len(alphas))
        if len(alphas) > largest:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return alphas.sum().view(1)

    return gradient_sum


def test_auto_halves_after_out_of_memory_and_keeps_the_smaller_size():
    alphas = intgrad.intended_alphas(10)
    chunks, calls = intgrad.AlphaChunks("auto", 11, 8, torch.device("cuda")), []
    assert float(chunks.total(alphas, _fits(3, calls))) == pytest.approx(float(alphas.sum()))
    assert calls == [11, 5, 2, 2, 2, 2, 2, 1] and chunks.size == 2
    calls.clear()
    chunks.total(alphas, _fits(3, calls))  # the next site starts at the size that fitted
    assert calls == [2] * 5 + [1]


def test_out_of_memory_propagates_when_it_cannot_shrink():
    alphas = intgrad.intended_alphas(10)
    with pytest.raises(torch.OutOfMemoryError):  # a fixed size is the caller's choice
        intgrad.AlphaChunks(4, 11, 8, torch.device("cuda")).total(alphas, _fits(3, []))
    with pytest.raises(torch.OutOfMemoryError):  # one alpha does not fit: nothing left to halve
        intgrad.AlphaChunks("auto", 11, 8, torch.device("cuda")).total(alphas, _fits(0, []))


class BatchSizeViews(nn.Module):
    """Reads the batch size upstream of the rectifiers and uses it downstream, like EfficientNet's
    ``bs = inputs.size(0); ...; x.view(bs, -1)``: tiling the alphas into the batch must not break it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nets.tiny_cnn()
        self.head = nn.Linear(5, 4).double()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bs, n = x.size(0), x.shape[0]
        h = self.relu(self.inner(x))
        return self.head(h.view(bs, -1).reshape(n, -1))


def test_batch_size_read_upstream_is_recomputed_downstream(monkeypatch):
    model = BatchSizeViews()
    x = nets.images(2)
    calls = []
    monkeypatch.setattr(intgrad, "_mean_gradient_full", lambda *a, **k: calls.append(1))
    downstream = pw.extract_pathway(model, x, "neuron_intgrad", 50, recompute="downstream")
    assert calls == [], "the downstream split fell back to full recompute"
    monkeypatch.undo()
    full = pw.extract_pathway(model, x, "neuron_intgrad", 50, recompute="full")
    assert torch.equal(downstream.flat(), full.flat())
    _assert_literal_masks(model, x, downstream, 50, "batch-size views")


class PythonValueUpstream(nn.Module):
    """A Python number computed from a tensor upstream (not a shape query): it cannot be tiled."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nets.tiny_cnn()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x[0].numel()  # an int that fx cannot know holds the batch size
        h = self.relu(self.inner(x))
        return h.view(rows, -1)


def test_python_value_upstream_falls_back_to_full_recompute_per_site():
    model = PythonValueUpstream()
    x = nets.images(2)
    downstream = pw.extract_pathway(model, x, "neuron_intgrad", 50, recompute="auto")
    _assert_literal_masks(model, x, downstream, 50, "python value upstream")


# ------------------------------------------------------------------------- functional rectifiers


def test_mixed_net_original_code_groups_functional_sites_by_name():
    """nets.MixedNet: the "modules" of the authors' loop are stem/relu, act, block/relu, /relu, /relu6
    (site names without #k, in call order): sites 0-4 are scored, each read at site k while every
    call of group k is scaled; sites 5-7 keep every neuron."""
    model = nets.mixed_net()
    x = nets.images(2)
    for recompute in ("downstream", "full"):
        path = pw.extract_pathway(model, x, "neuron_intgrad", 60, variant="original_code", recompute=recompute)
        for b in range(2):
            ref, _ = R.intgrad_original_masks(model, x[b : b + 1], 60)
            R.assert_masks_equal(R.batch_masks(path, b), ref, f"mixed original_code {recompute} image {b}")
            assert all(bool(m.all()) for m in R.batch_masks(path, b)[5:])


def test_in_place_call_read_afterwards_falls_back_to_full_recompute():
    """``h.relu_()`` with the next layer reading ``h``: the fx graph does not see the change, so "auto"
    warns and recomputes the full network, "downstream" refuses, and the masks are the reference's."""
    model = nets.mixed_net(statement=True)
    x = nets.images(2)
    with pytest.warns(UserWarning, match="fx cannot split.*in-place rectifier"):
        auto = pw.extract_pathway(model, x, "neuron_intgrad", 50, recompute="auto")
    with pytest.raises(RuntimeError, match="recompute='downstream'.*in-place"):
        pw.extract_pathway(model, x, "neuron_intgrad", 50, recompute="downstream")
    full = pw.extract_pathway(model, x, "neuron_intgrad", 50, recompute="full")
    assert torch.equal(auto.flat(), full.flat())
    _assert_literal_masks(model, x, auto, 50, "in-place statement")
