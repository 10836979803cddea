"""pathlib_pw.sanity: model-randomization stages, the randomization context and the similarity metrics
(book/methods.md, the paper's experiments: "Sanity checks"), against literal references written from the definitions."""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch
import torchvision
from skimage.feature import hog

from pathlib_pw.sanity import SIMILARITY_METRICS, check_stages, randomization_stages, randomized, similarity

# ----------------------------------------------------------------------------------------------
# helpers (independent of pathlib_pw)
# ----------------------------------------------------------------------------------------------


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _buffers(model):
    return {n: b.detach().clone() for n, b in model.named_buffers()}


def _stage_param_names(model, module_names):
    """Every parameter name under the given submodules (written with named_modules, no library code)."""
    modules = dict(model.named_modules())
    return [f"{m}.{p}" for m in module_names for p, _ in modules[m].named_parameters()]


def _assert_same(before, after, names=None):
    for n in before if names is None else names:
        assert torch.equal(before[n], after[n]), n


# ----------------------------------------------------------------------------------------------
# randomization_stages / check_stages
# ----------------------------------------------------------------------------------------------

# the authors' ResNet50 cascade, top to bottom, written out by hand: 3 + 4 + 6 + 3 = 16 bottlenecks
RESNET50_BLOCKS_TOP_DOWN = [
    "layer4.2", "layer4.1", "layer4.0",
    "layer3.5", "layer3.4", "layer3.3", "layer3.2", "layer3.1", "layer3.0",
    "layer2.3", "layer2.2", "layer2.1", "layer2.0",
    "layer1.2", "layer1.1", "layer1.0",
]  # fmt: skip


def _assert_partition(model, stages):
    """The stages' modules together hold every parameter of the model exactly once."""
    seen: dict[int, list[str]] = {}
    modules = dict(model.named_modules())
    for label, names in stages:
        for name in names:
            for p in modules[name].parameters():
                seen.setdefault(id(p), []).append(label)
    all_params = {id(p): n for n, p in model.named_parameters()}
    missed = [all_params[i] for i in all_params if i not in seen]
    twice = {all_params.get(i, i): labels for i, labels in seen.items() if len(labels) > 1}
    assert not missed, f"parameters in no stage: {missed[:5]}"
    assert not twice, f"parameters in several stages: {list(twice.items())[:5]}"
    assert set(seen) == set(all_params)


def test_resnet50_stages_are_the_authors_19(resnet50):
    stages = randomization_stages(resnet50)
    expected = (
        [("linear", ("fc",))]
        + [(f"bottleneck_{15 - k}", (block,)) for k, block in enumerate(RESNET50_BLOCKS_TOP_DOWN)]
        + [("conv1", ("conv1", "bn1"))]
    )
    assert len(stages) == 18  # + "original" = the authors' 19 stages
    assert [label for label, _ in stages] == (
        ["linear"] + [f"bottleneck_{i}" for i in range(15, -1, -1)] + ["conv1"]
    )
    assert [(label, tuple(names)) for label, names in stages] == expected
    assert dict(stages)["bottleneck_15"] == ("layer4.2",)
    assert dict(stages)["bottleneck_0"] == ("layer1.0",)
    _assert_partition(resnet50, stages)
    assert check_stages(resnet50, stages) == list(stages)


def test_resnet_stages_follow_the_architecture(resnet18):
    """A ResNet18 (BasicBlocks, 2 per layer) gets 8 blocks; a subclass of ResNet is recognized too."""
    stages = randomization_stages(resnet18)
    blocks = [f"layer{layer}.{i}" for layer in (4, 3, 2, 1) for i in (1, 0)]
    assert [(label, tuple(names)) for label, names in stages] == (
        [("linear", ("fc",))] + [(f"bottleneck_{7 - k}", (b,)) for k, b in enumerate(blocks)] + [("conv1", ("conv1", "bn1"))]
    )
    _assert_partition(resnet18, stages)

    class MyResNet(torchvision.models.ResNet):
        pass

    sub = MyResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=3)
    sub_stages = randomization_stages(sub)
    assert [label for label, _ in sub_stages] == ["linear"] + [f"bottleneck_{i}" for i in (3, 2, 1, 0)] + ["conv1"]
    _assert_partition(sub, sub_stages)


