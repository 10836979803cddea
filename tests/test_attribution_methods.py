"""pathlib_pw.attribution_methods: the registry, its stable names against direct calls, the ROAR controls."""

from __future__ import annotations

import math

import pytest
import torch

from pathlib_pw import attribution_methods as am
from pathlib_pw.criteria import SPECS, extract_pathway
from pathlib_pw.saliency import GRADCAM_LAYERS, SALIENCY_METHODS, pathway_grad, saliency
from tests import nets
from tests.conftest import hook_counts, modes, set_mixed_modes
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

PATHWAY_NAMES = {
    "pathway_grad/neuron_mct": ("neuron_mct", "intended"),
    "pathway_grad/neuron_intgrad": ("neuron_intgrad", "intended"),
    "pathway_grad/neuron_intgrad_accumulated": ("neuron_intgrad", "original_code"),
}
# cheap options per criterion for the factory test on the tiny net
FAST_OPTIONS = {"greedy": {"rounds": 3}, "dgr": {"iterations": 10, "lr": 0.05}, "random": {"seed": 5}}


@pytest.fixture
def model(monkeypatch):
    """TinyCNN in float32, with a Grad-CAM default layer the way the known architectures get theirs."""
    monkeypatch.setitem(GRADCAM_LAYERS, "TinyCNN", "relu2")
    return nets.tiny_cnn(seed=1, double=False)


@pytest.fixture
def x():
    return nets.images(3, seed=2, double=False)


@pytest.fixture
def registry():
    """The registry, restored after the test whatever it registered (the same dict: the old module
    re-exports the one of pathlib_pw.attribution.registry)."""
    saved = dict(am.ATTRIBUTION_METHODS)
    yield am.ATTRIBUTION_METHODS
    am.ATTRIBUTION_METHODS.clear()
    am.ATTRIBUTION_METHODS.update(saved)


def test_stable_names_registered_at_import():
    expected = set(SALIENCY_METHODS) | set(PATHWAY_NAMES) | {"random", "sobel"}
    assert set(am.DEFAULT_NAMES) == expected
    assert expected <= set(am.ATTRIBUTION_METHODS)
    assert not any("greedy" in n or "dgr" in n for n in am.DEFAULT_NAMES)
    assert "NeuronIntGrad*" in am.ATTRIBUTION_METHODS["pathway_grad/neuron_intgrad_accumulated"].__doc__


