"""Experiments: one module per paper figure or table, each ``config(profile) -> Config`` and ``run``.

Notebooks call :func:`load_or_run`; the tests call :func:`verify`, which recomputes the first images
of a cached result with the committed code and compares.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import numpy as np
import torch

from pathlib_pw import cache
from pathlib_pw.experiments import maps_vs_sparsity, paths, qualitative, sanity, sanity_efficientnet

EXPERIMENTS: dict[str, ModuleType] = {
    "paths": paths,
    "maps_vs_sparsity": maps_vs_sparsity,
    "qualitative": qualitative,
    "sanity": sanity,
    "sanity_efficientnet": sanity_efficientnet,
}
PROFILES = ("smoke", "book", "paper")


def _module(experiment: str) -> ModuleType:
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {sorted(EXPERIMENTS)}, got {experiment!r}")
    return EXPERIMENTS[experiment]


def get_config(experiment: str, profile: str, **overrides: Any) -> Any:
    """The configuration of ``experiment`` under ``profile`` (``smoke``, ``book`` or ``paper``)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    config = _module(experiment).config(profile)
    return dataclasses.replace(config, **overrides) if overrides else config


def run(experiment: str, config: Any, device: str = "cpu", progress: bool = True) -> tuple[dict[str, np.ndarray], float]:
    arrays, seconds = cache.timed(_module(experiment).run, config, device=device, progress=progress)
    return arrays, seconds


def load_or_run(
    experiment: str, profile: str = "book", device: str = "cpu", force: bool = False, progress: bool = True, **overrides: Any
) -> cache.Results:
    """Cached results when their configuration matches, else compute them and cache them."""
    config = get_config(experiment, profile, **overrides)
    directory = cache.results_root() / profile / experiment
    if not force and not overrides and cache.is_current(directory, experiment, config):
        return cache.load(directory)
    arrays, seconds = run(experiment, config, device, progress)
    # float sums (and so neurons at the threshold) depend on the thread count: verify reuses it
    meta = {"device": device, "seconds": round(seconds, 1), "profile": profile, "threads": torch.get_num_threads()}
    if overrides:  # a variation is computed for the caller, never written over the profile's cache
        return cache.Results(experiment, cache.config_dict(config), meta, arrays)
    return cache.save(directory, experiment, config, arrays, meta)


def verify(experiment: str, profile: str = "book", n_images: int = 1, rtol: float = 1e-4, atol: float = 1e-5) -> dict[str, float]:
    """Recompute part of a cached result and compare every array of that part.

    The part is the first ``n_images`` images, or what the experiment's ``verify_subset`` names (the
    sanity checks: every image, the first ``n_images`` stages).

    Raises AssertionError naming the array that differs; returns the largest absolute difference
    per array. The cache must exist and match the current configuration and library version.
    """
    config = get_config(experiment, profile)
    directory = cache.results_root() / profile / experiment
    if not cache.is_current(directory, experiment, config):
        raise AssertionError(
            f"no current cache for {experiment!r}/{profile!r} in {directory}: "
            f"run `python -m pathlib_pw run {experiment} --profile {profile}`"
        )
    cached = cache.load(directory)
    module = _module(experiment)
    # an experiment may recompute another part than its first images (``verify_subset``)
    subset = getattr(module, "verify_subset", module.subset)(config, n_images)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cached.meta.get("threads", threads)))
    try:
        fresh, _ = run(experiment, subset, cached.meta.get("device", "cpu"), progress=False)
    finally:
        torch.set_num_threads(threads)
    if hasattr(module, "cached_part"):
        expected_arrays = module.cached_part(cached.arrays, subset)
    else:
        expected_arrays = {k: (v[:n_images] if k in module.PER_IMAGE else v) for k, v in cached.arrays.items()}
    report = {}
    for key, value in fresh.items():
        expected = expected_arrays[key]
        if value.shape != expected.shape:
            raise AssertionError(f"{experiment}/{key}: shape {value.shape} recomputed vs {expected.shape} cached")
        if value.dtype.kind in "fc":
            # maps stored in half precision: one rounding step near 1 is ~1e-3
            tol = max(atol, 2e-3) if expected.dtype == np.float16 else atol
            np.testing.assert_allclose(value, expected, rtol=rtol, atol=tol, equal_nan=True, err_msg=f"{experiment}/{key}")
            both = ~(np.isnan(value) | np.isnan(expected))
            report[key] = float(np.abs(value[both] - expected[both]).max()) if both.any() else 0.0
        else:
            np.testing.assert_array_equal(value, expected, err_msg=f"{experiment}/{key}")
            report[key] = 0.0
    return report


__all__ = ["EXPERIMENTS", "PROFILES", "get_config", "load_or_run", "run", "verify"]
