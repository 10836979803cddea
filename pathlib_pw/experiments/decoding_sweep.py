"""Pathway decoding measured where the paper's claim lives (book/methods.md, the paper's experiments: "Pathway decoding";
issue 25): contribution paths decode to sparse, object-shaped, class-relevant images, the pruners'
paths to dense or noisy ones.

For each photo and each sparsity from the operating point to the authors' 98 %, every path of the
decoding figure, a Random path of the same size, the active subnet and the full network (the positive
control of class relevance) are decoded as :mod:`.decoding` does (the authors' parameterization and
optimizer, one seed), and each decoding is measured:

- where it changed the image: the share of its change ``|image - start|`` (summed over colours; every
  render starts from the same seeded noise) that lies inside the photo's object, against two references: a box drawn by hand around the object the
  class names (:data:`OBJECT_BOXES`) and the full network's Grad-CAM region (pixels at half its
  maximum or more). The reference's area is the share a change spread evenly would put there;
- how concentrated the change is (the share held by its top 5 % of pixels; 0.05 when uniform);
- p(class) through its own path (what the optimization raised) and through the full network, and
  the cosine of its penultimate features to the photo's; a uniform grey image is the control that
  shows how little the last two can decide;
- on the photo: the path's probability of the class and its output change.

Decodings start from noise, not from the photo: a decoding can only change the image where the path
lets the logit see it, so a path that keeps the neurons over the object decodes onto the object,
while the full network's decoding has no reason to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pathlib_pw import decoding as dec
from pathlib_pw.attribution.baselines import saliency
from pathlib_pw.experiments.decoding import (
    ACTIVE,
    CHECK_IMAGE,
    ORIGINAL,
    check_paths,
    decoding_paths,
    penultimate,
    render_logit,
)
from pathlib_pw.experiments.paths import OPERATING_POINT, Criterion, paper_criteria
from pathlib_pw.metrics import map_concentration
from pathlib_pw.pathway import Pathway
from pathlib_pw.runner.contract import first_images
from pathlib_pw.runner.inputs import PAPER_ALPHA_CHUNK, Inputs
from pathlib_pw.runner.verification import Tolerance

# The object each photo's predicted class names, drawn by hand on the 224 px network input (the
# photo resized and centre-cropped by pathlib_pw.imagenet.preprocess): (left, top, right, bottom) in
# pixels, right and bottom exclusive. coffee -> "espresso": the cup with its coffee; grace_hopper ->
# "bow tie": the collar and tie below the chin.
OBJECT_BOXES: dict[str, tuple[int, int, int, int]] = {
    "coffee": (28, 0, 202, 168),
    "grace_hopper": (80, 150, 150, 224),
}
GRADCAM_LEVEL = 0.5  # the Grad-CAM region: pixels at this fraction of the map's maximum or more
TOP_SHARE = 0.05  # concentration: the share of the change held by this share of the pixels
RANDOM = "Random"
PATHS = (ORIGINAL, ACTIVE, "NeuronIntGrad", "NeuronMCT", "DGR(init=1)", "DGR(init=r)", "Greedy", "Greedy (original code)", RANDOM)


def sweep_criteria(dgr_iterations: int = 300, dgr_retries: int = 2, greedy_rounds: int = 98) -> tuple[Criterion, ...]:
    """The decoding figure's criteria as the paths experiment defines them (the intended Greedy with
    its ties at random), a Random path, and the active subnet."""
    wanted = ("NeuronIntGrad", "NeuronMCT", "DGR(init=1)", "DGR(init=r)", "Greedy", "Greedy (original code)", RANDOM)
    known = paper_criteria(dgr_iterations=dgr_iterations, greedy_rounds=greedy_rounds, dgr_retries=dgr_retries)
    return (Criterion(ACTIVE, "active_subnet"),) + tuple(c for c in known if c.label in wanted)


@dataclasses.dataclass(frozen=True)
class Config:
    """The decoding sweep's configuration: the decoded paths at each sparsity, and the renders' settings.

    The fields enter the cache's configuration hash (:func:`pathlib_pw.cache.config_hash`; one made
    with ``added_field`` only away from its default): changing a default invalidates the cached results.
    """

    inputs: Inputs = Inputs(images=("coffee", "grace_hopper"))
    """The photos, each with a hand-drawn object box in :data:`OBJECT_BOXES`
    (the paper profile: the same two on VGG16)."""
    sparsities: tuple[float, ...] = (OPERATING_POINT, 70.0, 85.0, 90.0, 98.0)
    """Percent of the neurons removed (0-100), from the operating point (50 %) to the authors' 98 %."""
    paths: tuple[str, ...] = PATHS
    """The decoded paths, labels of ``criteria`` or ``ORIGINAL`` (the full network)."""
    criteria: tuple[Criterion, ...] = sweep_criteria()
    """The criteria the paths come from
    (:func:`sweep_criteria`; the book profile: DGR with 300 iterations and at most 2 init=r retries, the paper profile the
    authors' 1000 and 100)."""
    seed: int = 0
    """Of the renders (every render starts from the same seeded noise)."""
    path_seed: int = 0
    """Of the random draws of the paths (Random, DGR init=r), one per image."""
    param_size: int = 128
    """Side in pixels of the optimized image (upsampled to the model's input size; the authors' 128)."""
    steps: int = 512
    """Adam steps per render (the authors' 512)."""
    lr: float = 0.05
    """Adam's learning rate (the authors')."""
    check_path: str = "NeuronMCT"
    """The path that ``verify`` recomputes, a non-chaotic criterion among ``paths``."""
    check_steps: int = 8
    """The first steps of the check path's render that ``verify`` recomputes (at most ``steps``)."""
    check_only: bool = False
    """Recompute only the check path and its first steps (what ``verify`` does)."""

    def __post_init__(self) -> None:
        check_paths(self)
        missing = [name for name in self.inputs.images if name not in OBJECT_BOXES]
        if missing:
            raise ValueError(f"inputs.images: no object box for {missing}; boxes exist for {sorted(OBJECT_BOXES)}")

    def criterion(self, label: str) -> Criterion:
        return next(c for c in self.criteria if c.label == label)


