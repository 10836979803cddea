"""Experiment results on disk: keyed by a hash of the configuration, written atomically, verifiable.

Layout: ``data/results/<profile>/<experiment>/`` holds ``config.json`` (the full configuration, its
hash, library versions, device, timing) and ``arrays.npz`` (every result array; per-image arrays
have the image axis first). A directory is replaced in one rename, so a crash never leaves a
half-written result behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_ENV = "PATHLIB_PW_RESULTS"


def results_root() -> Path:
    """``$PATHLIB_PW_RESULTS`` or the repository's ``data/results``."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data" / "results"


def config_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), sort_keys=True, default=list))


def config_hash(experiment: str, config: Any) -> str:
    from pathlib_pw import __version__

    payload = json.dumps({"experiment": experiment, "config": config_dict(config), "version": __version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclasses.dataclass
class Results:
    """What an experiment produced: its configuration (as stored), metadata and arrays."""

    experiment: str
    config: dict[str, Any]
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


def versions() -> dict[str, str]:
    import torch
    import torchvision

    from pathlib_pw import __version__

    return {
        "pathlib_pw": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save(directory: Path, experiment: str, config: Any, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Results:
    """Write the results into ``directory`` atomically (a temporary sibling, then one rename)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        header = {
            "experiment": experiment,
            "config": config_dict(config),
            "config_hash": config_hash(experiment, config),
            "versions": versions(),
            **meta,
        }
        (tmp / "config.json").write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
        np.savez_compressed(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            directory.rename(old)
        tmp.rename(directory)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load(directory)


def load(directory: Path) -> Results:
    header = json.loads((directory / "config.json").read_text())
    with np.load(directory / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    meta = {k: v for k, v in header.items() if k not in ("experiment", "config")}
    return Results(header["experiment"], header["config"], meta, arrays)


def is_current(directory: Path, experiment: str, config: Any) -> bool:
    """True when ``directory`` holds results of exactly this configuration and library version."""
    try:
        header = json.loads((directory / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return header.get("config_hash") == config_hash(experiment, config) and (directory / "arrays.npz").exists()


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