def test_mobilenet_v2_stages(mobilenet_random):
    model = mobilenet_random
    assert len(model.features) == 19  # structure assumed by the literal below
    stages = randomization_stages(model)
    expected = (
        [("classifier", ("classifier",)), ("last_conv", ("features.18",))]
        + [(f"block_{i}", (f"features.{i + 1}",)) for i in range(16, -1, -1)]
        + [("stem", ("features.0",))]
    )
    assert [(label, tuple(names)) for label, names in stages] == expected
    assert len(stages) == 20
    assert dict(stages)["block_16"] == ("features.17",)
    assert dict(stages)["block_0"] == ("features.1",)
    _assert_partition(model, stages)
    assert check_stages(model, stages) == list(stages)


def test_unsupported_architectures_raise(tiny):
    for model in (torchvision.models.squeezenet1_1(), tiny.make(seed=1)):
        with pytest.raises(ValueError) as err:
            randomization_stages(model)
        message = str(err.value)
        assert "ResNet" in message and "MobileNetV2" in message
        assert type(model).__name__ in message


def test_check_stages_errors(tiny):
    net = tiny.make(seed=2)
    good = [("top", ("fc2",)), ("middle", ("conv2", "fc1")), ("bottom", ("conv1", "bn1"))]
    assert check_stages(net, good) == good
    assert check_stages(net, tuple(good)) == good  # any sequence, returned as a list
    bad_cases = [
        [("top", ("fc2",)), ("typo", ("fc3",))],  # unknown module
        [("top", ("fc2", "conv9"))],  # one of several unknown
        [("empty", ())],  # names no module
        [["top", ("fc2",)]],  # not a tuple
        [("top",)],  # not a pair
        [("top", ("fc2",), "extra")],
        [(3, ("fc2",))],  # label not a string
    ]
    for stages in bad_cases:
        with pytest.raises(ValueError, match="stage"):
            check_stages(net, stages)


# ----------------------------------------------------------------------------------------------
# randomized
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def r18(resnet18):
    return copy.deepcopy(resnet18)


def test_randomized_changes_exactly_the_named_parameters(r18):
    model = r18
    before, buffers_before = _params(model), _buffers(model)
    stage = ["conv1", "bn1", "layer4.1"]
    names = set(_stage_param_names(model, stage))
    # conv1 (no bias), bn1 (2) and the BasicBlock layer4.1 (2 convs without bias, 2 BatchNorms): 9
    assert "bn1.weight" in names and "layer4.1.bn2.bias" in names and len(names) == 9
    with randomized(model, stage, seed=0, std=0.1) as returned:
        assert returned is model
        inside, buffers_inside = _params(model), _buffers(model)
    for n in before:
        if n in names:
            assert (inside[n] != before[n]).all(), n  # every element redrawn
        else:
            assert torch.equal(inside[n], before[n]), n
    # BatchNorm running statistics (and num_batches_tracked) are not parameters: untouched
    assert any(n.endswith("running_var") for n in buffers_before)
    _assert_same(buffers_before, buffers_inside)
    _assert_same(buffers_before, _buffers(model))
    _assert_same(before, _params(model))
    # two parameters of the same shape in one stage get independent draws
    assert not torch.equal(inside["bn1.weight"], inside["bn1.bias"])
    assert not torch.equal(inside["layer4.1.conv1.weight"], inside["layer4.1.conv2.weight"])


@pytest.mark.parametrize("std", [0.1, 0.5])
def test_randomized_values_are_normal_with_std(r18, std):
    with randomized(r18, ["fc", "layer4.1"], seed=3, std=std):
        samples = {
            "fc.weight": r18.fc.weight.detach().double(),  # 512 000 values
            "layer4.1.conv2.weight": r18.layer4[1].conv2.weight.detach().double(),  # 2 359 296 values
            "fc.bias": r18.fc.bias.detach().double(),  # 1 000 values
        }
    for name, w in samples.items():
        n = w.numel()
        # mean within 6 standard errors, std within 6 standard errors of the sample std (~ std / sqrt(2n))
        assert abs(float(w.mean())) < 6 * std / np.sqrt(n), name
        assert abs(float(w.std()) - std) < 6 * std / np.sqrt(2 * n), name
        # and roughly Gaussian: about 68.3 % within one std
        inside = float((w.abs() < std).double().mean())
        assert abs(inside - 0.6827) < 6 * np.sqrt(0.683 * 0.317 / n) + 1e-3, name


