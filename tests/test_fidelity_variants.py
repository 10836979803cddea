"""The authors' behaviours of issue 16, each against a literal re-statement of their rule: InputIntGrad's
51 alphas from 0, the sanity script's "InputMCT" from the reduced NeuronIntGrad map, HOG with 16 x 16
cells, the sanity checks' class from the randomized model; and configuration fields added later
staying out of the cache key at their default."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from skimage.feature import hog

from pathlib_pw.criteria import extract_pathway
from pathlib_pw.experiments import get_config, sanity
from pathlib_pw.experiments.attribution import MAP_TIMES, attribution_maps
from pathlib_pw.runner import cache
from pathlib_pw.runner.inputs import Inputs
from pathlib_pw.saliency import pathway_grad, saliency
from pathlib_pw.sanity import randomization_stages, randomized, similarity
from tests.nets import images, tiny_cnn


def _reduce_normalize(a: np.ndarray) -> np.ndarray:
    """Per pixel the channel value of largest magnitude (first on ties), sign kept; / the largest |value|."""
    pick = np.abs(a).argmax(1)
    m = np.take_along_axis(a, pick[:, None], 1)[:, 0]
    peak = np.abs(m).reshape(len(m), -1).max(1)
    return m / np.where(peak > 0, peak, 1)[:, None, None]


def test_input_intgrad_original_code_is_the_authors_51_alphas_from_zero():
    net, x = tiny_cnn(), images(2, seed=3)
    target = net(x).argmax(1)
    steps = 50
    grads = []
    for alpha in np.arange(steps + 1) / steps:  # the authors' alphas, alpha = 0 included
        inp = (float(alpha) * x).requires_grad_(True)
        (g,) = torch.autograd.grad(net(inp).gather(1, target[:, None]).sum(), inp)
        grads.append(g.numpy())
    expected = _reduce_normalize(x.numpy() * np.mean(grads, axis=0))
    got = saliency(net, x, "input_intgrad", target=target, steps=steps, variant="original_code")
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)
    # the default (50 right-Riemann points) differs
    assert not np.allclose(saliency(net, x, "input_intgrad", target=target, steps=steps).numpy(), expected, atol=1e-6)


def test_authors_input_mct_multiplies_the_reduced_map_by_the_image():
    net, x = tiny_cnn(), images(2, seed=1)
    target = net(x).argmax(1)
    path = extract_pathway(net, x, "neuron_intgrad", 50.0, target=target)
    reduced = pathway_grad(net, x, path, target=target).numpy()  # (B, H, W), normalized: the script's map
    expected = _reduce_normalize(reduced[:, None] * x.numpy())
    maps = attribution_maps(net, x, ["neuron_intgrad", MAP_TIMES + "neuron_intgrad", "input_x_neuron_intgrad"], 50.0, target)
    np.testing.assert_allclose(maps[MAP_TIMES + "neuron_intgrad"].numpy(), expected, atol=1e-10)
    assert not np.allclose(maps["input_x_neuron_intgrad"].numpy(), expected, atol=1e-6)


def test_hog_cell_16_is_scikit_image_hog_with_16_pixel_cells():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (64, 64)), rng.uniform(-1, 1, (64, 64))
    expected = pearsonr(hog(a, pixels_per_cell=(16, 16)), hog(b, pixels_per_cell=(16, 16)))[0]
    assert similarity(a, b, hog_cell=16)["hog_pearson"] == pytest.approx(expected)
    assert similarity(a, b)["hog_pearson"] == pytest.approx(pearsonr(hog(a), hog(b))[0])
    with pytest.raises(ValueError, match="hog_cell"):
        similarity(a, b, hog_cell=0)


def test_added_fields_stay_out_of_the_cache_key_at_their_default():
    book = get_config("sanity", "book")
    assert "explained_class" not in cache.config_dict(book)
    changed = dataclasses.replace(book, explained_class="randomized")
    assert cache.config_dict(changed)["explained_class"] == "randomized"
    assert cache.config_hash("sanity", changed) != cache.config_hash("sanity", book)
    # the same hash as before the fields existed: the dataclass without them
    assert cache.config_hash("sanity", book) == cache.config_hash("sanity", dataclasses.replace(book))


def test_paper_profile_settings():
    paper = get_config("sanity", "paper")
    assert (paper.explained_class, paper.input_intgrad_variant, paper.hog_cell) == ("randomized", "original_code", 16)
    mvs = get_config("maps_vs_sparsity", "paper")
    assert mvs.inputs.images == ("16305",) and mvs.inputs.source == "imagenet_val"
    assert mvs.sparsities == (0.0, 70.0, 80.0, 85.0, 90.0, 95.0, 99.0)
    # the qualitative figure: the authors' nine validation indices per model, VGG16 at 90 %, ResNet50 at 75 %
    qualitative = get_config("qualitative", "paper")
    vgg16 = ("39834", "40639", "3158", "8105", "2094", "23684", "12659", "23147", "4581")
    resnet50 = ("5054", "36203", "43518", "20813", "7054", "15574", "15598", "41442", "9678")
    assert dict(qualitative.model_images) == {"vgg16": vgg16, "resnet50": resnet50}
    assert qualitative.inputs.images == vgg16 and qualitative.inputs.source == "imagenet_val"
    assert qualitative.settings == (("vgg16", 90.0), ("resnet50", 75.0))


def test_sanity_explains_the_randomized_models_own_class():
    """The authors' script: after each randomization, explain that model's argmax; compare with the
    trained model's map of its own prediction."""
    small = sanity.Config(
        inputs=Inputs(images=("chelsea", "coffee"), size=32),
        methods=("Gradients",),
        measure_at=("classifier",),
        independent=(),
        example_stages=("original",),
        example_images=1,
        explained_class="randomized",
    )
    run = sanity.run(small, progress=False)
    model = small.inputs.load_model()
    x, _ = small.inputs.load_images()
    with torch.no_grad():
        trained_class = model(x).argmax(1)
    trained = saliency(model, x, "gradients", target=trained_class)
    stages = dict(randomization_stages(model))
    with randomized(model, stages["classifier"], small.seed, small.std):
        with torch.no_grad():
            own = model(x).argmax(1)
        maps = saliency(model, x, "gradients", target=own)
    assert run["stage_predicted"][:, 1].tolist() == own.tolist()
    for i in range(len(x)):
        expected = similarity(trained[i], maps[i])
        np.testing.assert_allclose(run["cascading"][i, 1, 0], list(expected.values()), rtol=1e-4, atol=1e-5)
