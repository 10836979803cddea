"""Model randomization sanity checks (book/methods.md, the paper's experiments: "Sanity checks"; Adebayo et al. 2018).

Cascading: the stages are re-initialized from the top down, cumulatively, and after each one every
method's map is compared with the trained model's map. ``explained_class="trained"`` (our default)
explains the trained model's prediction at every stage (the maps of the same logit);
``"randomized"`` explains the randomized model's own prediction at each stage, as the authors'
script did (it takes the argmax after each randomization).
Independent (an extension the authors did not run): one stage at a time, the rest trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping

import numpy as np
import torch
from tqdm import tqdm

from pathlib_pw import decisions
from pathlib_pw.attribution.baselines import SALIENCY_METHODS
from pathlib_pw.experiments.attribution import (
    MAP_TIMES,
    PAPER_METHODS,
    attribution_maps_at,
    pathway_criteria,
)
from pathlib_pw.experiments.paths import OPERATING_POINT  # the sparsity sweep's, beside the authors' 70 %
from pathlib_pw.runner.cache import added_field
from pathlib_pw.runner.contract import first_images, image_count
from pathlib_pw.runner.inputs import PAPER_ALPHA_CHUNK, Inputs, pinned_options
from pathlib_pw.runner.verification import HALF_MAPS, SIMILARITIES
from pathlib_pw.sanity import (
    SIMILARITY_METRICS,
    randomization_stages,
    randomized,
    similarity,
)

# the authors' script computed its "InputMCT" from the NeuronIntGrad PathwayGrad map: the reduced,
# normalized map times the input, reduced again (attribution.map_times_input). AUTHORS_INPUT_MCT_EXACT
# is that; AUTHORS_INPUT_MCT, a reading of it kept for comparison in `sanity_own_class`, is the
# NeuronIntGrad path's raw 3-channel gradient times the input, reduced once
# (the labels are part of the cached configurations)
AUTHORS_INPUT_MCT = "InputMCT (authors' script)"
AUTHORS_INPUT_MCT_EXACT = "InputMCT (authors' script, exact)"
METHODS: dict[str, str] = {
    **PAPER_METHODS,
    AUTHORS_INPUT_MCT: "input_x_neuron_intgrad",
    AUTHORS_INPUT_MCT_EXACT: MAP_TIMES + "neuron_intgrad",
}
BOOK_METHODS: tuple[str, ...] = (*PAPER_METHODS, AUTHORS_INPUT_MCT_EXACT)
EXPLAINED_CLASSES = ("trained", "randomized")
# the book's stages: the maps are measured after these (every stage is still randomized on the way down)
MEASURE_AT = ("classifier", "last_conv", "block_13", "block_6", "block_0", "stem")


def at_label(label: str, sparsity: float) -> str:
    """The column of a PathwayGrad method measured at one of ``Config.also_at``."""
    return f"{label} @ {sparsity:g} %"


@dataclasses.dataclass(frozen=True)
class Config:
    """The sanity checks' configuration: the cascading and independent randomizations and the compared maps.

    The fields enter the cache's configuration hash (:func:`pathlib_pw.cache.config_hash`; one made
    with ``added_field`` only away from its default): changing a default invalidates the cached results.
    """

    inputs: Inputs = Inputs(images=("chelsea", "coffee", "rocket", "flower"))
    """The model and images
    (the book profile: all nine photos; the paper profile: 1,000 ImageNet validation images on ResNet50)."""
    methods: tuple[str, ...] = BOOK_METHODS
    """The compared maps by label
    (``METHODS``): the paper's seven and the authors' script's InputMCT."""
    sparsity: float = 70.0
    """The PathwayGrad methods' pathway sparsity in percent of the neurons removed (0-100; the authors' 70)."""
    std: float = 0.1
    """Standard deviation of the normal draw that re-initializes a stage's parameters
    (:func:`pathlib_pw.sanity.randomized`)."""
    seed: int = 0
    """Of the re-initialized weights."""
    depth: int | None = None
    """Stop the cascade after the first ``depth`` measured stages
    (None: all; ``verify`` recomputes one)."""
    measure_at: tuple[str, ...] | None = None
    """Stages after which the maps are measured
    (None: every stage); the cascade still randomizes each one (the book profile: ``MEASURE_AT``, six stages)."""
    independent: tuple[str, ...] = ("classifier", "last_conv", "block_13", "block_6", "block_0", "stem")
    """Stages randomized one at a time, the rest trained
    (an extension the authors did not run; empty: none)."""
    example_stages: tuple[str, ...] = ("original", "classifier", "last_conv", "block_13", "block_6", "stem")
    """Stages whose maps are kept for the figures
    (``"original"``: the trained model)."""
    example_images: int = 2
    """The first images of the whole run whose maps are kept for the figures."""
    explained_class: str = added_field("trained")
    """Which class is explained, ``"trained"`` the trained model's prediction at every stage, ``"randomized"`` the randomized
    model's own prediction at each stage (the authors' script; the paper profile)."""
    input_intgrad_variant: str = added_field("intended")
    """Which alphas InputIntGrad takes, ``"intended"`` 50 right-Riemann points or ``"original_code"`` the authors' 51 from 0 (the
    paper profile)."""
    hog_cell: int = added_field(8)
    """HOG cell size in pixels (scikit-image's default 8; the authors' 16, the paper profile)."""
    also_at: tuple[float, ...] = added_field(())
    """Further sparsities in percent of the PathwayGrad methods
    (same paths' scores, other thresholds): their columns are labelled by :func:`at_label` (the book profile adds the
    operating point, 50 %)."""
    keep_trained_maps: bool = added_field(False)
    """Keep every photo's trained maps
    (all columns): the chance level of each method's similarity, what the maps of two unrelated photos score
    (``sanity_tables.chance_levels``)."""

    def columns(self) -> list[tuple[str, str, int]]:
        """(column label, method, index of the sparsity: 0 is ``sparsity``, k is ``also_at[k - 1]``)."""
        methods = [(label, METHODS[label]) for label in self.methods]
        out = [(label, method, 0) for label, method in methods]
        for k, level in enumerate(self.also_at, 1):
            out += [(at_label(label, level), method, k) for label, method in methods if method not in SALIENCY_METHODS]
        return out