def test_randomized_is_reproducible_by_seed(r18):
    mods = ["fc", "layer3.0"]
    names = _stage_param_names(r18, mods)

    def draw(seed, std=0.1):
        with randomized(r18, mods, seed=seed, std=std):
            return {n: p.detach().clone() for n, p in r18.named_parameters() if n in names}

    a, b, c = draw(7), draw(7), draw(8)
    for n in names:
        assert torch.equal(a[n], b[n]), n
        assert not torch.equal(a[n], c[n]), n
    # the same draw on another instance of the model (nothing depends on the original weights)
    other = copy.deepcopy(r18)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    with randomized(other, mods, seed=7):
        for n, p in other.named_parameters():
            if n in names:
                assert torch.equal(p, a[n]), n
    # std scales the same standard-normal draw
    d = draw(7, std=0.3)
    for n in names:
        torch.testing.assert_close(d[n], a[n] * 3, rtol=1e-6, atol=0)


def _values(model, names):
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


@pytest.mark.parametrize("order", ["top_down", "bottom_up", "shuffled"])
def test_stage_alone_equals_stage_in_cascade(r18, order):
    model = r18
    stages = randomization_stages(model)[:4] + [randomization_stages(model)[-1]]  # fc, 3 blocks, conv1
    alone = {}
    for label, mods in stages:
        with randomized(model, mods, seed=5):
            alone[label] = _values(model, _stage_param_names(model, mods))
    before = _params(model)
    sequence = {"top_down": stages, "bottom_up": stages[::-1], "shuffled": [stages[i] for i in (2, 0, 4, 1, 3)]}[order]
    with contextlib.ExitStack() as stack:
        for k, (label, mods) in enumerate(sequence):
            stack.enter_context(randomized(model, mods, seed=5))
            # after k+1 nested stages every one of them holds its stand-alone values
            for done_label, done_mods in sequence[: k + 1]:
                now = _values(model, _stage_param_names(model, done_mods))
                for n, v in now.items():
                    assert torch.equal(v, alone[done_label][n]), (done_label, n)
            # and the stages not yet entered are untouched
            for _, rest_mods in sequence[k + 1 :]:
                _assert_same(before, _values(model, _stage_param_names(model, rest_mods)), _stage_param_names(model, rest_mods))
    _assert_same(before, _params(model))
    # one call over several stages is the same as nesting them
    all_mods = [m for _, mods in stages for m in mods]
    with randomized(model, all_mods, seed=5):
        for label, mods in stages:
            for n, v in _values(model, _stage_param_names(model, mods)).items():
                assert torch.equal(v, alone[label][n]), (label, n)
    _assert_same(before, _params(model))


def test_randomized_overlapping_nesting_restores_the_originals(r18):
    before = _params(r18)
    with randomized(r18, ["layer4"], seed=1):
        first = _params(r18)
        with randomized(r18, ["layer4.1", "fc"], seed=2):
            assert not torch.equal(r18.layer4[1].conv1.weight, first["layer4.1.conv1.weight"])
        _assert_same(first, _params(r18))
    _assert_same(before, _params(r18))


