"""ROAR and KAR with retraining (book/methods.md: the paper's experiments; :mod:`pathlib_pw.roar`), every method x removed
share x seed, in both modes, with the random and Sobel controls.

Embedded default (``book``): scikit-learn's digits and the small ReLU CNN of :mod:`pathlib_pw.digits`.
Each seed ``s`` is one *explained model*: the seeded split ``digits_split(s)``, the model trained on
its clean images with seed ``s`` (whose maps rank the pixels), the tie order ``s`` among equal map
values, and the retraining with seed ``s``. Five seeds, so the spread covers the model being explained
as well as the retraining (the authors ran one). Two fills: the dataset mean (the authors') and ROAD's
noisy linear imputation, which does not paint the removal mask's shape into the image. ``paper``:
CIFAR-10 from a folder the user names (one split), the authors' ResNet-8 recipe, on a GPU.

The random control here draws an independent uniform map per image (Hooker et al.'s control), unlike
the LeRF chapter's one fixed map for every image: retrained on a fixed mask, a model would simply learn
to ignore those pixels.

Verification recomputes one training run (``Config.check``, mean fill): the base model, the maps of that method
for every image (their threshold decisions replayed), the degraded sets and the retraining. The
retraining runs in float64 from identical inputs, so another CPU moves the test logits by float
rounding only. The degraded sets are compared exactly (a digest); the retrained model's test logits
within what another CPU's rounding does to a training on holes (measured), and a prediction may flip
only where the cached top-two margin is within that tolerance.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import os
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pathlib_pw import cifar10, decisions
from pathlib_pw.attribution.registry import ACCUMULATED, PATHWAY_GRAD, attribute
from pathlib_pw.digits import digits_split, train_digits_cnn
from pathlib_pw.experiments.lerf import METHODS, method_for
from pathlib_pw.removal import tie_share
from pathlib_pw.roar import MODES, RetrainingData, degrade, mask_only
from pathlib_pw.runner.contract import Profile
from pathlib_pw.runner.verification import Tolerance
from pathlib_pw.selection import threads
from pathlib_pw.training import TrainingRecipe, predict, train_classifier

__all__ = ["CHECK_ARRAYS", "PER_IMAGE", "TOLERANCES", "Config", "config", "run", "training_data"]

Dataset = Literal["digits", "cifar10"]
DATASETS: tuple[Dataset, ...] = ("digits", "cifar10")
# the authors' recipe (book/methods.md: the paper's experiments)
CIFAR10_RECIPE = TrainingRecipe(epochs=50, batch_size=256, lr=1e-3, weight_decay=1e-4, schedule="step", step_epochs=10, gamma=0.5)
WORKERS_ENV = "PATHLIB_PW_WORKERS"
CHECK_ARRAYS = ("base_accuracy", "base_logits", "check_accuracy", "check_data", "check_logits")
FILLS: tuple[str, ...] = ("mean", "road")
# ROAD's noise, 0.01 on [0, 1] pixels (Rong et al.), in the standardized units of each split
ROAD_NOISE = 0.01
# CIFAR-10's training-set pixel std per channel on [0, 1] (cifar10.standardize divides by these)
CIFAR10_TRAIN_STD = (0.2470, 0.2435, 0.2616)


@dataclasses.dataclass(frozen=True)
class Config:
    """The ROAR/KAR configuration: every method x mode x fill x percent x seed, each a retraining.

    The fields enter the cache's configuration hash (:func:`pathlib_pw.cache.config_hash`; one made
    with ``added_field`` only away from its default): changing a default invalidates the cached results.
    """

    dataset: Dataset = "digits"
    """``"digits"`` (scikit-learn's digits and the small ReLU CNN, the embedded default) or ``"cifar10"``
    (the paper profile: the authors' ResNet-8 recipe, on a GPU)."""
    data_folder: str | None = None
    """The folder of CIFAR-10's python batches
    (None: ``$PATHLIB_PW_CIFAR10``)."""
    train_size: int = 0
    """The first images of the training part only
    (0: all); toy runs of the paper path."""
    test_size: int = 0
    """The first images of the test part only
    (0: all)."""
    methods: tuple[str, ...] = METHODS
    """The attribution methods by registered name, as in :class:`.lerf.Config` (``random`` here draws an
    independent uniform map per image)."""
    pathway_sparsity: float = 95.0
    """PathwayGrad's pathway sparsity in percent of the neurons removed
    (0-100). Digits: where NeuronMCT's output change reaches the authors' 15 % (``lerf_digits.PATHWAY_SPARSITY``); the paper
    profile: 90."""
    percents: tuple[int, ...] = (10, 30, 50, 70, 90)
    """Percent of the pixels removed (0-100), one retraining each."""
    modes: tuple[str, ...] = ("roar", "kar")
    """``"roar"`` removes the most relevant pixels, ``"kar"`` the least relevant (:data:`pathlib_pw.roar.MODES`)."""
    fills: tuple[str, ...] = FILLS
    """How removed pixels are filled, ``"mean"`` the dataset mean (0), the authors' fill and the check run's (required),
    ``"road"`` ROAD's noisy linear imputation."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """The seeds, each one explained model (split, base model, tie order and retraining, see the module docstring; the paper
    profile: three)."""
    seed: int = 0
    """The random control's draws."""
    recipe: TrainingRecipe = TrainingRecipe()
    """How every model is trained and retrained
    (the paper profile: the authors' ``CIFAR10_RECIPE``)."""
    batch: int = 64
    """Images per attribution pass
    (the paper profile: 256)."""
    check: tuple[str, str, int, int] = (PATHWAY_GRAD + "neuron_mct", "roar", 50, 0)
    """The run that ``verify`` recomputes, (method, mode, percent, seed) with the mean fill; it must be one of the configured
    runs."""
    check_only: bool = False
    """Only the check run (what ``verify`` recomputes)."""
    examples: int = 4
    """Degraded test images kept for the figures."""

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {list(DATASETS)}, got {self.dataset!r}")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"modes must be a non-empty tuple of {list(MODES)}, got {self.modes!r}")
        if not self.seeds or not self.percents or not self.methods:
            raise ValueError("methods, percents and seeds must not be empty")
        if "mean" not in self.fills or any(f not in FILLS for f in self.fills):
            raise ValueError(
                f"fills must be a tuple of {list(FILLS)} that includes 'mean' (the check run's fill), got {self.fills!r}"
            )
        method, mode, percent, seed = self.check
        if method not in self.methods or mode not in self.modes or percent not in self.percents or seed not in self.seeds:
            raise ValueError(f"check must name one of the configured runs (method, mode, percent, seed), got {self.check!r}")


def config(profile: Profile) -> Config:
    if profile == "smoke":
        return Config(
            methods=("gradients", PATHWAY_GRAD + "neuron_mct", "random", "sobel"),
            percents=(50, 90),
            seeds=(0, 1),
            recipe=TrainingRecipe(epochs=3),
        )
    if profile == "book":
        return Config()
    methods = tuple(m for m in METHODS if m != PATHWAY_GRAD + ACCUMULATED) + (PATHWAY_GRAD + ACCUMULATED,)
    return Config(dataset="cifar10", methods=methods, pathway_sparsity=90.0, seeds=(0, 1, 2), recipe=CIFAR10_RECIPE, batch=256)


PER_IMAGE: set[str] = set()
# how far a retraining's test logits may move on another CPU, as a share of their RMS (see TOLERANCES)
RETRAINING_CHAOS = 0.15
TOLERANCES = {
    "base_logits": Tolerance(
        rtol=1e-4,
        atol=1e-3,
        reason="test logits of the model trained in float64 on the clean images: another CPU's sum order moved "
        "them by 9e-6 (a build without SIMD)",
    ),
    "check_logits": Tolerance(
        reason="test logits of a model retrained in float64 on identical degraded images (check_data): training on "
        f"holes amplifies another CPU's rounding; allowed {RETRAINING_CHAOS:g} x the logits' RMS (measured: 0.012 x "
        "(pixels) and 0.051 x (masks) on a build without SIMD; another seed: 1 to 1.8 x)",
    ),
} | {
    name: Tolerance(
        reason="test accuracy: a prediction may flip only where the recomputed logits moved by half its cached top-two margin"
    )
    for name in ("base_accuracy", "check_accuracy")
}


def subset(config: Config, n: int) -> Config:
    """The first ``n`` seeds (``run --images N``: the unit of ROAR is a training run, not an image)."""
    return dataclasses.replace(config, seeds=config.seeds[:n], check=(*config.check[:3], config.seeds[0]))


def verify_subset(config: Config, n: int) -> Config:
    return dataclasses.replace(config, check_only=True)


def cached_part(arrays: Mapping[str, np.ndarray], part: Config) -> dict[str, np.ndarray]:
    if not part.check_only:
        raise ValueError("only the check run (verify_subset) is recomputed from a ROAR cache")
    return {k: arrays[k] for k in CHECK_ARRAYS}


def _image_keys(method: str, seed: int, part: str, n: int) -> list[str]:
    return [f"{method}:s{seed}:{part}{i:05d}" for i in range(n)]


def recorded_images(config: Config, n: int) -> list[str]:
    """The decisions `verify` replays: those of the check method's maps for the check seed, for every image."""
    method, seed = config.check[0], config.check[3]
    data = training_data(config, seed)
    return _image_keys(method, seed, "train", len(data.x_train)) + _image_keys(method, seed, "test", len(data.x_test))


def training_data(config: Config, seed: int = 0) -> RetrainingData:
    """The training and test images (standardized) and labels of explained model ``seed`` (the digits:
    ``digits_split(seed)``; CIFAR-10: its one split)."""
    if config.dataset == "digits":
        split = digits_split(seed)
        x_train, y_train, x_test, y_test = split.x_train, split.y_train, split.x_test, split.y_test
    else:
        folder = cifar10.cifar10_folder(config.data_folder)
        (x_train_u8, y_train), (x_test_u8, y_test) = (cifar10.load_cifar10(folder, s) for s in ("train", "test"))
        x_train, x_test = cifar10.standardize(x_train_u8, x_test_u8)
    n_train, n_test = config.train_size or len(x_train), config.test_size or len(x_test)
    return RetrainingData(x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test])


def train_model(dataset: str, recipe: TrainingRecipe, device: str, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    """A model of ``dataset``'s architecture trained from scratch by ``recipe`` with ``seed``: the digits
    CNN on the CPU in float64 (:func:`~pathlib_pw.digits.train_digits_cnn`), ResNet-8 on ``device``."""
    if dataset == "digits":
        return train_digits_cnn(x, y, recipe, seed)
    model = cifar10.ResNet8(seed=seed).to(device)
    return train_classifier(model, x, y, recipe, seed)


def _test_logits(
    dataset: str, recipe: TrainingRecipe, device: str, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, seed: int
) -> torch.Tensor:
    with threads(1):  # a worker process trains one model on one thread
        return predict(train_model(dataset, recipe, device, x, y, seed), x_test)


def _workers(config: Config, device: str) -> int:
    if config.dataset != "digits":
        return 1
    named = os.environ.get(WORKERS_ENV)
    if named:
        if not named.isdigit() or int(named) < 1:
            raise ValueError(f"{WORKERS_ENV} must be a positive integer, got {named!r}")
        return int(named)
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' float32 bytes: the degraded sets must be identical on any machine, since
    every pixel decision is replayed and the fill is exact."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def road_noise(config: Config, seed: int) -> tuple[float, ...]:
    """ROAD's noise (0.01 on [0, 1] pixels) in the standardized units of explained model ``seed``'s data."""
    if config.dataset == "digits":
        return (ROAD_NOISE / digits_split(seed).std,)
    return tuple(ROAD_NOISE / s for s in CIFAR10_TRAIN_STD)


def _maps(
    config: Config, name: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor, part: str, seed: int, device: str
) -> torch.Tensor:
    """(N, H, W) maps of ``name`` for every image of one part, in batches, decisions keyed by method, seed and image."""
    if name == "random":
        offset = 0 if part == "train" else 1
        generator = torch.Generator().manual_seed(1000 * config.seed + 2 * seed + offset)
        return torch.rand((len(x), *x.shape[2:]), generator=generator)
    method = method_for(name, config.pathway_sparsity)
    keys = _image_keys(name, seed, part, len(x))
    out = []
    for start in range(0, len(x), config.batch):
        i = slice(start, start + config.batch)
        with decisions.images(keys[i]), decisions.scope(name):
            out.append(attribute(model, x[i].to(device), method, target=target[i].to(device)).cpu())
    return torch.cat(out)


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    return run_shown(config, "pixels", device, progress)


Shown = Literal["pixels", "mask"]


def run_shown(config: Config, shown: Shown, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    """The sweep; the retrained models see the degraded images (``shown="pixels"``) or only the
    removal's shape (``"mask"``: :func:`pathlib_pw.roar.mask_only`)."""
    if shown not in ("pixels", "mask"):
        raise ValueError(f"shown must be one of ['pixels', 'mask'], got {shown!r}")
    remove = degrade if shown == "pixels" else mask_only
    train_device = "cpu" if config.dataset == "digits" else device
    recipe, dataset = config.recipe, config.dataset
    check_method, check_mode, check_percent, check_seed = config.check
    methods = [check_method] if config.check_only else list(config.methods)
    seeds = [check_seed] if config.check_only else list(config.seeds)
    n_m, n_o, n_f, n_p, n_s = len(config.methods), len(config.modes), len(config.fills), len(config.percents), len(config.seeds)
    accuracy = np.full((n_m, n_o, n_f, n_p, n_s), np.nan)
    baseline = np.full(n_s, np.nan)
    constant = np.zeros((n_m, n_s), dtype=np.int64)
    ties = np.zeros((n_m, n_o, n_p, n_s))
    arrays: dict[str, np.ndarray] = {}
    examples: np.ndarray | None = None
    first = training_data(config, config.seeds[0])
    n_ex = min(config.examples, len(first.x_test))
    runs = 1 if config.check_only else n_m * n_o * n_f * n_p * n_s
    trainer = _Trainer(config, train_device, runs, progress)
    with trainer:
        for seed in seeds:
            s = config.seeds.index(seed)
            data = training_data(config, seed)
            base = train_model(dataset, recipe, train_device, data.x_train, data.y_train, seed).to(device)
            base_logits = predict(base, data.x_test)
            baseline[s] = float((base_logits.argmax(1) == data.y_test).double().mean())
            if seed == check_seed:
                arrays["base_logits"] = base_logits.numpy().astype(np.float32)
                arrays["base_accuracy"] = np.array(baseline[s])
            if examples is None:
                examples = np.zeros((n_m, n_o, n_f, n_p, n_ex, *data.x_test.shape[1:]), np.float32)
            targets = {part: predict(base, x).argmax(1) for part, x in (("train", data.x_train), ("test", data.x_test))}
            noise = road_noise(config, seed)
            for name in tqdm(methods, disable=not progress, desc=f"roar maps, seed {seed}"):
                m = config.methods.index(name)
                maps = {
                    part: _maps(config, name, base, x, targets[part], part, seed, device)
                    for part, x in (("train", data.x_train), ("test", data.x_test))
                }
                flat = torch.cat([maps["train"], maps["test"]]).flatten(1)
                constant[m, s] = int((flat.amax(1) == flat.amin(1)).sum())
                for o, mode in enumerate(config.modes):
                    for p, percent in enumerate(config.percents):
                        if config.check_only and (mode, percent) != (check_mode, check_percent):
                            continue
                        order = MODES[mode]
                        both = torch.cat([maps["train"], maps["test"]])
                        ties[m, o, p, s] = float(tie_share(both, percent, order=order).mean())
                        for f, fill in enumerate(config.fills):
                            if config.check_only and fill != "mean":
                                continue
                            degraded = {}
                            with decisions.scope(f"{name}/{mode}/{percent}/{fill}"):
                                for offset, (part, x) in enumerate((("train", data.x_train), ("test", data.x_test))):
                                    with decisions.images(_image_keys(name, seed, part, len(x))):
                                        degraded[part] = remove(
                                            x,
                                            maps[part],
                                            percent,
                                            mode,  # type: ignore[arg-type]
                                            "road" if fill == "road" else None,
                                            tie_seed=seed,
                                            seed=[(2 * seed + offset) * 100_000 + i for i in range(len(x))],
                                            noise=noise,
                                        )
                            if s == 0:
                                examples[m, o, f, p] = degraded["test"][:n_ex].numpy()
                            is_check = (name, mode, percent, seed) == tuple(config.check) and fill == "mean"
                            if is_check:
                                arrays["check_data"] = np.array([_digest(degraded["train"], degraded["test"])])
                            if not config.check_only or is_check:
                                trainer.submit((m, o, f, p, s), degraded["train"], data.y_train, degraded["test"], seed)
    for (m, o, f, p, s), logits in trainer.results.items():
        y_test = training_data(config, config.seeds[s]).y_test
        correct = float((logits.argmax(1) == y_test).double().mean())
        accuracy[m, o, f, p, s] = correct
        if (config.methods[m], config.modes[o], config.percents[p], config.seeds[s], config.fills[f]) == (*config.check, "mean"):
            arrays["check_logits"] = logits.numpy().astype(np.float32)
            arrays["check_accuracy"] = np.array(correct)
    if config.check_only:
        return arrays
    assert examples is not None  # the loop over seeds ran at least once (Config refuses no seeds)
    return arrays | {
        "accuracy": accuracy,
        "baseline": baseline,
        "constant_maps": constant,
        "tie_share": ties,
        "examples": examples,
        "example_images": first.x_test[:n_ex].numpy(),
        "example_labels": first.y_test[:n_ex].numpy(),
        "methods": np.array(config.methods),
        "modes": np.array(config.modes),
        "fills": np.array(config.fills),
        "percents": np.array(config.percents, dtype=np.int64),
        "seeds": np.array(config.seeds, dtype=np.int64),
        "test_images": np.array(len(first.x_test)),
        "train_images": np.array(len(first.x_train)),
    }


class _Trainer:
    """Retrains and tests as runs are submitted: in worker processes for the digits (each on one thread,
    so the results do not depend on the number of workers), else at once in this process (a CIFAR-10
    training set is 600 MB: none is kept waiting)."""

    def __init__(self, config: Config, device: str, total: int, progress: bool) -> None:
        self.config, self.device = config, device
        self.workers = _workers(config, device)
        self.results: dict[tuple[int, ...], torch.Tensor] = {}
        self._futures: dict[concurrent.futures.Future, tuple[int, ...]] = {}
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._bar = tqdm(total=total, disable=not progress, desc="roar retraining")

    def __enter__(self) -> _Trainer:
        if self.workers > 1 and not self.config.check_only:
            # spawn: forking after torch's thread pools have started can hang the children
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def submit(self, key: tuple[int, ...], x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, seed: int) -> None:
        args = (self.config.dataset, self.config.recipe, self.device, x_train, y_train, x_test, seed)
        if self._pool is None:
            self.results[key] = _test_logits(*args)
            self._bar.update()
        else:
            self._futures[self._pool.submit(_test_logits, *args)] = key

    def __exit__(self, *exc: object) -> None:
        try:
            if self._pool is not None and exc[0] is None:
                for future in concurrent.futures.as_completed(self._futures):
                    self.results[self._futures[future]] = future.result()
                    self._bar.update()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
            self._bar.close()


def tolerances(cached: Mapping[str, np.ndarray], fresh: Mapping[str, np.ndarray], replay: Any) -> dict[str, np.ndarray]:
    """The retrained model's logits may move by ``RETRAINING_CHAOS`` x their RMS. Each accuracy may move
    by the share of test images whose cached top-two logit margin is at most twice that image's largest
    logit change in the recomputation (the only predictions the logits' movement can flip)."""
    out = {}
    if "check_logits" in cached:
        out["check_logits"] = np.array(RETRAINING_CHAOS * np.sqrt(np.mean(np.square(cached["check_logits"], dtype=np.float64))))
    for logits, acc in (("base_logits", "base_accuracy"), ("check_logits", "check_accuracy")):
        if logits not in cached or logits not in fresh or np.shape(fresh[logits]) != np.shape(cached[logits]):
            continue
        values = np.asarray(cached[logits], dtype=np.float64)
        top2 = np.sort(values, axis=1)[:, -2:]
        moved = np.abs(np.asarray(fresh[logits], dtype=np.float64) - values).max(1)
        out[acc] = np.array(np.count_nonzero(top2[:, 1] - top2[:, 0] <= 2 * moved) / len(values))
    return out