def config(profile: str) -> Config:
    if profile == "smoke":
        return Config(
            inputs=Inputs(images=("chelsea", "coffee"), size=64),
            independent=("classifier", "stem"),
            example_images=1,
            also_at=(OPERATING_POINT,),
        )
    if profile == "book":
        # all nine photos; the maps after six stages of the cascade, at 70 % and at the operating point
        return Config(inputs=Inputs(), measure_at=MEASURE_AT, also_at=(OPERATING_POINT,))
    return Config(
        inputs=Inputs(model="resnet50", source="imagenet_val", images=(), n_images=1000, alpha_chunk=PAPER_ALPHA_CHUNK),
        methods=(*PAPER_METHODS, AUTHORS_INPUT_MCT_EXACT),
        independent=("linear", "bottleneck_15", "bottleneck_11", "bottleneck_7", "bottleneck_3", "conv1"),
        example_stages=("original", "linear", "bottleneck_15", "bottleneck_10", "bottleneck_5", "conv1"),
        explained_class="randomized",
        input_intgrad_variant="original_code",
        hog_cell=16,
    )


def verify_subset(config: Config, n: int) -> Config:
    """What ``verify`` recomputes: the first ``n`` images through the first measured cascade stage and
    the first independent one. The cached run pushed all images through the network together, the
    recomputation fewer: float sums differ, and the recorded threshold decisions
    (:mod:`pathlib_pw.decisions`) absorb that."""
    return dataclasses.replace(first_images(config, n), depth=1, independent=config.independent[:1])


# every image is computed alone: the runner may split the images among processes (.sharding)
SHARD_BY_IMAGE = True
PER_IMAGE = {"names", "predicted", "probability", "stage_predicted", "cascading", "independent", "example_maps", "trained_maps"}
TOLERANCES = {"example_maps": HALF_MAPS, "trained_maps": HALF_MAPS, "cascading": SIMILARITIES, "independent": SIMILARITIES}


def cached_part(cached: Mapping[str, np.ndarray], part: Config) -> dict[str, np.ndarray]:
    """The slices of the full cached arrays that ``run(part)`` recomputes (``part`` from :func:`subset`
    or :func:`verify_subset`)."""
    n = image_count(part)
    stages = len(cached["stages"]) if part.depth is None else 1 + part.depth
    examples = int(np.isin(cached["example_stages"], cached["stages"][:stages]).sum())
    independent = len(part.independent)
    out = {key: (value[:n] if key in PER_IMAGE else value) for key, value in cached.items()}
    out.update(
        stages=cached["stages"][:stages],
        stage_predicted=cached["stage_predicted"][:n, :stages],
        cascading=cached["cascading"][:n, :stages],
        independent_stages=cached["independent_stages"][:independent],
        independent=cached["independent"][:n, :independent],
        example_stages=cached["example_stages"][:examples],
        example_maps=cached["example_maps"][:n, :examples],
    )
    return out


