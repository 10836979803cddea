"""Every photo's PathwayGrad maps per criterion across the swept sparsities: what the book's map
explorer (book/explorer.md, :mod:`pathlib_pw.explorer`) lets the reader scrub.

Sparsity 0 is the full network, whose PathwayGrad is the plain input gradient (stored once). The
baselines the explorer shows beside these maps are the ``qualitative`` experiment's, for the same
photos, model and explained class: they are not computed twice.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm import tqdm

from pathlib_pw import decisions
from pathlib_pw.attribution.baselines import saliency
from pathlib_pw.attribution.pathway_grad import pathway_grad
from pathlib_pw.criteria import extract_pathways, spec
from pathlib_pw.criteria.seeds import per_image_seeds
from pathlib_pw.criteria.spec import Method
from pathlib_pw.experiments.maps_vs_sparsity import AUTHORS_SPARSITIES
from pathlib_pw.experiments.qualitative import AUTHORS_IMAGES
from pathlib_pw.metrics import output_change
from pathlib_pw.runner.inputs import ALL_PHOTOS, PAPER_ALPHA_CHUNK, Inputs, pinned_options
from pathlib_pw.runner.verification import HALF_MAPS, PROBABILITIES


@dataclasses.dataclass(frozen=True)
class Config:
    """The map explorer's configuration: PathwayGrad of each criterion at each sparsity, for each photo.

    The fields enter the cache's configuration hash (:func:`pathlib_pw.cache.config_hash`; one made
    with ``added_field`` only away from its default): changing a default invalidates the cached results.
    """

    inputs: Inputs = Inputs(images=ALL_PHOTOS)
    """The photos (in the book, all nine bundled photos)."""
    methods: tuple[tuple[str, Method], ...] = (
        ("NeuronMCT", "neuron_mct"),
        ("NeuronIntGrad", "neuron_intgrad"),
        ("Random", "random"),
    )
    """The pathways, (label, pathway criterion) pairs, the criteria whose extraction costs few passes
    per image. Greedy's 99 rounds (12.5 s per photo measured on the book's 2-core CPU) and DGR's 300
    iterations would each add as much as all three of these take to the cache check of one photo."""
    sparsities: tuple[float, ...] = (50.0, 70.0, 80.0, 90.0, 95.0, 98.0, 99.0)
    """Percent of the neurons removed (0-100), one map each; sparsity 0, the plain input gradient, is
    stored beside them."""
    seed: int = 0
    """Of Random's draws, one per image (:func:`~pathlib_pw.criteria.seeds.per_image_seeds`, as in ``paths``)."""


def config(profile: str) -> Config:
    if profile == "smoke":
        return Config(inputs=Inputs(images=ALL_PHOTOS[:2], size=64), sparsities=(70.0, 90.0))
    if profile == "book":
        return Config()
    # the authors' VGG16 on the validation images of their qualitative figure (the qualitative
    # experiment's paper profile, whose baselines the explorer shows beside these maps), at their sparsities
    return Config(
        inputs=Inputs(
            model="vgg16",
            source="imagenet_val",
            images=AUTHORS_IMAGES["vgg16"],
            n_images=len(AUTHORS_IMAGES["vgg16"]),
            alpha_chunk=PAPER_ALPHA_CHUNK,
        ),
        sparsities=tuple(s for s in AUTHORS_SPARSITIES if s > 0),
    )


PER_IMAGE = {"names", "gradients", "maps", "realized", "output_change", "predicted", "probability"}
TOLERANCES = {"gradients": HALF_MAPS, "maps": HALF_MAPS, "output_change": PROBABILITIES}


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    model = config.inputs.load_model(device)
    x, names = config.inputs.load_images()
    shape = (len(x), len(config.methods), len(config.sparsities))
    maps = np.zeros(shape + tuple(x.shape[2:]), dtype=np.float16)
    gradients = np.zeros((len(x),) + tuple(x.shape[2:]), dtype=np.float16)
    realized, change = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
    predicted, probability = np.zeros(len(x), dtype=np.int64), np.zeros(len(x), dtype=np.float32)
    levels = list(config.sparsities)
    # one image at a time: batching changes float sums and so which neurons sit at the threshold;
    # per-image maps are what `verify` recomputes for one image alone
    for i in tqdm(range(len(x)), disable=not progress, desc="map_explorer"):
        image = config.inputs.offset + i  # images are numbered across windows (verify recomputes each alone)
        xi = x[i : i + 1].to(device)
        with torch.no_grad():
            probs = model(xi).softmax(1)
        target = probs.argmax(1)
        predicted[i], probability[i] = int(target), float(probs.amax(1))
        gradients[i] = saliency(model, xi, "gradients", target=target)[0].cpu().numpy()
        for m, (label, method) in enumerate(config.methods):
            options = pinned_options(method, config.inputs)
            if spec(method).seeded:
                options["seed"] = per_image_seeds(config.seed, 1, first=image)
            with decisions.images([image]), decisions.scope(label):
                paths = extract_pathways(model, xi, method, levels, target=target, **options)
            for j, path in enumerate(paths):
                maps[i, m, j] = pathway_grad(model, xi, path, target=target)[0].cpu().numpy()
                realized[i, m, j] = float(path.sparsity[0])
                change[i, m, j] = float(output_change(model, xi, path, target=target)[0])
    return {
        "names": np.array(names),
        "gradients": gradients,
        "maps": maps,
        "realized": realized,
        "output_change": change,
        "predicted": predicted,
        "probability": probability,
        "methods": np.array([label for label, _ in config.methods]),
        "sparsities": np.array(config.sparsities, dtype=np.float32),
    }