def test_randomized_restores_after_exception_and_keeps_flags(r18):
    model = r18
    model.fc.bias.requires_grad_(False)
    model.layer4[0].bn1.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    objects = {n: p for n, p in model.named_parameters()}
    before, buffers_before = _params(model), _buffers(model)
    with pytest.raises(RuntimeError, match="boom"):
        with randomized(model, ["fc", "layer4.0", "conv1"], seed=4):
            assert not torch.equal(model.fc.weight, before["fc.weight"])
            assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
            raise RuntimeError("boom")
    _assert_same(before, _params(model))
    _assert_same(buffers_before, _buffers(model))
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    # the model's own parameter objects are edited in place, never replaced
    assert all(p is objects[n] for n, p in model.named_parameters())
    # a forward pass (gradients enabled) through the randomized model works and leaves no trace
    with randomized(model, ["fc"], seed=4):
        out = model(torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
        out.sum().backward()
    _assert_same(before, _params(model))
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_randomized_argument_errors(r18):
    before = _params(r18)
    with pytest.raises(ValueError, match="modules"):
        with randomized(r18, ["fc", "layer9"]):
            pass
    with pytest.raises(ValueError, match="layer9"):
        with randomized(r18, ["layer9"]):
            pass
    for std in (0, 0.0, -0.1):
        with pytest.raises(ValueError, match="std"):
            with randomized(r18, ["fc"], std=std):
                pass
    # a rejected call changes nothing
    _assert_same(before, _params(r18))


# ----------------------------------------------------------------------------------------------
# similarity
# ----------------------------------------------------------------------------------------------


def _maps(seed, shape=(32, 32)):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, shape)
    b = 0.55 * a + 0.45 * rng.uniform(-1, 1, shape)  # in [-1, 1], correlated, tie-free (no clipping)
    assert np.unique(a).size == a.size and np.unique(b).size == b.size
    return a, b


def _ranks(v):
    """0-based ranks of tie-free data."""
    r = np.empty(v.size)
    r[np.argsort(v, kind="stable")] = np.arange(v.size)
    return r


def _pearson(u, v):
    u, v = u - u.mean(), v - v.mean()
    return float((u * v).sum() / np.sqrt((u * u).sum() * (v * v).sum()))


def _spearman(a, b):
    return _pearson(_ranks(a.ravel()), _ranks(b.ravel()))


