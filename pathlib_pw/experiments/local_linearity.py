"""Are contribution pathways locally linear around the input? (book/methods.md, the claims, the claim behind
PathwayGrad; the paper's theorem and radius are not available to us, so the claim is measured.)

For every photo, the full network and, at each sparsity, the paths of the contribution criteria and
of size-matched controls (pruners, a random path, activity-aware controls that drop the dead neurons
first, as the contribution criteria do for free) are held fixed while the input moves along random
directions. Measured in float64 through the masked network (:mod:`pathlib_pw.linearity`): the exact
distance to the first state change of a kept rectifier, the first-order error of the target logit
and the cosine between the gradients at x and x + r d, and the share of kept neurons that changed
state. Radii are L2 norms in pixel units of the 0-1 image, set by ``grey_levels``: the root mean
square change per pixel value, in 8-bit grey levels (1 = one quantization step on average).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import torch
from tqdm import tqdm

from pathlib_pw import decisions
from pathlib_pw.criteria import extract_pathways, spec
from pathlib_pw.criteria.seeds import per_image_seeds
from pathlib_pw.experiments.paths import OPERATING_POINT, Criterion, paper_criteria
from pathlib_pw.imagenet import PixelInput
from pathlib_pw.linearity import first_order_error, in_dtype, linear_region_radius, random_directions, state_flip_share
from pathlib_pw.metrics import path_response
from pathlib_pw.pathway import Pathway
from pathlib_pw.runner.contract import first_images
from pathlib_pw.runner.inputs import Inputs, pinned_options
from pathlib_pw.runner.verification import PROBABILITIES, Tolerance

FULL = "Full network"
CONTRIBUTION = ("NeuronMCT", "NeuronIntGrad")
# size-matched controls: a random path, the activity-aware controls of the sweep, and the pruners
CONTROLS = ("Random", "Random (dead first)", "Activation (dead first)", "Greedy", "DGR(init=r)")


def linearity_criteria(dgr_iterations: int = 300, dgr_retries: int = 2) -> tuple[Criterion, ...]:
    """The contribution criteria and the controls, as the paths experiment defines them."""
    known = {c.label: c for c in paper_criteria(dgr_iterations=dgr_iterations, dgr_retries=dgr_retries)}
    return tuple(known[label] for label in (*CONTRIBUTION, *CONTROLS))


@dataclasses.dataclass(frozen=True)
class Config:
    """The local linearity configuration: the paths held fixed, their sparsities, and the moves of the input.

    The fields enter the cache's configuration hash (:func:`pathlib_pw.cache.config_hash`; one made
    with ``added_field`` only away from its default): changing a default invalidates the cached results.
    """

    inputs: Inputs = Inputs()
    """The model and images
    (the paper profile: 1,000 ImageNet validation images on VGG16)."""
    criteria: tuple[Criterion, ...] = linearity_criteria()
    """The paths held fixed, the contribution criteria and the size-matched controls (:func:`linearity_criteria`; DGR with 300
    iterations and at most 2 retries)."""
    sparsities: tuple[float, ...] = (OPERATING_POINT, 70.0, 90.0)
    """Percent of the neurons removed (0-100, each in (0, 100)), one path per criterion each; the first
    is the operating point, 50 %."""
    grey_levels: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    """The radii of the moves, as the root mean square change per pixel value in 8-bit grey levels (1 = one
    quantization step on average; positive); :meth:`radii` turns them into L2 norms."""
    directions: int = 6
    """Random directions per image (>= 1)."""
    seed: int = 0
    """Of the directions (the same for every photo and path) and of the paths' random draws."""
    checked: tuple[str, ...] = ("NeuronMCT", "Random (dead first)")
    """The criteria (labels among ``criteria``) that ``verify`` recomputes."""
    check_only: bool = False
    """Measure only ``checked`` at the first sparsity (what ``verify`` recomputes)."""

    def __post_init__(self) -> None:
        labels = [c.label for c in self.criteria]
        if not self.sparsities or any(not 0 < s < 100 for s in self.sparsities):
            raise ValueError(f"sparsities must be a non-empty tuple of percents in (0, 100), got {self.sparsities}")
        if not self.grey_levels or any(not (g > 0 and math.isfinite(g)) for g in self.grey_levels):
            raise ValueError(f"grey_levels must be a non-empty tuple of positive numbers, got {self.grey_levels}")
        if self.directions < 1:
            raise ValueError(f"directions must be >= 1, got {self.directions}")
        unknown = [c for c in self.checked if c not in labels]
        if unknown or not self.checked:
            raise ValueError(f"checked must name criteria among {labels}, got {list(self.checked)}")

    def radii(self, size: int) -> np.ndarray:
        """The L2 radii in pixel units of the 0-1 image at ``size`` px (3 colours)."""
        return np.array(self.grey_levels) / 255.0 * math.sqrt(3 * size * size)

    def measured(self) -> tuple[tuple[Criterion, ...], tuple[float, ...]]:
        if self.check_only:
            return tuple(c for c in self.criteria if c.label in self.checked), self.sparsities[:1]
        return self.criteria, self.sparsities


