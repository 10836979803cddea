"""LeRF and MoRF (PAPER.md section 5): remove the 1..10 % least (LeRF) or most (MoRF) relevant pixels of
each image by a map, without retraining, and measure the absolute fractional change of the explained
class's softmax probability. A good map changes the output little under LeRF and much under MoRF.

Beside the authors' setting (mean fill, maps ranked in float32 here) two more removals: ROAD's noisy
linear imputation (Rong et al., ICML 2022), which hides the removal mask's shape from the model, and
the authors' own maps as stored by their code (8-bit PNGs: 256 ranking levels, many ties).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm import tqdm

from pathlib_pw import decisions
from pathlib_pw.attribution_methods import (
    ACCUMULATED,
    PATHWAY_GRAD,
    AttributionMethod,
    attribute,
    attribution_method,
    pathway_grad_method,
    random_ranking,
)
from pathlib_pw.experiments.contract import Profile
from pathlib_pw.experiments.inputs import PAPER_ALPHA_CHUNK, Inputs, pinned_options
from pathlib_pw.experiments.verification import Tolerance
from pathlib_pw.imagenet import IMAGENET_STD
from pathlib_pw.removal import Order, Ties, pixel_removal_curve, quantize_maps
from pathlib_pw.sites import evaluating

METHODS: tuple[str, ...] = (
    "gradients",
    "guided_backprop",
    "gradcam",
    "input_mct",
    "input_intgrad",
    PATHWAY_GRAD + "neuron_mct",
    PATHWAY_GRAD + "neuron_intgrad",
    PATHWAY_GRAD + ACCUMULATED,
    "random",
    "sobel",
)
# (fill, map precision): "mean" is the authors' fill, "road" ROAD's imputation; "uint8" ranks the
# maps the authors' code ranked (quantize_maps), "float32" ours
REMOVALS: tuple[tuple[str, str], ...] = (("mean", "float32"), ("road", "float32"), ("mean", "uint8"))
# The cached results were recorded with the index tie rule (removal.py: "first"), which the issue-24
# re-record replaces with random tie orders; pinned here so that the caches verify until then.
CACHED_TIES: Ties = "first"
# ROAD's noise (0.01 on [0, 1] pixels) in standardized units, per channel
IMAGENET_ROAD_NOISE: tuple[float, ...] = tuple(0.01 / s for s in IMAGENET_STD)


@dataclasses.dataclass(frozen=True)
class Config:
    inputs: Inputs = Inputs()
    methods: tuple[str, ...] = METHODS
    # the book's MobileNetV2 sparsity of the qualitative chapter (NeuronMCT's output change reaches
    # the authors' 15 % there); the authors' ResNet50 setting is 75
    pathway_sparsity: float = 50.0
    percents: tuple[int, ...] = tuple(range(1, 11))
    orders: tuple[Order, ...] = ("least", "most")
    removals: tuple[tuple[str, str], ...] = REMOVALS
    road_noise: tuple[float, ...] = IMAGENET_ROAD_NOISE
    seed: int = 0  # the random control's ranking; ROAD's noise for image i uses seed + i
    batch: int = 1  # images per pass (`verify` recomputes the first image alone: another batch split)


def config(profile: Profile) -> Config:
    if profile == "smoke":
        return Config(inputs=Inputs(images=("chelsea", "coffee"), size=64))
    if profile == "book":
        # and at the authors' VGG16 sparsity: the sparser the path, the more concentrated the map
        return Config(methods=METHODS + (PATHWAY_GRAD + "neuron_mct@90",))
    return Config(
        inputs=Inputs(model="resnet50", source="imagenet_val", images=(), n_images=2000, alpha_chunk=PAPER_ALPHA_CHUNK),
        pathway_sparsity=75.0,
    )


# every image is computed alone: the runner may split the images among processes (.sharding)
SHARD_BY_IMAGE = True
PER_IMAGE = {"names", "curves", "constant_maps", "predicted", "probability"}
TOLERANCES = {
    "curves": Tolerance(
        rtol=1e-3,
        atol=2e-3,
        reason="probability changes with the recorded pixels removed: float sums of the forward pass, and maps "
        "through pathways in which rounding can flip a ReLU",
    ),
    "probability": Tolerance(rtol=1e-4, atol=1e-6, reason="float sums of the forward pass"),
}


def method_for(name: str, pathway_sparsity: float, seed: int = 0, inputs: Inputs | None = None) -> AttributionMethod:
    """The attribution method ``name``: PathwayGrad at ``pathway_sparsity`` (``name@90``: at 90 %),
    the random control drawn with ``seed``, else the registered method."""
    if name.startswith(PATHWAY_GRAD):
        criterion, _, level = name[len(PATHWAY_GRAD) :].partition("@")
        sparsity = float(level) if level else pathway_sparsity
        if criterion == ACCUMULATED:
            return pathway_grad_method(
                "neuron_intgrad", sparsity, variant="original_code", **pinned_options("neuron_intgrad", inputs)
            )
        return pathway_grad_method(criterion, sparsity, **pinned_options(criterion, inputs))
    if name == "random":
        return random_ranking(seed)
    return attribution_method(name)


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    x, names = config.inputs.load_images()
    model = config.inputs.load_model(device)
    methods = [method_for(name, config.pathway_sparsity, config.seed, config.inputs) for name in config.methods]
    fractions = [p / 100 for p in config.percents]
    shape = (len(x), len(methods), len(config.orders), len(config.removals), len(fractions))
    curves = np.zeros(shape, dtype=np.float32)
    predicted, probability = np.zeros(len(x), dtype=np.int64), np.zeros(len(x), dtype=np.float32)
    # a constant map ranks pixels by their index alone (Grad-CAM's map is all zero where its ReLU cuts all)
    constant = np.zeros((len(x), len(methods)), dtype=bool)
    for start in tqdm(range(0, len(x), config.batch), disable=not progress, desc="lerf"):
        i = slice(start, start + config.batch)
        xi = x[i].to(device)
        with torch.no_grad(), evaluating(model):
            probs = model(xi).softmax(1)
        target = probs.argmax(1)
        predicted[i], probability[i] = target.cpu().numpy(), probs.amax(1).cpu().numpy()
        images = list(range(config.inputs.offset + start, config.inputs.offset + start + len(xi)))
        with decisions.images(images):
            for m, (name, method) in enumerate(zip(config.methods, methods)):
                with decisions.scope(name):
                    maps = attribute(method, model, xi, target)
                flat = maps.flatten(1)
                constant[i, m] = (flat.amax(1) == flat.amin(1)).cpu().numpy()
                for r, (fill, precision) in enumerate(config.removals):
                    ranked = quantize_maps(maps) if precision == "uint8" else maps
                    for o, order in enumerate(config.orders):
                        with decisions.scope(f"{name}/{order}/{fill}/{precision}"):
                            curves[i, m, o, r] = pixel_removal_curve(
                                model,
                                xi,
                                ranked,
                                fractions,
                                order,
                                fill="road" if fill == "road" else None,
                                target=target,
                                ties=CACHED_TIES,
                                seed=[config.seed + j for j in images],
                                noise=config.road_noise,
                            ).numpy()
    return {
        "names": np.array(names),
        "curves": curves,
        "constant_maps": constant,
        "predicted": predicted,
        "probability": probability,
        "methods": np.array(config.methods),
        "orders": np.array(config.orders),
        "removals": np.array(["/".join(r) for r in config.removals]),
        "percents": np.array(config.percents, dtype=np.int64),
    }
