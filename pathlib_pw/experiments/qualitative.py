"""The seven maps side by side (book/methods.md, the paper's experiments: "Qualitative comparison").

Gradients, Guided Backprop, Grad-CAM, InputMCT, InputIntGrad and PathwayGrad through the NeuronMCT
and NeuronIntGrad pathways, for the same images and the same explained class (the prediction).
"""

from __future__ import annotations

import dataclasses
from typing import cast

import numpy as np
import torch
from tqdm import tqdm

from pathlib_pw import decisions
from pathlib_pw.attribution.pathway_grad import pathway_grad
from pathlib_pw.criteria import CRITERIA, extract_pathways
from pathlib_pw.criteria.spec import Method
from pathlib_pw.experiments.attribution import PAPER_METHODS, attribution_maps
from pathlib_pw.runner.cache import added_field
from pathlib_pw.runner.inputs import ALL_PHOTOS, PAPER_ALPHA_CHUNK, Inputs, pinned_options
from pathlib_pw.runner.verification import HALF_MAPS


@dataclasses.dataclass(frozen=True)
class Config:
    """The qualitative comparison's configuration: the maps of ``methods`` for each (model, sparsity) setting.

    The fields enter the cache's configuration hash (:func:`pathlib_pw.cache.config_hash`; one made
    with ``added_field`` only away from its default): changing a default invalidates the cached results.
    """

    inputs: Inputs = Inputs()
    """The images; the models are the settings' (``inputs.model`` is the first setting's)."""
    settings: tuple[tuple[str, float], ...] = (("mobilenet_v2", 50.0), ("mobilenet_v2", 90.0))
    """(model, pathway sparsity in percent) pairs, one column of maps each. The book's 50 % is where
    NeuronMCT's output change reaches the authors' 15 % on MobileNetV2 (sparsity_sweep chapter); 90 % is
    the authors' VGG16 setting (the paper profile: VGG16 at 90 %, ResNet50 at 75 %)."""
    methods: tuple[str, ...] = tuple(PAPER_METHODS)
    """The maps drawn, by their labels in ``attribution.PAPER_METHODS``
    (default: all seven)."""
    model_images: tuple[tuple[str, tuple[str, ...]], ...] = added_field(())
    """Per model, its own images
    (as many as ``inputs`` names): (model, images) pairs; empty: every model explains ``inputs``' images. The authors used
    fixed ImageNet validation indices, a different nine for VGG16 and ResNet50 (``AUTHORS_IMAGES``, the paper profile)."""
    input_intgrad_variant: str = added_field("intended")
    """Which alphas InputIntGrad takes, ``"intended"`` 50 right-Riemann points or ``"original_code"`` the authors' 51 from 0 (the
    paper profile)."""


# The authors' fixed validation indices, per model (their QualitativeAnalysis_pyfile.py at commit
# d59b16d, "VGG16 APPENDIX" and "RESNET APPENDIX"): indices into torchvision's ImageNet val split,
# whose order is that of pathlib_pw.data's validation indices (class folders by WordNet id, then
# file names)
AUTHORS_IMAGES: dict[str, tuple[str, ...]] = {
    "vgg16": ("39834", "40639", "3158", "8105", "2094", "23684", "12659", "23147", "4581"),
    "resnet50": ("5054", "36203", "43518", "20813", "7054", "15574", "15598", "41442", "9678"),
}


def config(profile: str) -> Config:
    if profile == "smoke":
        return Config(inputs=Inputs(images=ALL_PHOTOS[:2], size=64))
    if profile == "book":
        return Config()
    return Config(
        inputs=Inputs(
            model="vgg16", source="imagenet_val", images=AUTHORS_IMAGES["vgg16"], n_images=9, alpha_chunk=PAPER_ALPHA_CHUNK
        ),
        settings=(("vgg16", 90.0), ("resnet50", 75.0)),
        model_images=tuple(AUTHORS_IMAGES.items()),
        input_intgrad_variant="original_code",
    )


PER_IMAGE = {"names", "setting_names", "maps", "predicted", "probability"}
TOLERANCES = {"maps": HALF_MAPS}


def _images(config: Config, model_name: str) -> tuple[torch.Tensor, list[str]]:
    own = dict(config.model_images).get(model_name)
    if own is None:
        return config.inputs.load_images()
    return dataclasses.replace(config.inputs, images=own).load_images()


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    x, names = config.inputs.load_images()
    counts = {model: len(images) for model, images in config.model_images}
    named = len(config.inputs.images) or config.inputs.n_images  # all of them, also when a window is run
    if any(n != named for n in counts.values()):
        raise ValueError(f"model_images must name as many images per model as inputs ({named}), got {counts}")
    setting_names = np.array([[""] * len(config.settings)] * len(x), dtype=object)
    shape = (len(x), len(config.settings))
    maps = np.zeros(shape + (len(config.methods),) + tuple(x.shape[2:]), dtype=np.float16)
    predicted, probability = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.float32)
    methods = [PAPER_METHODS[label] for label in config.methods]
    pathway_methods = [m for m in methods if m in CRITERIA]
    for model_name in dict.fromkeys(name for name, _ in config.settings):
        model = config.inputs.load_model(device, model_name)
        columns = [s for s, (name, _) in enumerate(config.settings) if name == model_name]
        levels = [config.settings[s][1] for s in columns]
        x, model_names = _images(config, model_name)
        setting_names[:, columns] = np.array(model_names, dtype=object)[:, None]
        # one image at a time: batching changes float sums and so which neurons sit at the threshold;
        # per-image maps are what `verify` recomputes for the first image alone
        for i in tqdm(range(len(x)), disable=not progress, desc=f"qualitative {model_name}"):
            xi = x[i : i + 1].to(device)
            with torch.no_grad():
                probs = model(xi).softmax(1)
            target = probs.argmax(1)
            baselines = [m for m in methods if m not in pathway_methods]
            options = {"input_intgrad": {"variant": config.input_intgrad_variant}} if "input_intgrad" in baselines else {}
            current = attribution_maps(model, xi, baselines, target=target, options=options)
            # each criterion scores once for all of this model's sparsities
            paths = {}
            for c in pathway_methods:
                with decisions.images([config.inputs.offset + i]), decisions.scope(f"{model_name}/{c}"):
                    paths[c] = extract_pathways(
                        model, xi, cast(Method, c), levels, target=target, **pinned_options(c, config.inputs)
                    )
            for j, s in enumerate(columns):
                current.update({c: pathway_grad(model, xi, paths[c][j], target=target) for c in pathway_methods})
                for m, method in enumerate(methods):
                    maps[i, s, m] = current[method][0].cpu().numpy()
                predicted[i, s] = int(target)
                probability[i, s] = float(probs.amax(1))
    extra = {"setting_names": setting_names.astype(str)} if config.model_images else {}
    return {
        **extra,
        "names": np.array(names),
        "maps": maps,
        "predicted": predicted,
        "probability": probability,
        "methods": np.array(config.methods),
        "models": np.array([name for name, _ in config.settings]),
        "sparsities": np.array([sparsity for _, sparsity in config.settings], dtype=np.float32),
    }