def config(profile: str) -> Config:
    if profile == "smoke":
        return Config(
            inputs=Inputs(images=("coffee", "grace_hopper"), size=64),
            sparsities=(OPERATING_POINT, 90.0),
            paths=(ORIGINAL, "NeuronIntGrad", "NeuronMCT", "DGR(init=1)", "Greedy", RANDOM),
            criteria=sweep_criteria(dgr_iterations=5, dgr_retries=1, greedy_rounds=5),
            param_size=32,
            steps=16,
        )
    if profile == "book":
        return Config()
    # the authors decoded one VGG16 image at 98 % (``decoding``); the paper profile runs this sweep on
    # VGG16 with their DGR budget, on the same two photos (the boxes are drawn on the 224 px input)
    return Config(
        inputs=Inputs(model="vgg16", images=("coffee", "grace_hopper"), alpha_chunk=PAPER_ALPHA_CHUNK),
        criteria=sweep_criteria(dgr_iterations=1000, dgr_retries=100),
    )


SHARD_BY_IMAGE = True
CHECK_KEYS = ("names", "target", "check_image", "check_logits", "check_realized")
PER_IMAGE = {
    *CHECK_KEYS,
    "photo_probability",
    "images",
    "region_box",
    "region_gradcam",
    "change",
    "box_share",
    "gradcam_share",
    "concentration",
    "logit_own",
    "prob_own",
    "prob_full",
    "photo_cosine",
    "grey_prob_full",
    "grey_cosine",
    "photo_prob_path",
    "output_change",
    "realized",
}
# The check image: coffee's NeuronMCT path at 50 %, 8 Adam steps. A path this dense passes more
# rounding on than the 90 % path of ``decoding``: 2 threads instead of 1 moved it by up to 2.7e-3 (3 %
# of the values beyond 1e-4, none beyond 5e-3), while a 1 % larger learning rate moves 13 % of the
# values by more than 5e-3 and another seed 73 %.
SWEEP_CHECK_IMAGE = dataclasses.replace(
    CHECK_IMAGE,
    atol=5e-3,
    reason="a few Adam steps from the same start through a 50 % path: rounding (threads) moved it by up to 2.7e-3",
)
TOLERANCES = {
    "check_image": SWEEP_CHECK_IMAGE,
    "check_logits": Tolerance(rtol=1e-3, atol=1e-3, reason="logits of the check image"),
}


