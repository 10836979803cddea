"""PathwayGrad maps of one photo at increasing sparsity (book/methods.md, the paper's experiments: "PathwayGrad vs sparsity").

Sparsity 0 is the full network, whose PathwayGrad is the plain input gradient.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from pathlib_pw import decisions
from pathlib_pw.attribution.baselines import saliency
from pathlib_pw.attribution.pathway_grad import pathway_grad
from pathlib_pw.criteria import extract_pathways
from pathlib_pw.criteria.spec import Method
from pathlib_pw.metrics import output_change
from pathlib_pw.runner.inputs import Inputs, pinned_options
from pathlib_pw.runner.verification import MAPS, PROBABILITIES


@dataclasses.dataclass(frozen=True)
class Config:
    """The maps-vs-sparsity configuration: PathwayGrad of each criterion at each sparsity, for one photo.

    The fields enter the cache's configuration hash (:func:`pathlib_pw.cache.config_hash`; one made
    with ``added_field`` only away from its default): changing a default invalidates the cached results.
    """

    inputs: Inputs = Inputs(images=("chelsea",))
    """The photo
    (the paper profile: the authors' ImageNet validation image ``AUTHORS_IMAGE`` on VGG16)."""
    methods: tuple[tuple[str, Method], ...] = (("NeuronMCT", "neuron_mct"), ("NeuronIntGrad", "neuron_intgrad"))
    """The pathways, (label, pathway criterion) pairs, one row of PathwayGrad maps each."""
    sparsities: tuple[float, ...] = (70.0, 80.0, 85.0, 90.0, 95.0, 98.0)
    """Percent of the neurons removed (0-100), one map each; the plain input gradient is stored beside
    them (the paper profile: the authors' ``AUTHORS_SPARSITIES``, 0 to 99 %)."""


AUTHORS_IMAGE = "16305"  # the ImageNet validation index of the authors' maps-vs-sparsity figure
AUTHORS_SPARSITIES = (0.0, 70.0, 80.0, 85.0, 90.0, 95.0, 99.0)


def config(profile: str) -> Config:
    if profile == "smoke":
        return Config(inputs=Inputs(images=("chelsea",), size=64), sparsities=(70.0, 90.0))
    if profile == "book":
        return Config()
    # the authors' figure: ImageNet validation image 16305, sparsities 0 (the plain gradient) to 99 %
    return Config(
        inputs=Inputs(model="vgg16", source="imagenet_val", images=(AUTHORS_IMAGE,)),
        sparsities=AUTHORS_SPARSITIES,
    )


PER_IMAGE = {"names", "gradients", "maps", "realized", "output_change", "predicted", "probability"}
TOLERANCES = {"gradients": MAPS, "maps": MAPS, "output_change": PROBABILITIES}


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    model = config.inputs.load_model(device)
    x, names = config.inputs.load_images()
    x = x.to(device)
    with torch.no_grad():
        logits = model(x)
    shape = (len(x), len(config.methods), len(config.sparsities))
    maps = np.zeros(shape + tuple(x.shape[2:]), dtype=np.float32)
    realized, change = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
    for m, (label, method) in enumerate(config.methods):
        first = config.inputs.offset  # images are numbered across windows (verify recomputes each alone)
        with decisions.images(range(first, first + len(x))), decisions.scope(label):
            paths = extract_pathways(model, x, method, list(config.sparsities), **pinned_options(method, config.inputs))
        for j, path in enumerate(paths):
            maps[:, m, j] = pathway_grad(model, x, path).cpu().numpy()
            realized[:, m, j] = path.sparsity.cpu().numpy()
            change[:, m, j] = output_change(model, x, path).cpu().numpy()
    return {
        "names": np.array(names),
        "gradients": saliency(model, x, "gradients").cpu().numpy(),
        "maps": maps,
        "realized": realized,
        "output_change": change,
        "predicted": logits.argmax(1).cpu().numpy(),
        "probability": logits.softmax(1).amax(1).cpu().numpy(),
        "methods": np.array([label for label, _ in config.methods]),
        "sparsities": np.array(config.sparsities, dtype=np.float32),
    }