@pytest.mark.parametrize("name", am.DEFAULT_NAMES)
def test_every_name_contract_and_model_left_as_found(model, x, name):
    flags = set_mixed_modes(model)
    model.conv1.weight.grad = torch.full_like(model.conv1.weight, 3.0)
    before = [p.detach().clone() for p in model.parameters()]
    hooks = hook_counts(model)
    maps = am.attribute(model, x, name)
    assert maps.shape == (3, 8, 8) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and not maps.requires_grad
    assert float(maps.abs().max()) <= 1.0
    if name in ("random", "sobel", "gradcam"):
        assert float(maps.min()) >= 0.0
    assert modes(model) == flags
    assert hook_counts(model) == hooks
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert torch.equal(model.conv1.weight.grad, torch.full_like(model.conv1.weight, 3.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "conv1.weight")


def test_float64_model_gives_float32_maps():
    model, x = nets.tiny_cnn(seed=1), nets.images(2, seed=2)
    for name in ("gradients", "pathway_grad/neuron_mct", "sobel", "random"):
        assert am.attribute(model, x, name).dtype == torch.float32


def test_entries_equal_direct_calls(model, x):
    target = torch.tensor([0, 3, 1])
    for method in SALIENCY_METHODS:
        direct = saliency(model, x, method, target=target)
        assert torch.equal(am.ATTRIBUTION_METHODS[method](model, x, target), direct), method
        assert torch.equal(am.attribute(model, x, method, target=target), direct), method
    for name, (criterion, variant) in PATHWAY_NAMES.items():
        path = extract_pathway(model, x, criterion, am.DEFAULT_PATHWAY_SPARSITY, target=target, variant=variant)
        direct = pathway_grad(model, x, path, target=target)
        assert torch.equal(am.ATTRIBUTION_METHODS[name](model, x, target), direct), name
        assert torch.equal(am.attribute(model, x, name, target=target), direct), name


def test_target_none_resolves_to_prediction(model, x):
    seen = []
    spy = lambda m, xs, t: seen.append(t) or torch.zeros(xs.shape[0], *xs.shape[2:])
    with torch.no_grad():
        predicted = model(x).argmax(1)
    am.attribute(model, x, spy)
    assert seen[0].dtype == torch.long and torch.equal(seen[0], predicted)
    am.attribute(model, x, spy, target=4)  # one class for every image
    assert torch.equal(seen[1], torch.full((3,), 4))
    for name in ("gradients", "pathway_grad/neuron_mct"):
        assert torch.equal(am.attribute(model, x, name), am.attribute(model, x, name, target=predicted))


def test_user_callable_registered_and_returned_unchanged(registry, model, x):
    out = torch.rand(3, 8, 8)
    fn = lambda m, xs, t: out
    assert am.register_attribution("mine", fn) is fn
    assert am.attribution_method("mine") is fn
    assert am.attribute(model, x, "mine") is out
    assert am.attribute(model, x, fn) is out  # a raw callable works without registration
    other = lambda m, xs, t: out.double()
    am.register_attribution("mine", other, replace=True)
    assert am.attribution_method("mine") is other
    assert am.attribute(model, x, "mine").dtype == torch.float32


def test_registry_errors(registry, model, x):
    with pytest.raises(ValueError, match="already registered"):
        am.register_attribution("gradients", lambda m, xs, t: xs[:, 0])
    with pytest.raises(ValueError, match="fn must be a callable"):
        am.register_attribution("nothing", "gradients")
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        am.register_attribution("", lambda m, xs, t: xs[:, 0])
    with pytest.raises(ValueError, match=r"registered attribution methods \[.*'gradients'.*'sobel'"):
        am.attribution_method("no_such_method")
    with pytest.raises(ValueError, match="no_such_method"):
        am.attribute(model, x, "no_such_method")
    with pytest.raises(ValueError, match=r"shape \(B, H, W\)"):
        am.attribute(model, x, lambda m, xs, t: xs)  # (B, C, H, W) is not a map
    with pytest.raises(ValueError, match="shape"):
        am.attribute(model, x[0], "gradients")
    with pytest.raises(TypeError, match="model"):
        am.attribute("a model", x, "sobel")


def test_gradcam_unknown_architecture_error_passes_through(x):
    model = nets.tiny_cnn(seed=1, double=False)  # no GRADCAM_LAYERS entry for TinyCNN here
    with pytest.raises(ValueError, match="layer must name the Grad-CAM layer of TinyCNN"):
        am.attribute(model, x, "gradcam")
    layered = am.baseline_method("gradcam", layer="relu2")
    assert torch.equal(am.attribute(model, x, layered), saliency(model, x, "gradcam", layer="relu2"))


def test_baseline_factory_options(model, x):
    steps = am.baseline_method("input_intgrad", steps=3)
    assert torch.equal(steps(model, x, torch.tensor([0, 1, 2])), saliency(model, x, "input_intgrad", target=[0, 1, 2], steps=3))
    with pytest.raises(ValueError, match="method must be one of"):
        am.baseline_method("smoothgrad")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['steps'\].*accepted options: \[\]"):
        am.baseline_method("gradients", steps=3)


@pytest.mark.parametrize("criterion", sorted(SPECS))
def test_pathway_factory_accepts_every_criterion(model, x, criterion):
    sparsity = 60.0 if SPECS[criterion].needs_sparsity else None
    options = FAST_OPTIONS.get(criterion, {})
    method = am.pathway_grad_method(criterion, sparsity, **options)
    target = torch.tensor([1, 1, 0])
    maps = method(model, x, target)
    assert maps.shape == (3, 8, 8) and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    path = extract_pathway(model, x, criterion, sparsity, target=target, **options)
    assert torch.equal(maps, pathway_grad(model, x, path, target=target))


def test_pathway_factory_times_input_and_registration(registry, model, x):
    target = torch.tensor([2, 0, 1])
    method = am.pathway_grad_method("neuron_mct", 70, times_input=True)
    path = extract_pathway(model, x, "neuron_mct", 70, target=target)
    assert torch.equal(method(model, x, target), pathway_grad(model, x, path, target=target, times_input=True))
    am.register_attribution("pathway_grad/neuron_mct@70", am.pathway_grad_method("neuron_mct", 70))
    assert torch.equal(am.attribute(model, x, "pathway_grad/neuron_mct@70", target=target), pathway_grad(model, x, path, target=target))


def test_pathway_factory_errors():
    with pytest.raises(ValueError, match=r"criterion must be one of \['active_subnet'"):
        am.pathway_grad_method("neuron_taylor", 90)
    with pytest.raises(ValueError, match=r"variant for criterion 'neuron_mct' must be one of \['intended'\]"):
        am.pathway_grad_method("neuron_mct", 90, "original_code")
    for bad in (None, 100, -1, "90", [90, 80], True, math.nan):
        with pytest.raises(ValueError, match="sparsity"):
            am.pathway_grad_method("neuron_mct", bad)
    with pytest.raises(ValueError, match="sparsity must be None"):
        am.pathway_grad_method("active_subnet", 90)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['stepz'\]"):
        am.pathway_grad_method("neuron_intgrad", 90, stepz=3)
    with pytest.raises(ValueError, match="seed must be an int"):
        am.pathway_grad_method("random", 90, seed=[1, 2])


def test_random_ranking_independent_of_batch_and_seeded(model, x):
    ranking = am.random_ranking(seed=7)
    maps = ranking(model, x, torch.zeros(3, dtype=torch.long))
    assert torch.equal(maps[0], maps[1]) and torch.equal(maps[0], maps[2])  # the same for every image
    alone = ranking(model, x[2:], torch.zeros(1, dtype=torch.long))
    other_batch = torch.cat([nets.images(4, seed=9, double=False), x[:1]])
    assert torch.equal(alone[0], maps[0])
    assert torch.equal(ranking(model, other_batch, torch.zeros(5, dtype=torch.long))[4], maps[0])
    expected = torch.rand(8, 8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(maps[0], expected / expected.max())
    assert not torch.equal(am.random_ranking(seed=8)(model, x, None)[0], maps[0])
    assert torch.equal(am.attribute(model, x, "random")[0], am.random_ranking(0)(model, x, None)[0])
    with pytest.raises(ValueError, match="seed must be an int"):
        am.random_ranking(1.5)


def _literal_sobel(x: torch.Tensor) -> torch.Tensor:
    """Per pixel: Gx, Gy from the 3x3 neighbourhood with the border replicated, summed over channels."""
    batch, channels, height, width = x.shape
    kx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    out = torch.zeros(batch, height, width, dtype=torch.float64)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                total = 0.0
                for c in range(channels):
                    gx = gy = 0.0
                    for di in (-1, 0, 1):
                        for dj in (-1, 0, 1):
                            v = float(x[b, c, min(max(i + di, 0), height - 1), min(max(j + dj, 0), width - 1)])
                            gx += kx[di + 1][dj + 1] * v
                            gy += kx[dj + 1][di + 1] * v
                    total += gx * gx + gy * gy
                out[b, i, j] = math.sqrt(total)
        out[b] /= out[b].max()
    return out


def test_sobel_literal(model):
    x = nets.images(2, seed=4, shape=(3, 5, 6))
    got = am.sobel(model, x, None)
    assert got.shape == (2, 5, 6) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _literal_sobel(x), rtol=1e-6, atol=1e-7)
    flat = torch.ones(1, 3, 4, 4)  # a constant image has no edges, not even at its frame
    assert torch.equal(am.sobel(model, flat, None), torch.zeros(1, 4, 4))
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # a vertical edge between columns 1 and 2
    assert torch.equal(am.sobel(model, step, None)[0], torch.tensor([[0.0, 1.0, 1.0, 0.0]] * 4))


def test_re_registering_the_same_method_is_a_no_op(registry):
    """A notebook cell re-run: the README registers a lambda and a pathway_grad_method(...) by name."""

    def cell():
        am.register_attribution("pathway_grad/neuron_mct@50", am.pathway_grad_method("neuron_mct", 50))
        am.register_attribution("mine", lambda model, x, target: x.abs().amax(1))
        return registry["pathway_grad/neuron_mct@50"], registry["mine"]

    first = cell()
    assert cell() == first  # no error; the first registration stays
    # a re-run cell is compiled again: a new code object, equal to the old one
    source = 'import pathlib_pw as pw\npw.register_attribution("rerun", lambda model, x, target: x.abs().amax(1))\n'
    for _ in range(2):
        exec(compile(source, "<cell>", "exec"), {})
    same = first[1]
    assert am.register_attribution("mine", same) is same
    # a different callable under a taken name still needs replace=True
    with pytest.raises(ValueError, match="already registered"):
        am.register_attribution("mine", lambda model, x, target: x.abs().amin(1))
    with pytest.raises(ValueError, match="already registered"):  # same code, other closure values
        am.register_attribution("pathway_grad/neuron_mct@50", am.pathway_grad_method("neuron_mct", 60))
    with pytest.raises(ValueError, match="already registered"):
        am.register_attribution("gradcam", am.baseline_method("gradcam", layer="relu2"))


def test_attribute_passes_gradcam_layer_on_custom_model(x):
    model = nets.tiny_cnn(seed=1, double=False)  # no default Grad-CAM layer for TinyCNN
    got = am.attribute(model, x, "gradcam", layer="relu2")
    assert torch.equal(got, saliency(model, x, "gradcam", layer="relu2"))
    steps = am.attribute(model, x, "input_intgrad", steps=3, target=[0, 1, 2])
    assert torch.equal(steps, saliency(model, x, "input_intgrad", target=[0, 1, 2], steps=3))
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['layer'\]"):
        am.attribute(model, x, "gradients", layer="relu2")
    with pytest.raises(TypeError, match="takes no options"):
        am.attribute(model, x, "pathway_grad/neuron_mct", layer="relu2")
    # without a layer the error names the one-liners that work
    with pytest.raises(ValueError, match=r'attribute\(model, x, "gradcam", layer="conv2"\).*'
                       r'pathlib_pw\.architectures\.register_architecture\("TinyCNN", gradcam_layer="conv2"\)'):
        am.attribute(model, x, "gradcam")


def test_float64_model_takes_float32_images():
    """The input goes to the model's dtype as well as its device (sites.as_model_input)."""
    import pathlib_pw

    model, x = nets.tiny_cnn(seed=1, double=True), nets.images(2, seed=3, double=False)
    expected = pathlib_pw.attribute(model, x.double(), "gradients")
    assert torch.equal(pathlib_pw.attribute(model, x, "gradients"), expected)
    assert torch.equal(saliency(model, x, "input_mct"), saliency(model, x.double(), "input_mct"))
    path = extract_pathway(model, x.double(), "neuron_mct", 50.0)
    assert torch.equal(pathway_grad(model, x, path), pathway_grad(model, x.double(), path))
    assert torch.equal(pathlib_pw.output_change(model, x, path), pathlib_pw.output_change(model, x.double(), path))
    assert torch.equal(pathlib_pw.dead_share(model, x, path), pathlib_pw.dead_share(model, x.double(), path))
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(
        pathlib_pw.pixel_removal_curve(model, x, maps, [10, 50]), pathlib_pw.pixel_removal_curve(model, x.double(), maps, [10, 50])
    )
