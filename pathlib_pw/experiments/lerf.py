"""LeRF and MoRF (book/methods.md: the paper's experiments): remove the 1..10 % least (LeRF) or most (MoRF) relevant pixels of
each image by a map, without retraining, and measure the absolute fractional change of the explained
class's softmax probability. A good map changes the output little under LeRF and much under MoRF.

Beside the authors' setting (mean fill, maps ranked in float32 here) two more removals: ROAD's noisy
linear imputation (Rong et al., ICML 2022), which hides the removal mask's shape from the model, and
the authors' own maps as stored by their code (8-bit PNGs: 256 ranking levels, many ties).

Ties among equal map values are broken at random (:mod:`pathlib_pw.removal`: the curve is the mean over
``tie_seeds`` tie orders), so no position in the image is favoured; two removals repeat the mean fill
with the authors' index rule ("first": ties to the top of the image) and its mirror ("last"), to show
what the tie rule alone does. The random control draws a new uniform map for every image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch
from tqdm import tqdm

from pathlib_pw import decisions
from pathlib_pw.attribution.controls import random_ranking
from pathlib_pw.attribution.maps import AttributionMethod
from pathlib_pw.attribution.registry import ACCUMULATED, PATHWAY_GRAD, attribute, attribution_method, pathway_grad_method
from pathlib_pw.imagenet import IMAGENET_STD
from pathlib_pw.removal import TIE_SEEDS, TIES, Order, area_under_curve, pixel_removal_curve, quantize_maps, tie_share
from pathlib_pw.runner.contract import Profile
from pathlib_pw.runner.inputs import PAPER_ALPHA_CHUNK, Inputs, pinned_options
from pathlib_pw.runner.verification import Tolerance
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
# (fill, map precision, ties): "mean" is the authors' fill, "road" ROAD's imputation; "uint8" ranks the
# maps the authors' code ranked (quantize_maps), "float32" ours; ties "random" (the mean over tie
# orders), or the index rule "first" (the authors' sort, and this book's before issue 24) and "last"
REMOVALS: tuple[tuple[str, str, str], ...] = (
    ("mean", "float32", "random"),
    ("road", "float32", "random"),
    ("mean", "uint8", "random"),
    ("mean", "float32", "first"),
    ("mean", "float32", "last"),
    ("mean", "uint8", "first"),
)
FILLS = ("mean", "road")
RANDOM_CONTROL_SEEDS = 1_000_000  # offset of the random control's generator seeds from ROAD's (seed + image)
PRECISIONS = ("float32", "uint8")
# ROAD's noise (0.01 on [0, 1] pixels) in standardized units, per channel
IMAGENET_ROAD_NOISE: tuple[float, ...] = tuple(0.01 / s for s in IMAGENET_STD)


@dataclasses.dataclass(frozen=True)
class Config:
    """The LeRF/MoRF configuration: every method's removal curves, per order and removal rule.

    The fields enter the cache's configuration hash (:func:`pathlib_pw.cache.config_hash`; one made
    with ``added_field`` only away from its default): changing a default invalidates the cached results.
    """

    inputs: Inputs = Inputs()
    """The model and images
    (the paper profile: 2,000 ImageNet validation images on ResNet50; :mod:`.lerf_digits`: the digits test split on the digits
    CNN)."""
    methods: tuple[str, ...] = METHODS
    """The attribution methods by registered name
    (:func:`method_for`): ``pathway_grad/<criterion>`` is PathwayGrad at ``pathway_sparsity`` (``...@90``: at 90 %),
    ``random`` the random control (:func:`random_maps`); the book profile adds ``pathway_grad/neuron_mct@90``."""
    pathway_sparsity: float = 50.0
    """PathwayGrad's pathway sparsity in percent of the neurons removed
    (0-100): the book's MobileNetV2 sparsity of the qualitative chapter (NeuronMCT's output change reaches the authors' 15 %
    there); the authors' ResNet50 setting (the paper profile) is 75, the digits CNN's 95."""
    percents: tuple[int, ...] = tuple(range(1, 11))
    """Percent of the pixels removed
    (0-100, strictly increasing): one point of each curve per value."""
    orders: tuple[Order, ...] = ("least", "most")
    """Which pixels go first, ``"least"`` relevant (LeRF) or ``"most"`` relevant (MoRF)."""
    removals: tuple[tuple[str, str, str], ...] = REMOVALS
    """The removal rules, (fill, map precision, ties) triples, one curve each. Fill ``"mean"`` (the authors') or ``"road"``
    (ROAD's imputation); precision ``"float32"`` (ours) or ``"uint8"`` (the authors' stored maps,
    :func:`pathlib_pw.removal.quantize_maps`); ties ``"random"`` (the mean over ``tie_seeds`` tie orders), ``"first"`` (the
    authors' index rule) or ``"last"`` (``REMOVALS``)."""
    road_noise: tuple[float, ...] = IMAGENET_ROAD_NOISE
    """ROAD's noise per channel in standardized units (0.01 on [0, 1] pixels)."""
    seed: int = 0
    """ROAD's noise for image i uses ``seed + i``; the random control's map, see :func:`random_maps`."""
    batch: int = 1
    """Images per pass
    (``verify`` recomputes the first image alone: another batch split; the digits use 64)."""
    tie_seeds: int = TIE_SEEDS
    """Random tie orders per curve (an int >= 1)."""

    def __post_init__(self) -> None:
        if not self.percents or any(not 0 < p <= 100 for p in self.percents) or list(self.percents) != sorted(set(self.percents)):
            raise ValueError(f"percents must be strictly increasing, each in (0, 100], got {self.percents!r}")
        if isinstance(self.tie_seeds, bool) or not isinstance(self.tie_seeds, int) or self.tie_seeds < 1:
            raise ValueError(f"tie_seeds must be an int >= 1 (random tie orders per curve), got {self.tie_seeds!r}")
        for removal in self.removals:
            if len(removal) != 3 or removal[0] not in FILLS or removal[1] not in PRECISIONS or removal[2] not in TIES:
                raise ValueError(
                    f"removals must hold (fill, precision, ties) with fill in {list(FILLS)}, precision in "
                    f"{list(PRECISIONS)} and ties in {list(TIES)}, got {removal!r}"
                )


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
# Only the first image's decisions are recorded: every removal step of every map is a ranking decision
# (about 4,000 per image, 3.3 MB of records per photo; 539 digits images in lerf_digits), so the other
# images are recomputed with their decisions made afresh (unrecorded_tolerances).
RECORD_EVERY_IMAGE = False
PER_IMAGE = {"names", "curves", "tie_spread", "tie_share", "constant_maps", "predicted", "probability"}
TOLERANCES = {
    "curves": Tolerance(
        rtol=1e-3,
        atol=2e-3,
        reason="probability changes with the recorded pixels removed: float sums of the forward pass, and maps "
        "through pathways in which rounding can flip a ReLU",
    ),
    "tie_spread": Tolerance(
        rtol=1e-3,
        atol=2e-2,
        reason="the spread over tie orders of areas under curves whose points may move by the curves' tolerance "
        "(10 points, 1 % apart)",
    ),
    "tie_share": Tolerance(
        atol=0.01,
        reason="pixels tied at the cut: rounding may move a near-tied pixel across it (exact zeros stay zero)",
    ),
    "probability": Tolerance(rtol=1e-4, atol=1e-6, reason="float sums of the forward pass"),
}


# How far an image recomputed without records moves: the largest change measured on photos 1-8 without
# SIMD on one thread (scripts/measure_unrecorded.py), for the maps that no pathway decides, then for
# PathwayGrad's, and the allowance: about three times that. Made afresh, a near-tied pixel's rank moves
# every later removal step, and PathwayGrad's pathway itself is decided again (its map then differs
# where a flipped ReLU sends the gradient): on such an image PathwayGrad's curves are not checked,
# only their digests.
UNRECORDED: dict[str, tuple[float, float]] = {  # array: (allowance, PathwayGrad's allowance)
    "curves": (0.2, 3.0),  # measured 0.057 (InputIntGrad), 1.37
    "tie_spread": (0.1, 1.5),  # 0.025, 0.64
    "tie_share": (5e-3, 0.5),  # 1.0e-3, 0.13
}


def unrecorded_tolerances(
    cached: Mapping[str, np.ndarray], config: Config, table: Mapping[str, tuple[float, float]] = UNRECORDED
) -> dict[str, np.ndarray]:
    """Elementwise allowances for an image recomputed without its decision records (``table``, by
    array (B, method, ...): PathwayGrad's for the PathwayGrad methods)."""
    pathway = np.array([m.startswith(PATHWAY_GRAD) for m in config.methods])
    out = {}
    for name, (plain, own) in table.items():
        shape = np.shape(cached[name])
        out[name] = np.broadcast_to(np.where(pathway.reshape((1, -1) + (1,) * (len(shape) - 2)), own, plain), shape)
    return out


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


def random_maps(images: list[int], size: tuple[int, int], seed: int) -> torch.Tensor:
    """The random control: a uniform (H, W) map per image, drawn from a generator seeded with
    ``RANDOM_CONTROL_SEEDS + seed + image`` (the image's index in the dataset), so each image gets its
    own ranking and the draw does not depend on the batch (nor share a stream with ROAD's noise)."""
    base = RANDOM_CONTROL_SEEDS + seed
    return torch.stack([torch.rand(size, generator=torch.Generator().manual_seed(base + i)) for i in images])


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    x, names = config.inputs.load_images()
    model = config.inputs.load_model(device)
    methods = [method_for(name, config.pathway_sparsity, config.seed, config.inputs) for name in config.methods]
    levels = list(config.percents)
    percents = np.array(config.percents, dtype=np.float64)
    shape = (len(x), len(methods), len(config.orders), len(config.removals))
    curves = np.zeros((*shape, len(levels)), dtype=np.float32)
    # the spread of each image's AUC over tie orders, and the share of the pixels removed at the
    # largest fraction that the tie rule chose
    spread, ties = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
    predicted, probability = np.zeros(len(x), dtype=np.int64), np.zeros(len(x), dtype=np.float32)
    # a constant map ranks pixels by the tie rule alone (Grad-CAM's map is all zero where its ReLU cuts all)
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
                if name == "random":
                    maps = random_maps(images, (xi.shape[2], xi.shape[3]), config.seed).to(device)
                else:
                    with decisions.scope(name):
                        maps = attribute(model, xi, method, target=target)
                flat = maps.flatten(1)
                constant[i, m] = (flat.amax(1) == flat.amin(1)).cpu().numpy()
                for r, (fill, precision, rule) in enumerate(config.removals):
                    ranked = quantize_maps(maps) if precision == "uint8" else maps
                    for o, order in enumerate(config.orders):
                        with decisions.scope(f"{name}/{order}/{fill}/{precision}/{rule}"):
                            each = pixel_removal_curve(
                                model,
                                xi,
                                ranked,
                                levels,
                                order=order,
                                fill="road" if fill == "road" else None,
                                target=target,
                                ties=rule,  # type: ignore[arg-type]
                                tie_seeds=config.tie_seeds,
                                per_tie_order=True,
                                seed=[config.seed + j for j in images],
                                noise=config.road_noise,
                            ).double()
                        curves[i, m, o, r] = each.mean(1).numpy()
                        areas = area_under_curve(percents, each)
                        spread[i, m, o, r] = (areas.std(1) if areas.shape[1] > 1 else torch.zeros(len(xi))).numpy()
                        ties[i, m, o, r] = tie_share(ranked, levels[-1], order=order).numpy()
    return {
        "names": np.array(names),
        "curves": curves,
        "tie_spread": spread,
        "tie_share": ties,
        "constant_maps": constant,
        "predicted": predicted,
        "probability": probability,
        "methods": np.array(config.methods),
        "orders": np.array(config.orders),
        "removals": np.array(["/".join(r) for r in config.removals]),
        "percents": np.array(config.percents, dtype=np.int64),
        "tie_seeds": np.array(config.tie_seeds),
    }
