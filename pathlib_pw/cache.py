"""Experiment results on disk: keyed by a hash of the configuration, written atomically, verifiable.

Layout: ``<results_root()>/<profile>/<experiment>/`` (in a checkout, ``data/results/...``) holds
``config.json`` (the full configuration, its hash, library versions, the machine, device, timing),
``arrays.npz`` (every result array; per-image arrays have the image axis first) and ``decisions.npz``
(the recorded threshold decisions of the part that ``verify`` recomputes, :mod:`pathlib_pw.decisions`).
A directory is replaced in one rename, so a crash never leaves a half-written result behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pathlib_pw._version import __version__

RESULTS_ENV = "PATHLIB_PW_RESULTS"
# how a checkout's pyproject.toml names the project
_PROJECT_NAME = re.compile(r"""^name\s*=\s*["']pathlib_pw["']\s*$""", re.MULTILINE)


def results_root() -> Path:
    """Where cached results live, first match wins:

    1. ``$PATHLIB_PW_RESULTS`` when set;
    2. the repository's ``data/results`` when running from a checkout (the package's parent folder
       holds the project's ``pyproject.toml`` and ``data/results``);
    3. ``data/results`` under the current working directory (an installed wheel).
    """
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env)
    checkout = checkout_root()
    return (checkout if checkout is not None else Path.cwd()) / "data" / "results"


def checkout_root(package_dir: Path | None = None) -> Path | None:
    """The repository root when ``package_dir`` (default: this package) lives in a checkout, else None."""
    root = (package_dir or Path(__file__).resolve().parent).parent
    try:
        pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if _PROJECT_NAME.search(pyproject) and (root / "data" / "results").is_dir() else None


# dataclass field metadata: a field added to a configuration after results were cached; left out of
# the stored configuration (and so of its hash) while it holds its default, which computes what the
# configuration computed before the field existed
ADDED_FIELD = "pathlib_pw_added_field"


def added_field(default: Any) -> Any:
    """A configuration field (``dataclasses.field``) that stays out of :func:`config_dict` at ``default``.

    For an option added to an experiment whose cached results were computed without it: at its
    default it must compute exactly what the experiment computed before, so the caches stay current.
    """
    return dataclasses.field(default=default, metadata={ADDED_FIELD: True})


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get(ADDED_FIELD) and getattr(value, f.name) == f.default)
        }
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_dict(config: Any) -> dict[str, Any]:
    """The configuration as JSON data (fields made with :func:`added_field` left out at their default)."""
    return json.loads(json.dumps(_plain(config), sort_keys=True, default=list))


def config_hash(experiment: str, config: Any) -> str:
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

    return {
        "pathlib_pw": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def machine() -> dict[str, Any]:
    """What can explain a float difference between two machines: CPU and its vector instructions,
    the kernels torch dispatches to, BLAS builds, threads, GPU."""
    import torch

    flags: list[str] = []
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = value.split()
    except OSError:
        pass
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "asimd", "sve")
    info: dict[str, Any] = {
        "cpu": model,
        "arch": platform.machine(),
        "instructions": [f for f in wanted if f in flags],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_blas": _torch_blas(),
        "numpy_blas": _numpy_blas(),
        "threads": torch.get_num_threads(),
        "os": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _torch_blas() -> str:
    import re

    import torch

    config = torch.__config__.show()
    found = [f"MKL {m}" for m in re.findall(r"Math Kernel Library Version (\S+)", config)]
    found += [f"oneDNN {m}" for m in re.findall(r"MKL-DNN (v\S+)", config)]
    found += [f"BLAS={m}" for m in re.findall(r"BLAS_INFO=(\w+)", config)]
    return "; ".join(found) or "unknown"


def _numpy_blas() -> str:
    try:
        info = np.show_config(mode="dicts")
        blas = info.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 2 prints instead of returning
        return "unknown"


DECISIONS_FILE = "decisions.npz"


def save(
    directory: Path,
    experiment: str,
    config: Any,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    decisions: Any = None,
) -> Results:
    """Write the results into ``directory`` atomically (a temporary sibling, then one rename).

    ``decisions``: a :class:`pathlib_pw.decisions.DecisionLog` saved beside the arrays.
    """
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
        payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
        np.savez_compressed(tmp / "arrays.npz", **payload)
        if decisions is not None:
            decisions.save(tmp / DECISIONS_FILE)
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


def load_decisions(directory: Path) -> Any:
    """The recorded decisions of a cached result, or None when it has none."""
    from pathlib_pw.decisions import DecisionLog

    path = directory / DECISIONS_FILE
    return DecisionLog.load(path) if path.exists() else None


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