def verify_subset(config: Config, n: int) -> Config:
    """The first ``n`` images' check path (its decisions replayed) and the first ``check_steps``
    steps of its render; the 512-step renders are chaotic and not recomputed (see :mod:`.decoding`)."""
    return dataclasses.replace(first_images(config, n), check_only=True)


def cached_part(cached: Mapping[str, np.ndarray], part: Config) -> dict[str, np.ndarray]:
    n = len(part.inputs.images[part.inputs.offset :][: part.inputs.first])
    if part.check_only:
        return {k: cached[k][:n] for k in CHECK_KEYS}
    return {k: (v[:n] if k in PER_IMAGE else v) for k, v in cached.items()}


def box_region(name: str, size: int, side: int) -> np.ndarray:
    """The object box of photo ``name`` as weights on a ``side`` x ``side`` grid: the share of each
    cell inside the box drawn on the ``size`` px input (float64, in [0, 1])."""
    left, top, right, bottom = OBJECT_BOXES[name]
    mask = torch.zeros(1, 1, 224, 224, dtype=torch.float64)
    mask[..., top:bottom, left:right] = 1.0
    return F.adaptive_avg_pool2d(F.interpolate(mask, size=(size, size), mode="nearest"), side)[0, 0].numpy()


def gradcam_region(cam: torch.Tensor, side: int, level: float = GRADCAM_LEVEL) -> np.ndarray:
    """Pixels of a Grad-CAM map (H, W) at ``level`` of its maximum or more, as weights on a ``side``
    grid (the share of each cell in the region)."""
    if not bool(cam.max() > 0):
        raise ValueError("the Grad-CAM map is zero everywhere: it marks no region")
    inside = (cam >= level * cam.max()).to(torch.float64)[None, None]
    return F.adaptive_avg_pool2d(inside, side)[0, 0].numpy()


def change_map(images: np.ndarray, start: np.ndarray) -> np.ndarray:
    """How much the optimization moved each pixel: ``|image - start|`` summed over colours, (..., side, side)."""
    return np.abs(images.astype(np.float64) - start.astype(np.float64)).sum(-1)