def _compare(
    reference: dict[str, torch.Tensor], maps: dict[str, torch.Tensor], methods: list[str], hog_cell: int = 8
) -> np.ndarray:
    """(images, columns, metrics): each column's map against the reference's."""
    batch = len(next(iter(reference.values())))
    out = np.zeros((batch, len(methods), len(SIMILARITY_METRICS)), dtype=np.float32)
    for m, method in enumerate(methods):
        for i in range(batch):
            scores = similarity(reference[method][i], maps[method][i], hog_cell)
            out[i, m] = [scores[k] for k in SIMILARITY_METRICS]
    return out


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    if config.explained_class not in EXPLAINED_CLASSES:
        raise ValueError(f"explained_class must be one of {list(EXPLAINED_CLASSES)}, got {config.explained_class!r}")
    levels = (config.sparsity, *config.also_at)
    if len(set(levels)) != len(levels) or not all(isinstance(v, (int, float)) and 0 <= v < 100 for v in levels):
        raise ValueError(
            f"also_at must hold distinct sparsities in [0, 100) other than sparsity={config.sparsity}, got {config.also_at}"
        )
    model = config.inputs.load_model(device)
    stages = randomization_stages(model)
    labels = {label: modules for label, modules in stages}
    unknown = [s for s in config.independent + (config.measure_at or ()) if s not in labels]
    if unknown:
        raise ValueError(
            f"independent and measure_at must name stages of {config.inputs.model} ({list(labels)}); unknown: {unknown}"
        )
    measured = [label for label, _ in stages if config.measure_at is None or label in config.measure_at][: config.depth]
    cascade = stages[: [label for label, _ in stages].index(measured[-1]) + 1] if measured else []
    x, names = config.inputs.load_images()
    x = x.to(device)
    columns = config.columns()
    column_labels = [label for label, _, _ in columns]
    methods = [METHODS[label] for label in config.methods]
    options = {c: pinned_options(c, config.inputs) for c in pathway_criteria(methods)}
    if config.input_intgrad_variant != "intended" and "input_intgrad" in methods:
        options["input_intgrad"] = {"variant": config.input_intgrad_variant}
    with torch.no_grad():
        probs = model(x).softmax(1)
    target = probs.argmax(1)

    def maps_now(stage: str) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        with torch.no_grad():
            now = model(x).argmax(1)
        explained = target if config.explained_class == "trained" else now
        with decisions.images(range(config.inputs.offset, config.inputs.offset + len(x))), decisions.scope(stage):
            at = attribution_maps_at(model, x, methods, [config.sparsity, *config.also_at], explained, options)
        return {label: at[k][method] for label, method, k in columns}, now.cpu().numpy()

    bar = tqdm(total=1 + len(measured) + len(config.independent), disable=not progress, desc="sanity stages")
    trained, _ = maps_now("original")
    bar.update()
    cascade_labels = ["original"] + measured
    examples = [s for s in config.example_stages if s in cascade_labels]
    # the first `example_images` images of the whole run (a later chunk of a sharded run has none)
    n_examples = max(0, min(config.example_images - config.inputs.offset, len(x)))
    example_maps = np.zeros((n_examples, len(examples), len(column_labels)) + tuple(x.shape[2:]), dtype=np.float16)
    cascading = np.zeros((len(x), len(cascade_labels), len(column_labels), len(SIMILARITY_METRICS)), dtype=np.float32)
    stage_predicted = np.zeros((len(x), len(cascade_labels)), dtype=np.int64)
    cascading[:, 0] = _compare(trained, trained, column_labels, config.hog_cell)
    stage_predicted[:, 0] = target.cpu().numpy()

    def keep_example(label: str, maps: dict[str, torch.Tensor]) -> None:
        if label in examples:
            for m, column in enumerate(column_labels):
                example_maps[:, examples.index(label), m] = maps[column][:n_examples].cpu().numpy()

    keep_example("original", trained)
    with contextlib.ExitStack() as stack:
        for label, modules in cascade:
            stack.enter_context(randomized(model, modules, config.seed, config.std))
            if label not in measured:
                continue
            j = cascade_labels.index(label)
            maps, stage_predicted[:, j] = maps_now(f"cascading/{label}")
            cascading[:, j] = _compare(trained, maps, column_labels, config.hog_cell)
            keep_example(label, maps)
            bar.update()
    independent = np.zeros((len(x), len(config.independent), len(column_labels), len(SIMILARITY_METRICS)), dtype=np.float32)
    for j, label in enumerate(config.independent):
        with randomized(model, labels[label], config.seed, config.std):
            maps, _ = maps_now(f"independent/{label}")
        independent[:, j] = _compare(trained, maps, column_labels, config.hog_cell)
        bar.update()
    bar.close()
    kept = {}
    if config.keep_trained_maps:
        kept["trained_maps"] = np.stack([trained[c].cpu().numpy() for c in column_labels], 1).astype(np.float16)
    return {
        **kept,
        "names": np.array(names),
        "predicted": target.cpu().numpy(),
        "probability": probs.amax(1).cpu().numpy(),
        "stages": np.array(cascade_labels),
        "stage_predicted": stage_predicted,
        "cascading": cascading,
        "independent_stages": np.array(config.independent),
        "independent": independent,
        "example_stages": np.array(examples),
        "example_maps": example_maps,
        "methods": np.array(column_labels),
        "metrics": np.array(SIMILARITY_METRICS),
    }