def config(profile: str) -> Config:
    if profile == "smoke":
        return Config(
            inputs=Inputs(images=("chelsea", "coffee"), size=64),
            criteria=tuple(c for c in linearity_criteria() if c.label in ("NeuronMCT", "Random", "Random (dead first)")),
            sparsities=(OPERATING_POINT,),
            grey_levels=(0.1, 1.0, 10.0),
            directions=4,
        )
    if profile == "book":
        return Config()
    return Config(inputs=Inputs(model="vgg16", source="imagenet_val", images=(), n_images=1000))


SHARD_BY_IMAGE = True
# per image, per path: radius (..., K); errors, cosines, flips (..., R, K); norms, changes (...)
MEASURES = ("radius", "relative_error", "gradient_cosine", "flip_share", "gradient_norm")
PER_IMAGE = {
    "names",
    "predicted",
    "probability",
    "input_norm",
    "realized",
    "output_change",
    *MEASURES,
    *(f"{m}_full" for m in MEASURES),
}
FLOAT64 = Tolerance(
    rtol=1e-6,
    atol=1e-12,
    reason="float64 through the restored masks; a state change within 1e-12 of a boundary would move it",
)
# a kept neuron within rounding of a state boundary at one of the points: a few neurons of a path
FLIPS = dataclasses.replace(FLOAT64, atol=1e-5, reason="shares of kept neurons (>= 6e5 at 90 %): a few neurons at a boundary")
TOLERANCES = {
    **{m: FLOAT64 for m in MEASURES},
    **{f"{m}_full": FLOAT64 for m in MEASURES},
    "flip_share": FLIPS,
    "flip_share_full": FLIPS,
    "output_change": PROBABILITIES,
}


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    model = config.inputs.load_model(device)
    x, names = config.inputs.load_images()
    criteria, sparsities = config.measured()
    size = int(x.shape[-1])
    radii = torch.tensor(config.radii(size), dtype=torch.float64)
    directions = random_directions(tuple(x.shape[1:]), config.directions, seed=config.seed).to(device)
    pixels_model = PixelInput(model).to(device)
    shape = (len(x), len(criteria), len(sparsities))
    rows: dict[str, np.ndarray] = {
        "radius": np.zeros((*shape, config.directions)),
        **{m: np.zeros((*shape, len(radii), config.directions)) for m in ("relative_error", "gradient_cosine", "flip_share")},
        "gradient_norm": np.zeros(shape),
        "realized": np.zeros(shape),
        "output_change": np.zeros(shape),
        "radius_full": np.zeros((len(x), config.directions)),
        **{
            f"{m}_full": np.zeros((len(x), len(radii), config.directions))
            for m in ("relative_error", "gradient_cosine", "flip_share")
        },
        "gradient_norm_full": np.zeros(len(x)),
        "input_norm": np.zeros(len(x)),
    }
    with torch.no_grad():
        logits = model(x.to(device))
    predicted = logits.argmax(1)
    bar = tqdm(total=len(x) * (1 + len(criteria)), desc="local linearity", disable=not progress)
    for i in range(len(x)):
        image = config.inputs.offset + i  # images are numbered across the chunks of a sharded run
        xi = x[i : i + 1].to(device)
        pixels = PixelInput.pixels(xi).double()
        rows["input_norm"][i] = float(pixels.norm())
        target = predicted[i : i + 1]
        with in_dtype(pixels_model, torch.float64):
            measures = _measure(pixels_model, pixels, directions, radii.to(device), None, target)
        for m, value in measures.items():
            rows[f"{m}_full"][i] = value
        bar.update(1)
        for c, criterion in enumerate(criteria):
            options = {**pinned_options(criterion.method, config.inputs), **dict(criterion.options)}
            if spec(criterion.method).seeded:
                options["seed"] = per_image_seeds(config.seed, 1, first=image)
            # only the checked criteria's decisions are recorded for ``verify``: Greedy's 98 rounds
            # would add megabytes of records that no check reads
            key = image if criterion.label in config.checked else f"{image}:unchecked"
            with decisions.images([key]), decisions.scope(criterion.label):
                paths = extract_pathways(model, xi, criterion.method, list(sparsities), variant=criterion.variant, **options)
            for j, path in enumerate(paths):
                rows["realized"][i, c, j] = float(path.sparsity[0])
                rows["output_change"][i, c, j] = float(path_response(model, xi, path, target=target).change[0])
                with in_dtype(pixels_model, torch.float64):
                    measures = _measure(pixels_model, pixels, directions, radii.to(device), path, target)
                for m, value in measures.items():
                    rows[m][i, c, j] = value
            bar.update(1)
    bar.close()
    out: dict[str, np.ndarray] = {k: v.astype(np.float64) for k, v in rows.items()}
    out["names"] = np.array(names)
    out["predicted"] = predicted.cpu().numpy()
    out["probability"] = logits.softmax(1).amax(1).cpu().numpy()
    out["criteria"] = np.array([c.label for c in criteria])
    out["sparsities"] = np.array(sparsities, dtype=np.float64)
    out["grey_levels"] = np.array(config.grey_levels, dtype=np.float64)
    out["radii"] = radii.numpy()
    return out


