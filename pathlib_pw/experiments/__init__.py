"""Experiments: one module per paper figure or table, following :mod:`.contract` (``config(profile)``,
``run``, ``PER_IMAGE`` and optional parts with defaults).

Notebooks call :func:`load_or_run`; the tests call :func:`verify`, which recomputes the first images
of a cached result with the committed code and compares, on any machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import numpy as np
import torch

from pathlib_pw import cache, decisions
from pathlib_pw.experiments import (
    decoding,
    decoding_sweep,
    dgr_budget,
    dgr_retries,
    lerf,
    lerf_digits,
    local_linearity,
    maps_vs_sparsity,
    paths,
    qualitative,
    roar,
    roar_mask,
    sanity,
    sanity_efficientnet,
    sanity_own_class,
)
from pathlib_pw.experiments.contract import PROFILES, Parts, Profile, parts
from pathlib_pw.experiments.verification import Verification, compare_all

EXPERIMENTS: dict[str, ModuleType] = {
    "paths": paths,
    "dgr_retries": dgr_retries,
    "dgr_budget": dgr_budget,
    "maps_vs_sparsity": maps_vs_sparsity,
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


VERIFY_IMAGES = 1  # images whose threshold decisions a cache records for `verify`


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
    with decisions.recording(only=_parts(experiment).recorded_images(config, VERIFY_IMAGES)) as log:
        arrays, seconds = run(experiment, config, device, progress)
    return _self_check_and_save(experiment, profile, config, arrays, log, device, seconds)


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
    """Cache ``arrays`` once the part :func:`verify` recomputes, replayed under the recorded ``log``,
    matches them; the decisions of that part are saved beside them. RuntimeError when it does not."""
    check = _verify_part(experiment, profile, config, arrays, log, device, VERIFY_IMAGES, complete=False)
    if not check.ok:
        raise RuntimeError(f"not cached: the result does not verify against itself\n{check.text()}")
    header = {
        "device": device,
        "seconds": round(seconds, 1),
        "profile": profile,
        "machine": cache.machine(),
        "verify_images": VERIFY_IMAGES,
        "self_check": check.status,
        "date": datetime.date.today().isoformat(),  # when it was computed; outside the configuration hash
        **meta,
    }
    directory = cache.results_root() / profile / experiment
    return cache.save(directory, experiment, config, arrays, header, log.subset([c.key for c in check.replay.checks]))


def _verify_part(
    experiment: str,
    profile: str,
    config: Any,
    arrays: Mapping[str, np.ndarray],
    log: decisions.DecisionLog,
    device: str,
    n_images: int,
    complete: bool = True,
    progress: bool = False,
) -> Verification:
    part = _parts(experiment)
    subset = part.verify_subset(config, n_images)
    with decisions.replaying(log, complete=complete) as report:
        fresh, _ = run(experiment, subset, device, progress=progress)
    expected = part.cached_part(arrays, subset)
    checks = compare_all(
        fresh, expected, part.rules, part.tolerances(expected, fresh, report), progress=progress, desc=f"{experiment} arrays"
    )
    return Verification(experiment, profile, checks, report)


def _cache_problem(experiment: str, profile: Profile) -> str | None:
    """Why the cache cannot be verified, one line per problem, or None. Every stored number is
    checked against the digest recorded when it was computed (:func:`pathlib_pw.cache.check`) before
    anything is recomputed: a changed value of any image or a changed stored setting fails here."""
    config = get_config(experiment, profile)
    directory = cache.results_root() / profile / experiment
    make = f"python -m pathlib_pw run {experiment} --profile {profile}"
    if not (directory / "config.json").exists():
        return f"no cache of {experiment}/{profile} in {directory}: create it with `{make}`"
    problems = cache.check(directory, experiment, config)
    return "\n".join(problems) if problems else None


def _images_problem(experiment: str, profile: Profile, n_images: int | None) -> str | None:
    if n_images is None:
        return None
    try:
        header = json.loads((cache.results_root() / profile / experiment / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"{cache.results_root() / profile / experiment / 'config.json'} cannot be read ({error})"
    recorded = int(header.get("verify_images", VERIFY_IMAGES))
    if not 1 <= n_images <= recorded:
        return f"n_images must be between 1 and {recorded} (the images whose decisions the cache records), got {n_images}"
    return None


def verify_problem(experiment: str, profile: Profile = "book", n_images: int | None = None) -> str | None:
    """Why :func:`verify` cannot check ``experiment``/``profile`` (one line naming the folder looked in
    and the command that makes the cache, or the images it records), or None when it can. Reads the
    cache's header only, so a command line can check every cache before any work."""
    return _cache_problem(experiment, profile) or _images_problem(experiment, profile, n_images)


def verify(
    experiment: str,
    profile: Profile = "book",
    n_images: int | None = None,
    device: str | None = None,
    progress: bool = False,
) -> Verification:
    """Recompute part of a cached result and compare it with the cache, on any machine.

    The part is the first ``n_images`` images (default: all the cache holds decision records for),
    or what the experiment's ``verify_subset`` names. The threshold decisions are replayed against
    the records (:mod:`pathlib_pw.decisions`), then every array is compared by the rules of
    :mod:`pathlib_pw.experiments.verification`. Returns the :class:`Verification` (``.ok``,
    ``.status``, ``.text()``, ``.assert_ok()``); the cache must exist and match the current
    configuration and library version and every stored array and setting its recorded digest, else
    AssertionError says what differs (the array and image, the setting) and how to remake it (ValueError
    for an ``n_images`` beyond the recorded images). ``progress`` shows tqdm bars on stderr (the
    experiment's own over its images, then one over the arrays compared); it never changes the result.
    """
    problem = _cache_problem(experiment, profile)
    if problem is not None:
        raise AssertionError(problem)
    problem = _images_problem(experiment, profile, n_images)
    if problem is not None:
        raise ValueError(problem)
    config = get_config(experiment, profile)
    directory = cache.results_root() / profile / experiment
    log = cache.load_decisions(directory)
    cached = cache.load(directory)
    recorded = int(cached.meta.get("verify_images", VERIFY_IMAGES))
    n_images = recorded if n_images is None else n_images
    return _verify_part(
        experiment,
        profile,
        config,
        cached.arrays,
        log,
        device or cached.meta.get("device", "cpu"),
        n_images,
        complete=n_images == recorded,
        progress=progress,
    )


__all__ = [
    "EXPERIMENTS",
    "PROFILES",
    "Verification",
    "get_config",
    "is_cached",
    "load_or_run",
    "register",
    "run",
    "verify",
    "verify_problem",
]