def _ssim_literal(a, b, win=5, data_range=2.0):
    """Mean over every fully-inside win x win window of the SSIM index with sample (ddof=1) statistics."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            wa, wb = a[i : i + win, j : j + win].ravel(), b[i : i + win, j : j + win].ravel()
            mu_a, mu_b = wa.mean(), wb.mean()
            var_a, var_b = wa.var(ddof=1), wb.var(ddof=1)
            cov = ((wa - mu_a) * (wb - mu_b)).sum() / (wa.size - 1)
            values.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(values))


def _hog(m):
    # scikit-image's defaults, spelled out
    return hog(m, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3), block_norm="L2-Hys")


def test_similarity_keys():
    a, b = _maps(0)
    assert tuple(similarity(a, b)) == SIMILARITY_METRICS == ("spearman_signed", "spearman_abs", "ssim", "hog_pearson")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_similarity_spearman_literal(seed):
    a, b = _maps(seed, shape=(24, 40))
    got = similarity(a, b)
    assert got["spearman_signed"] == pytest.approx(_spearman(a, b), abs=1e-12)
    assert got["spearman_abs"] == pytest.approx(_spearman(np.abs(a), np.abs(b)), abs=1e-12)
    # the two differ on these maps (the absolute value is really taken)
    assert abs(got["spearman_signed"] - got["spearman_abs"]) > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_similarity_ssim_literal(seed):
    a, b = _maps(seed, shape=(26, 31))
    got = similarity(a, b)["ssim"]
    ref = _ssim_literal(a, b)
    assert got == pytest.approx(ref, abs=1e-12)
    # the literal is sensitive to the window size (population variances: test_ssim_uses_sample_variances)
    assert abs(ref - _ssim_literal(a, b, win=7)) > 1e-4
    assert similarity(a, a)["ssim"] == pytest.approx(1.0, abs=1e-12)
    # a constant map still has a defined SSIM (C1, C2 > 0)
    zero = np.zeros_like(a)
    assert similarity(a, zero)["ssim"] == pytest.approx(_ssim_literal(a, zero), abs=1e-12)


def test_ssim_uses_sample_variances():
    """The ddof=1 literal, not the ddof=0 one, is what similarity computes (a hand-made difference)."""
    a, b = _maps(5, shape=(26, 26))

    def population(a, b, win=5):
        c1, c2 = 0.02**2, 0.06**2
        vals = []
        for i in range(a.shape[0] - win + 1):
            for j in range(a.shape[1] - win + 1):
                wa, wb = a[i : i + win, j : j + win], b[i : i + win, j : j + win]
                ma, mb = wa.mean(), wb.mean()
                cov = ((wa - ma) * (wb - mb)).mean()
                vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (wa.var() + wb.var() + c2)))
        return float(np.mean(vals))

    got = similarity(a, b)["ssim"]
    assert abs(population(a, b) - _ssim_literal(a, b)) > 1e-5
    assert got == pytest.approx(_ssim_literal(a, b), abs=1e-12)
    assert abs(got - population(a, b)) > 1e-5


def test_similarity_hog_pearson():
    a, b = _maps(3, shape=(32, 48))
    got = similarity(a, b)
    assert got["hog_pearson"] == pytest.approx(float(np.corrcoef(_hog(a), _hog(b))[0, 1]), abs=1e-12)
    assert got["hog_pearson"] < 0.999
    assert similarity(a, a)["hog_pearson"] == pytest.approx(1.0, abs=1e-12)
    # HOG bins unsigned orientations: a sign flip leaves the histograms, hence the correlation = 1
    assert similarity(a, -a)["hog_pearson"] == pytest.approx(1.0, abs=1e-12)


def test_similarity_hand_cases():
    a, _ = _maps(4)
    got = similarity(a, -a)
    assert got["spearman_signed"] == pytest.approx(-1.0, abs=1e-12)
    assert got["spearman_abs"] == pytest.approx(1.0, abs=1e-12)
    same = similarity(a, a.copy())
    for key in SIMILARITY_METRICS:
        assert same[key] == pytest.approx(1.0, abs=1e-12), key
    # a monotone transform keeps the signed ranking
    assert similarity(a, a**3)["spearman_signed"] == pytest.approx(1.0, abs=1e-12)
    # torch tensors (float32) and numpy arrays give the same numbers
    at, bt = torch.from_numpy(a).float(), torch.from_numpy(-a).float()
    for key, value in similarity(at, bt).items():
        assert value == pytest.approx(similarity(at.numpy(), bt.numpy())[key], abs=1e-12), key


def test_similarity_constant_maps_are_nan():
    a, _ = _maps(6)
    for const in (np.zeros_like(a), np.full_like(a, 0.5)):
        for got in (similarity(a, const), similarity(const, a), similarity(const, const)):
            assert np.isnan(got["spearman_signed"])
            assert np.isnan(got["spearman_abs"])
            assert np.isnan(got["hog_pearson"])
            assert np.isfinite(got["ssim"])
    # constant magnitude with varying sign: only the absolute ranking is undefined
    signs = np.where(np.random.default_rng(7).random(a.shape) < 0.5, -1.0, 1.0)
    got = similarity(signs, a)
    assert np.isnan(got["spearman_abs"])
    assert got["spearman_signed"] == pytest.approx(_spearman_with_ties(signs, a), abs=1e-12)


def _spearman_with_ties(a, b):
    """Pearson of average ranks (ties share the mean of their positions)."""

    def avg_ranks(v):
        v = v.ravel()
        order = np.argsort(v, kind="stable")
        ranks = np.empty(v.size)
        ranks[order] = np.arange(v.size)
        for value in np.unique(v):
            idx = v == value
            ranks[idx] = ranks[idx].mean()
        return ranks

    return _pearson(avg_ranks(a), avg_ranks(b))


def test_similarity_shape_errors():
    a, b = _maps(8)
    with pytest.raises(ValueError, match="shape"):
        similarity(a, b[:, :-1])
    with pytest.raises(ValueError, match="shape"):
        similarity(a[None], b[None])
    with pytest.raises(ValueError, match="shape"):
        similarity(a.ravel(), b.ravel())
    with pytest.raises(ValueError, match="shape"):
        similarity(a, b.T[:, :, None])


def test_efficientnet_lite0_stages():
    from pathlib_pw.models import load_model

    model = load_model("efficientnet_lite0", pretrained=False)
    stages = randomization_stages(model)
    labels = [label for label, _ in stages]
    assert labels == ["classifier", "head"] + [f"block_{i}" for i in range(15, -1, -1)] + ["stem"]
    assert dict(stages)["head"] == ("net._conv_head", "net._bn1") and dict(stages)["stem"] == ("net._conv_stem", "net._bn0")
    covered = [id(p) for _, modules in stages for m in modules for p in model.get_submodule(m).parameters()]
    assert sorted(covered) == sorted(id(p) for p in model.parameters())
