"""Experiments: one module per paper figure or table, following :mod:`pathlib_pw.runner.contract`
(``config(profile)``, ``run``, ``PER_IMAGE`` and optional parts with defaults), and the tables the
notebooks show beside them (``*_tables``). The machinery they run on (contract, inputs, cache,
verification rules, requirements) is :mod:`pathlib_pw.runner`.

======================  ==================================================  ====================
notebook (book/)        experiments (cached under data/results/PROFILE/)    tables module
======================  ==================================================  ====================
path_overlap            paths, dgr_budget                                   paths_tables
dead_neurons            paths, dgr_budget, dgr_retries                      paths_tables
sparsity_sweep          paths, dgr_budget, maps_vs_sparsity                 paths_tables
qualitative             qualitative, paths                                  paths_tables
sanity_checks           sanity, sanity_own_class, sanity_efficientnet       sanity_tables
decoding                decoding, decoding_sweep                            decoding_tables
lerf                    lerf, lerf_digits                                   lerf_tables
roar                    roar, roar_mask, lerf_digits                        roar_tables, lerf_tables
local_linearity         local_linearity                                     linearity_tables
explorer (a MyST page)  map_explorer, qualitative (its baselines)           pathlib_pw.explorer
======================  ==================================================  ====================

Notebooks call :func:`load_or_run`; the tests call :func:`verify`, which recomputes images of a cached
result with the committed code and compares, on any machine: the first image and one drawn by a
rotating seed, or every image (``all_images``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pathlib_pw import decisions, selection
from pathlib_pw.experiments import (
    decoding,
    decoding_sweep,
    lerf,
    lerf_digits,
    local_linearity,
    map_explorer,
    maps_vs_sparsity,
    paths,
    paths_dgr_budget,
    paths_dgr_retries,
    qualitative,
    roar,
    roar_mask,
    sanity,
    sanity_efficientnet,
    sanity_own_class,
)
from pathlib_pw.runner import cache
from pathlib_pw.runner.contract import PROFILES, Parts, Profile, image_slice, parts, unit_count
from pathlib_pw.runner.verification import Verification, compare_all

EXPERIMENTS: dict[str, ModuleType] = {
    "paths": paths,
    # the paths variants' experiment names predate their files' prefix: they key the caches and the commands
    "dgr_retries": paths_dgr_retries,
    "dgr_budget": paths_dgr_budget,
    "maps_vs_sparsity": maps_vs_sparsity,
    "map_explorer": map_explorer,
    "qualitative": qualitative,
    "sanity": sanity,
    "sanity_efficientnet": sanity_efficientnet,
    "sanity_own_class": sanity_own_class,
    "lerf": lerf,
    "lerf_digits": lerf_digits,
    "roar": roar,
    "roar_mask": roar_mask,
    "decoding": decoding,
    "decoding_sweep": decoding_sweep,
    "local_linearity": local_linearity,
}


def register(name: str, module: ModuleType) -> None:
    """Add an experiment module (it must follow :mod:`.contract`) under ``name``."""
    parts(name, module)  # TypeError when the contract's required parts are missing
    if name in EXPERIMENTS and EXPERIMENTS[name] is not module:
        raise ValueError(f"an experiment named {name!r} is already registered")
    EXPERIMENTS[name] = module


def _parts(experiment: str) -> Parts:
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {sorted(EXPERIMENTS)}, got {experiment!r}")
    return parts(experiment, EXPERIMENTS[experiment])


def get_config(experiment: str, profile: Profile, **overrides: Any) -> Any:
    """The configuration of ``experiment`` under ``profile`` (``smoke``, ``book`` or ``paper``)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    config = _parts(experiment).config(profile)
    return dataclasses.replace(config, **overrides) if overrides else config


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """float32 arithmetic on a GPU too: cuDNN's convolutions default to TF32 (a 10-bit mantissa),
    which moves maps and pathways far beyond float rounding. The flags are restored on exit."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def run(experiment: str, config: Any, device: str = "cpu", progress: bool = True) -> tuple[dict[str, np.ndarray], float]:
    """Run ``experiment`` with ``config`` on ``device`` in :func:`full_precision`; (arrays, seconds)."""
    with full_precision():
        arrays, seconds = cache.timed(_parts(experiment).run, config, device=device, progress=progress)
    return arrays, seconds


VERIFY_IMAGES = 1  # images a cache records and checks when it cannot record every image (RECORD_EVERY_IMAGE)


def recorded_images(meta: Mapping[str, Any]) -> list[int]:
    """The image numbers whose threshold decisions a cache holds (its header's ``recorded_images``; a
    cache from before per-image records: the first ``verify_images``)."""
    if "recorded_images" in meta:
        return sorted(int(i) for i in meta["recorded_images"])
    return list(range(int(meta.get("verify_images", VERIFY_IMAGES))))


def _image_log(log: decisions.DecisionLog, config: Any, image: int) -> decisions.DecisionLog:
    """The records of image number ``image`` (all of them for an experiment with one part)."""
    if unit_count(config) == 1:
        return log
    return decisions.DecisionLog({k: r for k, r in log.records.items() if k.split("|")[1] == str(image)})


def default_seed() -> int:
    """The seed that draws :func:`verify`'s second image when none is given: the day (UTC), so that
    a daily test run recomputes every image over time; the report names it."""
    return datetime.datetime.now(datetime.timezone.utc).date().toordinal()


def is_cached(experiment: str, profile: Profile = "book") -> bool:
    """Whether :func:`load_or_run` would read ``experiment``/``profile`` from its cache (a cache of the
    current configuration and library version exists) instead of computing it."""
    return cache.is_current(cache.results_root() / profile / experiment, experiment, get_config(experiment, profile))


def load_or_run(
    experiment: str, profile: Profile = "book", device: str = "cpu", force: bool = False, progress: bool = True, **overrides: Any
) -> cache.Results:
    """Cached results when their configuration matches, else compute them and cache them.

    A computed result is cached only after its own verification passed: the part that
    :func:`verify` recomputes is recomputed here too, replaying the threshold decisions recorded in
    the run, and must match. The decisions of that part are saved beside the arrays.
    """
    config = get_config(experiment, profile, **overrides)
    directory = cache.results_root() / profile / experiment
    if not force and not overrides and cache.is_current(directory, experiment, config):
        return cache.load(directory)
    if overrides:  # a variation is computed for the caller, never written over the profile's cache
        arrays, seconds = run(experiment, config, device, progress)
        meta = {"device": device, "seconds": round(seconds, 1), "profile": profile}
        return cache.Results(experiment, cache.config_dict(config), meta, arrays)
    with decisions.recording(only=recorded_keys(experiment, config)) as log:
        arrays, seconds = run(experiment, config, device, progress)
    return _self_check_and_save(experiment, profile, config, arrays, log, device, seconds)


def checked_images(experiment: str, config: Any) -> list[int]:
    """The images whose decisions a new cache of ``experiment`` records and checks before it is saved:
    every image, or the first for an experiment whose records would be too large (``RECORD_EVERY_IMAGE``)."""
    every = _parts(experiment).record_every_image and unit_count(config) > 1
    return list(range(unit_count(config))) if every else list(range(VERIFY_IMAGES))


def recorded_keys(experiment: str, config: Any) -> Sequence[object] | None:
    """The image keys whose decisions a run of ``experiment`` records (None: all of them)."""
    part = _parts(experiment)
    if part.record_every_image and unit_count(config) > 1:
        return None
    return part.recorded_images(config, VERIFY_IMAGES)


def _self_check_and_save(
    experiment: str,
    profile: Profile,
    config: Any,
    arrays: Mapping[str, np.ndarray],
    log: decisions.DecisionLog,
    device: str,
    seconds: float,
    **meta: Any,
) -> cache.Results:
    """Cache ``arrays`` once every image :func:`verify` can recompute (:func:`checked_images`), each
    alone and replayed under the recorded ``log``, matches them; the decisions of those parts are saved
    beside them. RuntimeError when one does not."""
    recorded = checked_images(experiment, config)
    checks = [_verify_image(experiment, profile, config, arrays, log, device, image, complete=False) for image in recorded]
    check = Verification.joined(checks)
    if not check.ok:
        raise RuntimeError(f"not cached: the result does not verify against itself\n{check.text()}")
    log = log.subset([c.key for c in check.replay.checks])
    header = {
        "device": device,
        "seconds": round(seconds, 1),
        "profile": profile,
        "machine": cache.machine(),
        "verify_images": VERIFY_IMAGES,
        "recorded_images": recorded,
        "self_check": check.status,
        "date": datetime.date.today().isoformat(),  # when it was computed; outside the configuration hash
        **meta,
    }
    directory = cache.results_root() / profile / experiment
    return cache.save(directory, experiment, config, arrays, header, log)


def _merged(a: decisions.DecisionLog, b: decisions.DecisionLog) -> decisions.DecisionLog:
    return decisions.DecisionLog({**a.records, **b.records})


def _record_image(
    experiment: str, profile: str, config: Any, arrays: Mapping[str, np.ndarray], image: int, device: str
) -> decisions.DecisionLog:
    """The decisions of image number ``image``'s part (``image_part``), recorded while recomputing it
    beside ``arrays`` on this machine; RuntimeError when it does not reproduce them (then the records
    would describe another computation than the cached one)."""
    part = _parts(experiment)
    subset = part.image_part(config, image)
    with decisions.recording(only=[str(image)]) as log:
        fresh, _ = run(experiment, subset, device, progress=False)
    expected = part.cached_part(image_slice(arrays, set(part.module.PER_IMAGE), image), subset)
    checks = compare_all(fresh, expected, part.rules, {}, desc=f"{experiment} image {image}")
    result = Verification(experiment, profile, checks, decisions.ReplayReport(), images=(image,))
    if not result.ok:
        raise RuntimeError(f"image {image} not recorded: its recomputation does not reproduce the result\n{result.text()}")
    if not log.records:
        raise RuntimeError(f"image {image} not recorded: its recomputation made no threshold decision about it")
    return log


def record_images(experiment: str, profile: Profile = "book", device: str | None = None, progress: bool = True) -> list[int]:
    """Add the decision records of every image a cache lacks (a cache computed when only its first
    image was recorded), so that :func:`verify` can recompute any image on any machine.

    Each image's part is recomputed on this machine and must reproduce the cached arrays by the
    experiment's rules (RuntimeError otherwise); its records are then added atomically, one image at a
    time (an interrupted run keeps the images finished). The arrays and digests stay byte for byte.
    Returns the images added."""
    problem = _cache_problem(experiment, profile)
    if problem is not None:
        raise AssertionError(problem)
    config = get_config(experiment, profile)
    if not _parts(experiment).record_every_image or unit_count(config) == 1:
        return []
    directory = cache.results_root() / profile / experiment
    cached = cache.load(directory)
    on = device or cached.meta.get("device", "cpu")
    recorded = recorded_images(cached.meta)
    added = []
    for image in tqdm(range(unit_count(config)), desc=f"{experiment} records", disable=not progress):
        if image in recorded:
            continue
        threads = cached.meta.get("machine", {}).get("threads")
        with selection.threads(int(threads)) if threads else contextlib.nullcontext():  # the cache's float sums
            log = _record_image(experiment, profile, config, cached.arrays, image, on)
        recorded = sorted({*recorded, image})
        cache.add_records(directory, _merged(cache.load_decisions(directory), log), recorded_images=recorded)
        added.append(image)
    return added


def _verify_image(
    experiment: str,
    profile: str,
    config: Any,
    arrays: Mapping[str, np.ndarray],
    log: decisions.DecisionLog,
    device: str,
    image: int,
    complete: bool = True,
    progress: bool = False,
    recorded: bool = True,
) -> Verification:
    """Recompute image number ``image``'s part, replaying its recorded decisions, beside ``arrays``;
    an image without records (``recorded=False``) makes its decisions afresh, and the experiment's
    ``unrecorded_tolerances`` are added to the allowances."""
    part = _parts(experiment)
    subset = part.image_part(config, image)
    if recorded:
        with decisions.replaying(_image_log(log, config, image), complete=complete) as report:
            fresh, _ = run(experiment, subset, device, progress=progress)
    else:
        report = decisions.ReplayReport()
        fresh, _ = run(experiment, subset, device, progress=progress)
    whole = arrays if unit_count(config) == 1 else image_slice(arrays, set(part.module.PER_IMAGE), image)
    expected = part.cached_part(whole, subset)
    allowances = dict(part.tolerances(expected, fresh, report))
    if not recorded:
        for name, extra in part.unrecorded_tolerances(expected, subset).items():
            allowances[name] = extra if name not in allowances else allowances[name] + extra
    checks = compare_all(fresh, expected, part.rules, allowances, progress=progress, desc=f"{experiment} arrays")
    return Verification(experiment, profile, checks, report, images=(image,), free=() if recorded else (image,))


def _cache_problem(experiment: str, profile: Profile) -> str | None:
    """Why the cache cannot be verified, one line per problem, or None. Every stored number is
    checked against the digest recorded when it was computed (:func:`pathlib_pw.runner.cache.check`) before
    anything is recomputed: a changed value of any image or a changed stored setting fails here."""
    config = get_config(experiment, profile)
    directory = cache.results_root() / profile / experiment
    make = f"python -m pathlib_pw run {experiment} --profile {profile}"
    if not (directory / "config.json").exists():
        return f"no cache of {experiment}/{profile} in {directory}: create it with `{make}`"
    problems = cache.check(directory, experiment, config)
    return "\n".join(problems) if problems else None


def _choose(
    experiment: str,
    profile: Profile,
    n_images: int | None,
    images: Sequence[int] | None,
    seed: int | None,
    all_images: bool,
) -> tuple[list[int], str]:
    """The images :func:`verify` recomputes and a sentence saying how they were chosen; ValueError
    naming the argument for images it cannot recompute. An experiment that records its first image's
    decisions only (``RECORD_EVERY_IMAGE``) recomputes its other images with their decisions made
    afresh, compared with the looser allowances measured for that (``unrecorded_tolerances``); the sentence
    says which."""
    meta = json.loads((cache.results_root() / profile / experiment / cache.CONFIG_FILE).read_text(encoding="utf-8"))
    config = get_config(experiment, profile)
    units = unit_count(config)
    recorded = recorded_images(meta) if units > 1 else [0]
    every = _parts(experiment).record_every_image
    absent = [i for i in range(units) if i not in recorded]
    selectable = recorded if every else list(range(units))
    given = [
        name
        for name, value in (("n_images", n_images), ("images", images), ("all_images", all_images or None))
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give at most one of n_images, images and all_images, got {' and '.join(given)}")
    if n_images is not None:
        if (
            not isinstance(n_images, int)
            or not 1 <= n_images <= len(selectable)
            or selectable[:n_images] != list(range(n_images))
        ):
            what = "the images whose decisions the cache records" if every else "the images in the cache"
            raise ValueError(f"n_images must be between 1 and {len(selectable)} ({what}), got {n_images}")
        chosen, note = list(range(n_images)), f"the first {n_images} image(s)"
    elif images is not None:
        chosen = [int(i) for i in images]
        wrong = [i for i in chosen if i not in selectable]
        if not chosen or wrong:
            what = "images whose decisions the cache records" if every else "images in the cache"
            raise ValueError(f"images must name {what} ({_ranges(selectable)} of {units}), got {list(images)}")
        note = f"image(s) {_ranges(chosen)} as asked"
    elif all_images:
        if absent and every:
            raise ValueError(
                f"all_images: the cache records no decisions for image(s) {_ranges(absent)} of {units} (computed before "
                f"every image was recorded): record them with `python scripts/record_images.py {experiment} --profile {profile}`"
            )
        chosen, note = selectable, f"all {len(selectable)} image(s)"
    elif len(selectable) == 1:
        chosen = [0]
        note = (
            "its one recorded image" if units == 1 or not absent else f"image 0, the only one with records ({units} in the cache)"
        )
    else:
        seed = default_seed() if seed is None else int(seed)
        drawn = random.Random(seed).choice(selectable[1:])
        chosen = [0, drawn]
        note = (
            f"image 0 and image {drawn}, drawn with seed {seed} from images {_ranges(selectable[1:])} "
            f"(repeat: --seed {seed}; every image: --all)"
        )
    free = [i for i in chosen if i in absent]
    if free:
        note += (
            f"; image(s) {_ranges(free)} without decision records ({experiment} records its first image's only: "
            f"RECORD_EVERY_IMAGE), recomputed with fresh decisions and compared with the allowances measured for that "
            f"(unrecorded_tolerances)"
        )
    return chosen, note


def _ranges(values: Sequence[int]) -> str:
    """``0-3, 5, 7-8`` for [0, 1, 2, 3, 5, 7, 8]."""
    out: list[str] = []
    for v in sorted(values):
        if out and int(out[-1].split("-")[-1]) == v - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        else:
            out.append(str(v))
    return ", ".join(out)


def verify_problem(
    experiment: str,
    profile: Profile = "book",
    n_images: int | None = None,
    *,
    images: Sequence[int] | None = None,
    all_images: bool = False,
) -> str | None:
    """Why :func:`verify` cannot check ``experiment``/``profile`` (one line naming the folder looked in
    and the command that makes the cache, or the images it records), or None when it can. Reads the
    cache's header only, so a command line can check every cache before any work."""
    problem = _cache_problem(experiment, profile)
    if problem is not None:
        return problem
    try:
        _choose(experiment, profile, n_images, images, None, all_images)
    except ValueError as error:
        return str(error)
    return None


