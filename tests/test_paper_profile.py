"""The ``paper`` profile of every experiment, end to end at toy size, and its preflight check.

Each experiment runs ``get_config(name, "paper")`` shrunk by :data:`TOY` (few images, 32-64 px, few
iterations, rounds, epochs and seeds) with the paper's models, image sources, criteria, variants and
methods kept, through ``experiments.run(name, config, "cpu")``, on

- random-init VGG16 and ResNet50: no ImageNet weights exist offline. ``Inputs.load_model`` (the one
  place the experiments load pretrained models) is patched to return ``load_model(name,
  pretrained=False)``, the seeded random init of the real torchvision architecture (same modules,
  hooks and sites; only the weights differ). Writing weight files the loader accepts is not possible:
  their names carry the first hex digits of the SHA-256 of torchvision's files, which the loader checks;
- an ImageNet-layout validation folder written here (class subfolders of small JPEGs, one grayscale,
  two named as the decoding figure's images), through ``PATHLIB_PW_IMAGENET_VAL``;
- a CIFAR-10 python-batches folder (:mod:`tests.cifar_folder`), through ``PATHLIB_PW_CIFAR10``.

IntGrad's number of alphas is in no configuration: NeuronIntGrad's goes through the options every
experiment pins (``inputs.INTGRAD_OPTIONS``), InputIntGrad's through the default of ``saliency``; both
are patched to :data:`INTGRAD_STEPS` for the toy runs (the variants, e.g. the authors' alphas from 0,
are kept).

The run records which models it loaded and which folders it read: they must be exactly what
:mod:`pathlib_pw.experiments.requirements` derives from the paper configuration.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pathlib_pw import cifar10, data, experiments, models
from pathlib_pw.experiments import decoding as decoding_experiment
from pathlib_pw.experiments import requirements
from pathlib_pw.experiments.paths import Criterion
from pathlib_pw.runner import inputs as inputs_module
from pathlib_pw.saliency import saliency
from tests.cifar_folder import write_cifar10_folder

# ---- the toy inputs ---------------------------------------------------------------------------------

CLASSES = ("n01440764", "n01443537", "n01484850")
# per class, validation file numbers; 48339 and 48265 are the decoding figure's two images
VAL_FILES = {CLASSES[0]: (293, 48339), CLASSES[1]: (236, 48265), CLASSES[2]: (2338, 12345)}
GRAYSCALE = 2338  # a grayscale JPEG, as some of ImageNet's
CIFAR_PER_BATCH = 8  # 40 training and 8 test images
INTGRAD_STEPS = 2  # IntGrad alphas: 3 instead of 11 (NeuronIntGrad) and 51 (InputIntGrad)


def _write_imagenet_val(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c, (wnid, numbers) in enumerate(VAL_FILES.items()):
        (root / wnid).mkdir(parents=True)
        for number in numbers:
            # smooth colour blobs (JPEG keeps them) on a non-square frame: resize, crop and convert run
            low = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            image = Image.fromarray(low).resize((40, 48), Image.BICUBIC)
            if number == GRAYSCALE:
                image = image.convert("L")
            image.save(root / wnid / f"ILSVRC2012_val_{number:08d}.JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def paper_inputs(tmp_path_factory: pytest.TempPathFactory):
    """The folders in the environment, random-init ImageNet models, and a record of what runs touch."""
    root = tmp_path_factory.mktemp("paper_inputs")
    val = _write_imagenet_val(root / "val")
    (root / "cifar").mkdir()
    cifar = write_cifar10_folder(root / "cifar", per_batch=CIFAR_PER_BATCH)
    touched: set[str] = set()
    real_load, real_list, real_cifar = models.load_model, data.list_imagenet_val, cifar10.cifar10_folder

    def load_model(name: str, pretrained: bool = True, *, seed: int = 0, device: str | torch.device = "cpu"):
        if name in models.MODEL_NAMES:
            touched.add(f"weights:{name}")
            return real_load(name, pretrained=False, seed=seed, device=device)
        return real_load(name, pretrained, seed=seed, device=device)  # registered models bring their own

    def list_imagenet_val(*args: Any, **kwargs: Any):
        touched.add("imagenet_val")
        return real_list(*args, **kwargs)

    def cifar10_folder(*args: Any, **kwargs: Any):
        touched.add("cifar10")
        return real_cifar(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.IMAGENET_VAL_ENV, str(val))
        mp.setenv(cifar10.CIFAR10_ENV, str(cifar))
        mp.setenv("TORCH_HOME", str(root / "torch_home"))  # whatever weights this machine holds stay unused
        mp.setattr(inputs_module, "load_model", load_model)
        mp.setattr(data, "list_imagenet_val", list_imagenet_val)
        mp.setattr(decoding_experiment, "list_imagenet_val", list_imagenet_val)
        mp.setattr(cifar10, "cifar10_folder", cifar10_folder)
        # few IntGrad alphas (no configuration names them): NeuronIntGrad's through the options every
        # experiment pins, InputIntGrad's through saliency's default
        mp.setattr(inputs_module, "INTGRAD_OPTIONS", {**inputs_module.INTGRAD_OPTIONS, "steps": INTGRAD_STEPS})
        mp.setitem(inspect.unwrap(saliency).__kwdefaults__, "steps", INTGRAD_STEPS)  # under the deprecation wrapper
        yield types.SimpleNamespace(val=val, cifar=cifar, touched=touched)


# ---- the toy sizes ------------------------------------------------------------------------------------


def _few(criteria: tuple[Criterion, ...]) -> tuple[Criterion, ...]:
    """The same criteria (labels, methods, variants), with a few DGR iterations and Greedy rounds."""
    out = []
    for c in criteria:
        options = dict(c.options)
        if c.method == "dgr":
            options["iterations"] = 3
            if "max_retries" in options:
                options["max_retries"] = 1
        elif c.method == "greedy" and c.variant == "original_code":
            options["rounds"] = 3
        elif c.method == "greedy":
            options["step"] = 33.0  # 3 pruning rounds to any sparsity
        out.append(dataclasses.replace(c, options=tuple(options.items())))
    return tuple(out)


def _inputs(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config.inputs, **changes)


def _roar(config: Any) -> dict[str, Any]:
    return dict(
        percents=(50, 90),
        seeds=(0,),
        recipe=dataclasses.replace(config.recipe, epochs=1, batch_size=16),
        batch=16,
    )


# name -> the paper configuration -> its dataclasses.replace overrides
TOY: dict[str, Callable[[Any], dict[str, Any]]] = {
    "paths": lambda c: dict(inputs=_inputs(c, n_images=2, size=32), sweep_sparsities=(0.0, 50.0), criteria=_few(c.criteria)),
    "dgr_retries": lambda c: dict(inputs=_inputs(c, n_images=1, size=32), sweep_sparsities=(), criteria=_few(c.criteria)),
    "dgr_budget": lambda c: dict(inputs=_inputs(c, n_images=1, size=32), sweep_sparsities=(), criteria=_few(c.criteria)),
    # a validation index as the authors' 16305, within the toy folder
    "maps_vs_sparsity": lambda c: dict(inputs=_inputs(c, images=("4",), size=32)),
    # the toy folder's validation indices 0 and 3, as the qualitative toy's VGG16 images
    "map_explorer": lambda c: dict(inputs=_inputs(c, images=("0", "3"), n_images=2, size=32), sparsities=(70.0, 99.0)),
    # two validation indices of the toy folder per model, another two for each (the authors: nine)
    "qualitative": lambda c: dict(
        inputs=_inputs(c, images=("0", "3"), n_images=2, size=32), model_images=(("vgg16", ("0", "3")), ("resnet50", ("1", "4")))
    ),
    # 48 px: the authors' 16 px HOG cells need 3 x 3 of them
    "sanity": lambda c: dict(inputs=_inputs(c, n_images=2, size=48), measure_at=("linear", "conv1"), independent=("linear",)),
    "sanity_efficientnet": lambda c: dict(
        inputs=_inputs(c, images=c.inputs.images[:1], size=64), measure_at=("classifier", "stem"), independent=("stem",)
    ),
    "sanity_own_class": lambda c: dict(inputs=_inputs(c, n_images=1, size=48), measure_at=("linear",), independent=("conv1",)),
    "lerf": lambda c: dict(inputs=_inputs(c, n_images=2, size=32), percents=(1, 10)),
    "lerf_digits": lambda c: dict(inputs=_inputs(c, n_images=8), percents=(1, 10)),
    "roar": _roar,
    "roar_mask": _roar,
    "decoding": lambda c: dict(
        inputs=_inputs(c, size=32),
        top_inputs=dataclasses.replace(c.top_inputs, size=32),
        criteria=_few(c.criteria),
        seeds=(0, 1),
        param_size=16,
        steps=4,
        top_steps=2,
        check_steps=2,
    ),
    "decoding_sweep": lambda c: dict(
        inputs=_inputs(c, size=32), sparsities=(50.0, 98.0), criteria=_few(c.criteria), param_size=16, steps=4, check_steps=2
    ),
    "local_linearity": lambda c: dict(
        inputs=_inputs(c, n_images=1, size=32), criteria=_few(c.criteria), sparsities=(50.0,), grey_levels=(1.0,), directions=2
    ),
}


def toy_config(name: str) -> Any:
    paper = experiments.get_config(name, "paper")
    return dataclasses.replace(paper, **TOY[name](paper))


def test_every_experiment_has_a_toy_size():
    assert set(TOY) == set(experiments.EXPERIMENTS)


@pytest.mark.parametrize("name", sorted(experiments.EXPERIMENTS))
def test_paper_profile_runs_at_toy_size(name: str, paper_inputs):
    if name == "sanity_efficientnet":
        pytest.importorskip("efficientnet_lite_pytorch")  # the optional extra `efficientnet`
    paper, toy = experiments.get_config(name, "paper"), toy_config(name)
    expected = {r.key for r in requirements.needs_of(paper)}
    assert {r.key for r in requirements.needs_of(toy)} == expected  # the paper's models and data kept
    paper_inputs.touched.clear()
    arrays, _ = experiments.run(name, toy, "cpu", progress=False)
    # what the run loaded and read is what the preflight check derives from the configuration
    assert paper_inputs.touched == expected
    CHECKS[name](arrays, toy)


# ---- what each experiment's arrays must satisfy --------------------------------------------------


def _val_names(names: np.ndarray) -> set[str]:
    return {str(n) for n in names}


def _toy_val_files() -> set[str]:
    return {f"{wnid}/ILSVRC2012_val_{n:08d}.JPEG" for wnid, numbers in VAL_FILES.items() for n in numbers}


def _probabilities(p: np.ndarray) -> None:
    assert np.isfinite(p).all() and (p > 0).all() and (p <= 1).all()


def _maps(maps: np.ndarray) -> None:
    """Reduced, normalized maps: finite, in [-1, 1], each with peak |value| 1 (or all zero)."""
    flat = np.abs(maps.astype(np.float64)).reshape(-1, maps.shape[-2] * maps.shape[-1])
    assert np.isfinite(flat).all()
    peaks = flat.max(1)
    assert np.all((np.abs(peaks - 1) < 1e-3) | (peaks == 0)), peaks


def _check_paths(a: dict[str, np.ndarray], config: Any) -> None:
    n, crit = len(a["names"]), [c.label for c in config.criteria]
    levels = sorted(set(config.overlap_sparsities) | set(config.sweep_sparsities))
    overlap = [levels.index(v) for v in config.overlap_sparsities]
    assert _val_names(a["names"]) <= _toy_val_files() and len(set(a["names"])) == n == config.inputs.n_images
    assert list(a["criteria"]) == crit and list(a["levels"]) == levels
    # VGG16: 13 convolutional and 2 fully connected ReLUs; at 32 px the last conv site is 512 x 2 x 2
    assert len(a["sites"]) == 15 and a["site_sizes"][12] == 512 * 2 * 2 and a["site_sizes"][-1] == 4096
    shape = (n, len(crit), len(levels))
    for key in ("realized", "output_change", "dead_share"):
        assert a[key].shape == shape, key
    _probabilities(a["probability"])
    assert ((a["base_sparsity"] > 0) & (a["base_sparsity"] < 1)).all()
    # sparsities honoured, to one neuron (in percent of all): the paper's rule removes every score <=
    # the percentile (ties go too), so never fewer than requested; Greedy removes an exact count;
    # Random removes floor(p % of each site); the authors' Greedy loop ignores the request (its
    # rounds set the sparsity)
    realized, wanted = a["realized"].astype(np.float64), np.array(levels)[None, :]
    one = 100 / a["site_sizes"].sum()
    for c, label in enumerate(crit):
        if label == "Random":
            assert ((wanted - realized[:, c] >= -1e-4) & (wanted - realized[:, c] < one * len(a["sites"]))).all()
        elif label == "Greedy":
            np.testing.assert_allclose(realized[:, c], np.broadcast_to(wanted, realized[:, c].shape), atol=one + 1e-4)
        elif label != "Greedy (original code)":
            assert (realized[:, c] >= wanted - one - 1e-4).all(), label
    # the scores above the zero-score share have no ties: NeuronMCT meets the overlap levels exactly
    np.testing.assert_allclose(
        realized[:, crit.index("NeuronMCT")][:, overlap],
        np.broadcast_to(config.overlap_sparsities, (n, len(overlap))),
        atol=one + 1e-4,
    )
    change = a["output_change"]
    assert np.isfinite(change).all() and (change >= 0).all()
    # sparsity 0 removes only neurons of score 0 (the paper's <= rule): the output does not move
    if 0.0 in levels:
        assert np.abs(change[:, crit.index("NeuronMCT"), levels.index(0.0)]).max() < 1e-5
    # the kept share per site, weighted by the sites' sizes, is the realized sparsity's complement
    kept = (a["kept_site"] * a["site_sizes"]).sum(-1) / a["site_sizes"].sum()
    np.testing.assert_allclose(kept, 1 - realized[:, :, overlap] / 100, atol=1e-5)
    empty = realized >= 100  # a path without neurons has no dead share
    assert np.isnan(a["dead_share"][empty]).all()
    assert ((a["dead_share"][~empty] >= 0) & (a["dead_share"][~empty] <= 1)).all()
    jac = a["jaccard"]
    assert jac.shape == (n, len(overlap), len(crit), len(crit))
    np.testing.assert_array_equal(jac, jac.transpose(0, 1, 3, 2))
    finite = jac[np.isfinite(jac)]
    assert ((finite >= 0) & (finite <= 1 + 1e-6)).all()
    nonempty = ~empty[:, :, overlap]  # (n, crit, overlap)
    diagonal = np.diagonal(jac, axis1=2, axis2=3)  # (n, overlap, crit)
    np.testing.assert_allclose(diagonal.transpose(0, 2, 1)[nonempty], 1.0)
    dgr = [c for c, criterion in enumerate(config.criteria) if criterion.method == "dgr"]
    kept_prediction = a["dgr_kept_prediction"]
    assert np.isin(kept_prediction[:, dgr], (0.0, 1.0)).all()
    assert np.isnan(np.delete(kept_prediction, dgr, axis=1)).all()


def _check_dgr_retries(a: dict[str, np.ndarray], config: Any) -> None:
    assert {"DGR(init=r)", "DGR(init=r) (original code)"} <= set(a["criteria"])  # both retry rules
    _check_paths(a, config)


def _check_maps_vs_sparsity(a: dict[str, np.ndarray], config: Any) -> None:
    assert list(a["names"]) == [sorted(_toy_val_files())[int(config.inputs.images[0])]]  # the validation index
    assert list(a["sparsities"]) == list(config.sparsities) == [0.0, 70.0, 80.0, 85.0, 90.0, 95.0, 99.0]
    assert a["maps"].shape == (1, 2, 7, 32, 32)
    _maps(a["maps"])
    _maps(a["gradients"])
    # sparsity 0 is the full network: its PathwayGrad is the plain gradient
    for m in range(2):
        np.testing.assert_allclose(a["maps"][0, m, 0], a["gradients"][0], atol=1e-5)
    assert (a["realized"] >= np.array(config.sparsities) - 1e-3).all()
    np.testing.assert_allclose(a["realized"][:, :, 1:], np.broadcast_to(config.sparsities[1:], (1, 2, 6)), atol=0.01)
    assert np.abs(a["output_change"][:, :, 0]).max() < 1e-5 and (a["output_change"] >= 0).all()
    _probabilities(a["probability"])


def _check_qualitative(a: dict[str, np.ndarray], config: Any) -> None:
    n = config.inputs.n_images
    assert list(a["models"]) == ["vgg16", "resnet50"] and list(a["sparsities"]) == [90.0, 75.0]
    assert a["maps"].shape == (n, 2, len(config.methods), 32, 32) and a["maps"].dtype == np.float16
    _maps(a["maps"])
    _probabilities(a["probability"])
    assert ((a["predicted"] >= 0) & (a["predicted"] < 1000)).all()
    assert _val_names(a["names"]) <= _toy_val_files() and len(set(a["names"])) == n
    files = sorted(_toy_val_files())
    for s, (model, images) in enumerate(config.model_images):  # each model on its own images
        assert list(a["setting_names"][:, s]) == [files[int(i)] for i in images], model


def _check_sanity(a: dict[str, np.ndarray], config: Any) -> None:
    n, methods = len(a["names"]), len(config.methods)
    measured = [s for s in a["stages"][1:]]
    assert a["stages"][0] == "original" and list(measured) == list(config.measure_at)
    assert list(a["independent_stages"]) == list(config.independent)
    assert list(a["metrics"]) == ["spearman_signed", "spearman_abs", "ssim", "hog_pearson"]
    assert a["cascading"].shape == (n, 1 + len(measured), methods, 4)
    assert a["independent"].shape == (n, len(config.independent), methods, 4)
    for key in ("cascading", "independent"):
        finite = a[key][np.isfinite(a[key])]
        assert ((finite >= -1 - 1e-5) & (finite <= 1 + 1e-5)).all()
    # the trained maps compared with themselves (NaN only where a map is constant)
    original = a["cascading"][:, 0]
    np.testing.assert_allclose(original[np.isfinite(original)], 1.0, atol=1e-5)
    assert np.isfinite(original).mean() > 0.5
    assert (a["stage_predicted"][:, 0] == a["predicted"]).all()
    # examples: the configured stages that were measured, in the cascade's order
    assert list(a["example_stages"]) == [s for s in config.example_stages if s in a["stages"]]
    assert a["example_maps"].shape == (
        min(config.example_images, n),
        len(a["example_stages"]),
        methods,
        *(config.inputs.size,) * 2,
    )
    _maps(a["example_maps"])
    _probabilities(a["probability"])


def _check_sanity_paper(a: dict[str, np.ndarray], config: Any) -> None:
    assert config.explained_class == "randomized" and config.hog_cell == 16 and config.inputs.model == "resnet50"
    assert _val_names(a["names"]) <= _toy_val_files()
    _check_sanity(a, config)


def _check_lerf(a: dict[str, np.ndarray], config: Any) -> None:
    n = len(a["names"])
    assert list(a["methods"]) == list(config.methods) and list(a["removals"]) == ["/".join(r) for r in config.removals]
    assert a["curves"].shape == (n, len(config.methods), 2, len(config.removals), len(config.percents))
    assert a["tie_share"].shape == a["tie_spread"].shape == (n, len(config.methods), 2, len(config.removals))
    # the absolute fractional change of the explained class's probability
    assert np.isfinite(a["curves"]).all() and (a["curves"] >= 0).all()
    _probabilities(a["probability"])
    assert a["constant_maps"].shape == (n, len(config.methods))


def _check_lerf_paper(a: dict[str, np.ndarray], config: Any) -> None:
    assert config.inputs.model == "resnet50" and config.pathway_sparsity == 75.0
    assert _val_names(a["names"]) <= _toy_val_files() and len(a["names"]) == config.inputs.n_images
    _check_lerf(a, config)


def _check_roar(a: dict[str, np.ndarray], config: Any, mask: bool = False) -> None:
    methods, modes, fills, percents = len(config.methods), len(config.modes), len(config.fills), len(config.percents)
    train, test = 5 * CIFAR_PER_BATCH, CIFAR_PER_BATCH
    assert int(a["train_images"]) == train and int(a["test_images"]) == test
    assert list(a["fills"]) == list(config.fills)
    assert a["accuracy"].shape == (methods, modes, fills, percents, len(config.seeds))
    accuracy = np.concatenate([a["accuracy"].ravel(), a["baseline"], [a["base_accuracy"], a["check_accuracy"]]])
    assert ((accuracy >= 0) & (accuracy <= 1)).all()
    np.testing.assert_allclose(accuracy * test, np.round(accuracy * test), atol=1e-9)  # shares of 8 images
    check = tuple(config.check)
    mean = list(config.fills).index("mean")  # the check run's fill
    index = (
        config.methods.index(check[0]),
        config.modes.index(check[1]),
        mean,
        config.percents.index(check[2]),
        config.seeds.index(check[3]),
    )
    assert a["accuracy"][index] == a["check_accuracy"]
    assert a["base_logits"].shape == a["check_logits"].shape == (test, 10) and np.isfinite(a["check_logits"]).all()
    assert len(str(a["check_data"][0])) == 64  # a SHA-256
    # (methods, modes, fills, percents, examples, 3, 32, 32); the mean fill's (or the mask's) removed pixels are 0
    assert a["examples"].shape == (methods, modes, fills, percents, 4, 3, 32, 32)
    examples = a["examples"][:, :, mean]
    removed = (examples == 0).all(4)
    for p, percent in enumerate(config.percents):  # exactly the share asked for, in every mode
        np.testing.assert_array_equal(removed[:, :, p].sum((-1, -2)), round(percent / 100 * 32 * 32))
    if mask:  # the removal's shape alone: 1 kept, 0 removed, the same in every channel
        assert np.isin(examples, (0.0, 1.0)).all() and (examples.min(4) == examples.max(4)).all()
    else:  # the mean fill (0 after standardizing) where removed, the image elsewhere
        original = np.broadcast_to(a["example_images"], examples.shape)
        kept = np.broadcast_to(~removed[:, :, :, :, None], examples.shape)
        np.testing.assert_array_equal(examples[kept], original[kept])


def _check_decoding(a: dict[str, np.ndarray], config: Any) -> None:
    paths = list(config.paths)
    assert list(a["paths"]) == paths and list(a["sparsities"]) == [98.0]
    assert str(a["names"][0]).endswith("ILSVRC2012_val_00048339.JPEG")
    assert str(a["top_image"]).endswith("ILSVRC2012_val_00048265.JPEG")
    images = a["images"].astype(np.float32)
    assert images.shape == (1, len(paths), len(config.seeds), config.param_size, config.param_size, 3)
    assert ((images >= 0) & (images <= 1)).all()
    assert a["top_images"].shape[1:] == (128, 128, 3) and len(a["top_images"]) == len(a["top_channels"])
    assert (a["top_channels"] >= 0).all() and (a["top_channels"] < 512).all()  # VGG16's last conv channels
    for key in ("prob_full", "photo_prob_own"):
        assert ((a[key] >= 0) & (a[key] <= 1)).all(), key
    assert 0 < float(a["photo_probability"]) <= 1
    realized = a["realized"][0]
    assert realized[paths.index("Original network")] == 0
    for label in ("NeuronIntGrad", "NeuronMCT", "DGR(init=r)"):
        assert realized[paths.index(label)] >= 98.0 - 1e-3, label
    assert abs(realized[paths.index("Greedy")] - 98.0) < 0.01
    # the full network through "its own path" is the photo's own output
    assert a["photo_logit_own"][0, 0] == pytest.approx(float(a["photo_logit"]), rel=1e-5)
    assert float(a["check_realized"]) == pytest.approx(realized[paths.index(config.check_path)])
    assert a["check_image"].shape == (config.param_size, config.param_size, 3)
    for key in ("cosine", "ssim"):
        np.testing.assert_allclose(np.diagonal(a[key][0]), 1.0, atol=1e-5)


def _check_decoding_sweep(a: dict[str, np.ndarray], config: Any) -> None:
    paths, levels = list(config.paths), list(config.sparsities)
    assert list(a["paths"]) == paths and list(a["sparsities"]) == levels and list(a["names"]) == ["coffee", "grace_hopper"]
    assert a["images"].shape == (2, len(levels), len(paths), config.param_size, config.param_size, 3)
    for key in ("prob_full", "prob_own", "photo_prob_path", "box_share", "gradcam_share", "concentration"):
        values = a[key][np.isfinite(a[key])]
        assert ((values >= 0) & (values <= 1)).all(), key
    realized = a["realized"]
    assert (realized[:, :, paths.index("Original network")] == 0).all()
    for label in ("NeuronIntGrad", "NeuronMCT", "Random"):
        assert (realized[:, :, paths.index(label)] >= np.array(levels) - 1.0).all(), label


def _check_local_linearity(a: dict[str, np.ndarray], config: Any) -> None:
    labels = [c.label for c in config.criteria]
    assert list(a["criteria"]) == labels and len(a["names"]) == 1 and _val_names(a["names"]) <= _toy_val_files()
    assert a["radius"].shape == (1, len(labels), 1, 2) and a["relative_error"].shape == (1, len(labels), 1, 1, 2)
    assert (a["radius_full"] > 0).all() and np.isfinite(a["radius_full"]).all()  # VGG16's ReLUs change state somewhere
    assert np.isfinite(a["relative_error_full"]).all() and (a["relative_error_full"] >= 0).all()
    assert ((a["flip_share"] >= 0) & (a["flip_share"] <= 1)).all()
    assert (a["realized"] >= 50.0 - 1.0).all()


def _check_map_explorer(a: dict[str, np.ndarray], config: Any) -> None:
    files = sorted(_toy_val_files())
    assert list(a["names"]) == [files[int(i)] for i in config.inputs.images]  # the validation indices
    assert list(a["methods"]) == ["NeuronMCT", "NeuronIntGrad", "Random"] and list(a["sparsities"]) == [70.0, 99.0]
    assert a["maps"].shape == (2, 3, 2, 32, 32) and a["gradients"].shape == (2, 32, 32)
    _maps(a["maps"].astype(np.float32))
    _maps(a["gradients"].astype(np.float32))
    assert (a["realized"] >= np.array([70.0, 99.0]) - 1.0).all()
    assert ((a["output_change"] >= 0) & (a["output_change"] <= 1 + 1e-6)).all()


CHECKS: dict[str, Callable[[dict[str, np.ndarray], Any], None]] = {
    "paths": _check_paths,
    "dgr_retries": _check_dgr_retries,
    "dgr_budget": _check_paths,  # the paper profile's paths already run DGR at 1000 iterations
    "maps_vs_sparsity": _check_maps_vs_sparsity,
    "map_explorer": _check_map_explorer,
    "qualitative": _check_qualitative,
    "sanity": _check_sanity_paper,
    "sanity_own_class": _check_sanity_paper,
    "sanity_efficientnet": _check_sanity,
    "lerf": _check_lerf_paper,
    "lerf_digits": _check_lerf,
    "roar": _check_roar,
    "roar_mask": lambda a, config: _check_roar(a, config, mask=True),
    "decoding": _check_decoding,
    "decoding_sweep": _check_decoding_sweep,
    "local_linearity": _check_local_linearity,
}


def test_the_paper_stage_names_are_stages_of_the_models():
    """The toy runs measure a few stages: every stage the paper configurations name must exist (an
    unknown example stage would be dropped silently)."""
    from pathlib_pw.sanity import randomization_stages

    for name in ("sanity", "sanity_own_class", "sanity_efficientnet"):
        config = experiments.get_config(name, "paper")
        if config.inputs.model == "efficientnet_lite0":
            pytest.importorskip("efficientnet_lite_pytorch")
        stages = {label for label, _ in randomization_stages(models.load_model(config.inputs.model, pretrained=False))}
        named = set(config.independent) | set(config.measure_at or ()) | (set(config.example_stages) - {"original"})
        assert named <= stages, (name, named - stages)


# ---- the preflight check ------------------------------------------------------------------------------

ALL = sorted(experiments.EXPERIMENTS)


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub (TORCH_HOME) and neither folder variable: what a fresh machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(data.IMAGENET_VAL_ENV, raising=False)
    monkeypatch.delenv(cifar10.CIFAR10_ENV, raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def _packaged_missing() -> set[str]:
    """The models whose weights come from optional packages (the extras) and are not installed."""
    return {f"weights:{m}" for m in ("mobilenet_v2", "efficientnet_lite0") if models.weights_file(m) is None}


def test_check_lists_everything_missing_once(bare: Path):
    with pytest.raises(FileNotFoundError) as caught:
        requirements.check(ALL, "paper")
    message = str(caught.value)
    absent = {r.key: r for r in requirements.missing(ALL, "paper")}
    packaged = _packaged_missing() & {"weights:efficientnet_lite0"}  # the paper profile's one packaged model
    assert set(absent) == {"weights:vgg16", "weights:resnet50", "imagenet_val", "cifar10"} | packaged
    for name, users in (
        (
            "vgg16",
            {
                "paths",
                "dgr_retries",
                "dgr_budget",
                "maps_vs_sparsity",
                "map_explorer",
                "qualitative",
                "decoding",
                "decoding_sweep",
                "local_linearity",
            },
        ),
        ("resnet50", {"qualitative", "sanity", "sanity_own_class", "lerf"}),
    ):
        file = models.weights_file_name(name)
        assert str(bare / file) in message  # the file name in the hub's checkpoint directory
        assert set(absent[f"weights:{name}"].experiments) == users
    assert message.count("VGG16 ImageNet weights") == message.count("ResNet50 ImageNet weights") == 1
    assert message.count("ImageNet validation images") == message.count("CIFAR-10 python batches") == 1
    for hint in (data.IMAGENET_VAL_ENV, "--imagenet-val DIR", cifar10.CIFAR10_ENV, "--cifar10 DIR"):
        assert hint in message
    assert set(absent["cifar10"].experiments) == {"roar", "roar_mask"}
    assert "lerf_digits" not in {e for r in absent.values() for e in r.experiments}  # trained in-process, bundled data


def test_check_of_one_experiment_names_only_its_needs(bare: Path):
    with pytest.raises(FileNotFoundError, match="CIFAR-10") as caught:
        requirements.check(["roar"], "paper")
    assert "ImageNet" not in str(caught.value) and "weights" not in str(caught.value)
    requirements.check(["lerf_digits"], "paper")


def test_the_book_profile_needs_nothing_beyond_the_installed_packages(bare: Path):
    packaged = _packaged_missing()
    if not packaged:
        requirements.check(ALL, "book")
    else:  # without the optional extras, exactly those weights are named
        assert {r.key for r in requirements.missing(ALL, "book")} == packaged


def test_nothing_is_missing_once_the_inputs_are_there_and_nothing_is_opened(bare: Path, tmp_path, monkeypatch):
    bare.mkdir(parents=True)
    for name in ("vgg16", "resnet50"):
        (bare / models.weights_file_name(name)).write_bytes(b"")  # empty: never hashed or loaded
    val = tmp_path / "val" / CLASSES[0]
    val.mkdir(parents=True)
    (val / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")  # not an image: never opened
    batches = tmp_path / "cifar" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        (batches / name).write_bytes(b"")  # never unpickled
    monkeypatch.setenv(data.IMAGENET_VAL_ENV, str(tmp_path / "val"))
    monkeypatch.setenv(cifar10.CIFAR10_ENV, str(tmp_path / "cifar"))  # the folder above the batches
    for module, attr in ((torch, "load"), (models, "_sha256"), (Image, "open"), (cifar10, "read_batch")):
        monkeypatch.setattr(module, attr, lambda *a, **k: pytest.fail("the preflight check must not read inputs"))
    monkeypatch.setattr(models, "_seeded", lambda *a, **k: pytest.fail("the preflight check must not build models"))
    assert {r.key for r in requirements.missing(ALL, "paper")} == _packaged_missing() & {"weights:efficientnet_lite0"}
    needed = {r.key: r for r in requirements.needed(ALL, "paper")}
    assert {"weights:vgg16", "weights:resnet50", "imagenet_val", "cifar10"} <= set(needed)
    assert all(needed[k].present for k in ("weights:vgg16", "weights:resnet50", "imagenet_val", "cifar10"))
    if not _packaged_missing():
        requirements.check(ALL, "paper")


def test_an_unusable_folder_says_why(bare: Path, tmp_path, monkeypatch):
    monkeypatch.setenv(data.IMAGENET_VAL_ENV, str(tmp_path / "nowhere"))
    (tmp_path / "cifar").mkdir()
    monkeypatch.setenv(cifar10.CIFAR10_ENV, str(tmp_path / "cifar"))
    absent = {r.key: r for r in requirements.missing(["lerf", "roar"], "paper")}
    assert "is not a folder" in absent["imagenet_val"].where
    assert "lacks" in absent["cifar10"].where and str(tmp_path / "cifar") in absent["cifar10"].where


def test_needs_follow_the_configuration(tmp_path):
    lerf = experiments.get_config("lerf", "paper")
    on_vgg = dataclasses.replace(lerf, inputs=dataclasses.replace(lerf.inputs, model="vgg16"))
    assert {r.key for r in requirements.needs_of(on_vgg)} == {"weights:vgg16", "imagenet_val"}
    on_photos = dataclasses.replace(lerf, inputs=dataclasses.replace(lerf.inputs, source="photos"))
    assert {r.key for r in requirements.needs_of(on_photos)} == {"weights:resnet50"}
    # qualitative: the models of its settings, not only inputs.model
    qualitative = experiments.get_config("qualitative", "paper")
    assert {r.key for r in requirements.needs_of(qualitative)} >= {"weights:vgg16", "weights:resnet50"}
    # ROAR with its own data_folder: that folder, not the environment's
    roar = dataclasses.replace(experiments.get_config("roar", "paper"), data_folder=str(tmp_path))
    (need,) = requirements.needs_of(roar)
    assert need.key == f"cifar10:{tmp_path}" and str(tmp_path) in need.where and not need.present
    # the embedded default (digits) needs nothing
    assert requirements.needs_of(experiments.get_config("roar", "book")) == []
    with pytest.raises(ValueError, match="profile"):
        requirements.check(ALL, "huge")