def region_share(change: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Share of each change map's total (:func:`change_map`) inside ``region`` (weights on the same
    grid). NaN where nothing changed (a path that connects no pixel to the logit)."""
    total = change.sum((-2, -1))
    inside = (change * region).sum((-2, -1))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def _one_image(
    model: torch.nn.Module, x: torch.Tensor, name: str, image: int, config: Config, bar: tqdm
) -> dict[str, np.ndarray]:
    size = int(x.shape[-1])
    with torch.no_grad():
        logits = model(x)
    target = int(logits.argmax(1)[0])
    param = dec.Parameterization(size=config.param_size)

    def decode(path: Pathway | None, thresholds: tuple[int, ...] | None = None) -> np.ndarray:
        return render_logit(model, target, path, size, config, config.seed, thresholds)

    def check(rendered: np.ndarray, path: Pathway) -> dict[str, np.ndarray]:
        xi = dec.model_input(rendered[None], size, x.device)
        own, full = dec.outputs(model, xi, path), dec.outputs(model, xi)
        return {
            "names": np.array([name]),
            "target": np.array([target]),
            "check_image": rendered[None],
            "check_logits": np.array([[float(own[0, target]), float(full[0, target])]], dtype=np.float32),
            "check_realized": np.array([float(path.sparsity[0])], dtype=np.float32),
        }

    if config.check_only:
        found = decoding_paths(model, x, config, (config.check_path,), image)
        path = found[config.check_path][0]
        assert path is not None
        return check(decode(path, (config.check_steps,))[0], path)

    labels, levels = config.paths, config.sparsities
    found = decoding_paths(model, x, config, labels, image)
    images = np.zeros((len(levels), len(labels), config.param_size, config.param_size, 3), dtype=np.float32)
    checked: dict[str, np.ndarray] = {}
    for p, label in enumerate(labels):
        for j in range(len(levels)):
            path = found[label][j]
            same = next((k for k in range(j) if _same(found[label][k], path)), None)
            if same is not None:  # the full network, the active subnet, the authors' Greedy loop
                images[j, p] = images[same, p]
                continue
            if label == config.check_path and j == 0:
                assert path is not None
                out = decode(path, (config.check_steps, config.steps))
                checked = check(out[0], path)
            else:
                out = decode(path)
            images[j, p] = out[-1]
            bar.update()

    side = config.param_size
    change = change_map(images, dec.start_image(param, config.seed, x.device))
    box = box_region(name, size, side)
    cam = saliency(model, x, "gradcam", target=torch.tensor([target])).abs()[0]
    cam_region = gradcam_region(cam, side)
    flat = images.reshape(-1, side, side, 3)
    xi = dec.model_input(flat, size, x.device)
    full = dec.outputs(model, xi)
    own = torch.cat(
        [dec.outputs(model, xi[q : q + 1], found[labels[q % len(labels)]][q // len(labels)]) for q in range(len(flat))]
    )
    photo_features = penultimate(model, x)
    grey = dec.model_input(np.full((1, side, side, 3), 0.5, dtype=np.float32), size, x.device)
    shape = (len(levels), len(labels))
    photo_p = float(logits.softmax(1)[0, target])
    path_p = np.array(
        [[float(dec.outputs(model, x, found[label][j]).softmax(1)[0, target]) for label in labels] for j in range(len(levels))]
    )
    realized = np.array([[_realized(found[label][j]) for label in labels] for j in range(len(levels))])
    return {
        **checked,
        "photo_probability": np.array([photo_p], dtype=np.float32),
        "images": images[None].astype(np.float16),
        "region_box": box[None].astype(np.float32),
        "region_gradcam": cam_region[None].astype(np.float32),
        "change": change.sum((-2, -1))[None].astype(np.float32),
        "box_share": region_share(change, box)[None].astype(np.float32),
        "gradcam_share": region_share(change, cam_region)[None].astype(np.float32),
        "concentration": map_concentration(change, TOP_SHARE)[None].astype(np.float32),
        "logit_own": own[:, target].cpu().numpy().reshape(shape)[None].astype(np.float32),
        "prob_own": own.softmax(1)[:, target].cpu().numpy().reshape(shape)[None].astype(np.float32),
        "prob_full": full.softmax(1)[:, target].cpu().numpy().reshape(shape)[None].astype(np.float32),
        "photo_cosine": dec.cosine_matrix(penultimate(model, xi), photo_features[:1])[:, 0]
        .reshape(shape)[None]
        .astype(np.float32),
        "grey_prob_full": np.array([float(dec.outputs(model, grey).softmax(1)[0, target])], dtype=np.float32),
        "grey_cosine": dec.cosine_matrix(penultimate(model, grey), photo_features[:1])[:, 0].reshape(1).astype(np.float32),
        "photo_prob_path": path_p[None].astype(np.float32),
        "output_change": (100.0 * np.abs(path_p - photo_p) / photo_p)[None].astype(np.float32),
        "realized": realized[None].astype(np.float32),
    }


def _realized(path: Pathway | None) -> float:
    return 0.0 if path is None else float(path.sparsity[0])


def _same(a: Pathway | None, b: Pathway | None) -> bool:
    if a is None or b is None:
        return a is b
    return a is b or all(torch.equal(u, v) for u, v in zip(a.masks, b.masks))


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    model = config.inputs.load_model(device)
    x, names = config.inputs.load_images()
    x = x.to(device)
    renders = 0 if config.check_only else len(x) * len(config.paths) * len(config.sparsities)
    bar = tqdm(total=renders, desc="decoding renders (at most)", disable=not progress)
    parts = [_one_image(model, x[i : i + 1], names[i], config.inputs.offset + i, config, bar) for i in range(len(x))]
    bar.close()
    out = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    if not config.check_only:
        out.update(
            paths=np.array(config.paths),
            sparsities=np.array(config.sparsities, dtype=np.float32),
            gradcam_level=np.array(GRADCAM_LEVEL, dtype=np.float32),
        )
    return out


__all__ = [
    "OBJECT_BOXES",
    "PATHS",
    "Config",
    "box_region",
    "change_map",
    "cached_part",
    "config",
    "gradcam_region",
    "region_share",
    "run",
    "sweep_criteria",
    "verify_subset",
]