def verify(
    experiment: str,
    profile: Profile = "book",
    n_images: int | None = None,
    device: str | None = None,
    progress: bool = False,
    *,
    images: Sequence[int] | None = None,
    seed: int | None = None,
    all_images: bool = False,
) -> Verification:
    """Recompute images of a cached result and compare them with the cache, on any machine.

    Every stored array and setting is first checked against the digest recorded when it was computed
    (AssertionError naming the array and image, or the setting, and how to remake the cache). Then
    images are recomputed, each alone: image 0 (its whole part) and one more drawn with ``seed``
    (default :func:`default_seed`, the day; the report names it) among the images whose decisions the
    cache records, or the ``images`` named, or the first ``n_images``, or with ``all_images`` every
    recorded image (ValueError when the cache lacks records it should hold). Each image's threshold
    decisions are replayed against its records (:mod:`pathlib_pw.decisions`), then every array is
    compared by the rules of :mod:`pathlib_pw.runner.verification`. An experiment that records
    its first image only (``RECORD_EVERY_IMAGE``) draws among all its images: the others are recomputed
    with their decisions made afresh and compared with its ``unrecorded_tolerances`` added. Returns the
    :class:`Verification` (``.ok``, ``.status``, ``.text()``, ``.assert_ok()``). ``progress`` shows
    tqdm bars on stderr; it never changes the result.
    """
    problem = _cache_problem(experiment, profile)
    if problem is not None:
        raise AssertionError(problem)
    chosen, note = _choose(experiment, profile, n_images, images, seed, all_images)
    config = get_config(experiment, profile)
    directory = cache.results_root() / profile / experiment
    log = cache.load_decisions(directory)
    cached = cache.load(directory)
    on = device or cached.meta.get("device", "cpu")
    recorded = recorded_images(cached.meta) if unit_count(config) > 1 else [0]
    each = [
        _verify_image(experiment, profile, config, cached.arrays, log, on, image, progress=progress, recorded=image in recorded)
        for image in chosen
    ]
    return Verification.joined(each, note)


__all__ = [
    "EXPERIMENTS",
    "PROFILES",
    "Verification",
    "get_config",
    "is_cached",
    "load_or_run",
    "register",
    "run",
    "record_images",
    "recorded_images",
    "verify",
    "verify_problem",
]