def _measure(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    directions: torch.Tensor,
    radii: torch.Tensor,
    path: Pathway | None,
    target: torch.Tensor,
) -> dict[str, np.ndarray]:
    """Every measure of one image through ``path`` (None: the full network), as numpy arrays without
    the image axis."""
    error = first_order_error(model, pixels, directions, radii, path=path, target=target)
    return {
        "radius": linear_region_radius(model, pixels, directions, path=path)[0].cpu().numpy(),
        "relative_error": error["relative"][0].cpu().numpy(),
        "gradient_cosine": error["gradient_cosine"][0].cpu().numpy(),
        "flip_share": state_flip_share(model, pixels, directions, radii, path=path)[0].cpu().numpy(),
        "gradient_norm": error["gradient_norm"][0].cpu().numpy(),
    }


def verify_subset(config: Config, n: int) -> Config:
    """The first ``n`` images, the ``checked`` criteria at the first sparsity (their decisions replayed)."""
    return dataclasses.replace(first_images(config, n), check_only=True)


def cached_part(cached: Mapping[str, np.ndarray], part: Config) -> dict[str, np.ndarray]:
    n = len(part.inputs.images[part.inputs.offset :][: part.inputs.first])
    out = {k: (v[:n] if k in PER_IMAGE else v) for k, v in cached.items()}
    if not part.check_only:
        return out
    labels = [str(c) for c in cached["criteria"]]
    rows = [labels.index(c.label) for c in part.criteria if c.label in part.checked]
    per_path = ("realized", "output_change", *MEASURES)
    out.update({k: out[k][:, rows][:, :, :1] for k in per_path})
    out["criteria"] = cached["criteria"][rows]
    out["sparsities"] = cached["sparsities"][:1]
    return out
