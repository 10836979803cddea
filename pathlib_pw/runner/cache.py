"""Experiment results on disk: keyed by a hash of the configuration, written atomically, verifiable.

Layout: ``<results_root()>/<profile>/<experiment>/`` (in a checkout, ``data/results/...``) holds
``config.json`` (the full configuration, its hash, library versions, the machine, device, timing),
``arrays.npz`` (every result array; per-image arrays have the image axis first) and ``decisions.npz``
(the recorded threshold decisions of the part that ``verify`` recomputes, :mod:`pathlib_pw.decisions`).
A directory is replaced in one rename, so a crash never leaves a half-written result behind, and a
save interrupted between its two renames is recovered by the next access (:func:`recover`).
``config.json`` also records the content :func:`digests` of the configuration and of every array:
:func:`check` names any changed array (and its first changed row) or setting, :func:`is_current`
refuses a damaged cache, and :func:`load` raises :class:`CorruptCache` naming an unreadable file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping
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
    root = (package_dir or Path(__file__).resolve().parents[1]).parent  # this file is pathlib_pw/runner/cache.py
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


# environment variables that limit torch, oneDNN and MKL to a lower instruction set than the CPU has,
# by the name torch gives that set: a build without SIMD ("DEFAULT") or with AVX2 only, simulated
INSTRUCTION_LIMITS: dict[str, dict[str, str]] = {
    "AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "DEFAULT": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


def other_cpu(threads: int = 1, **extra: str) -> dict[str, str]:
    """This process's environment as another CPU would give it to a child process: torch, oneDNN and
    MKL limited to their baseline instructions (``INSTRUCTION_LIMITS["DEFAULT"]``) and ``threads``
    threads, plus ``extra`` variables; for the checks that a cache verifies on any machine."""
    return {**os.environ, **INSTRUCTION_LIMITS["DEFAULT"], "OMP_NUM_THREADS": str(threads), **extra}


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
CONFIG_FILE = "config.json"
ARRAYS_FILE = "arrays.npz"
MAX_ROW_DIGESTS = 10_000  # arrays with more rows record only their whole digest
DEFAULT_NEEDED_BYTES = 200 * 2**20  # free space asked for before computing an experiment never cached
# what reading a damaged file raises: truncated or flipped zip members, invalid UTF-8 or JSON, missing keys
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, IndexError, TypeError, zipfile.BadZipFile, zlib.error, struct.error)


class CorruptCache(ValueError):
    """A cache file that cannot be read (truncated, flipped bytes, invalid UTF-8 or JSON); the message is
    one line naming the file and the command that recomputes it."""


class CacheWriteError(OSError):
    """Results that cannot be written (a read-only folder, a full disk); the message is one line naming
    the folder and what to do."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


def _remake(directory: Path, experiment: str | None = None) -> str:
    """The command that recomputes the cache in ``directory`` (``<root>/<profile>/<experiment>``)."""
    return f"python -m pathlib_pw run {experiment or directory.name} --profile {directory.parent.name} --force"


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _corrupt(path: Path, error: BaseException, experiment: str | None = None) -> CorruptCache:
    return CorruptCache(
        f"{path}: unreadable or corrupt ({_one_line(error)}): recompute it with `{_remake(path.parent, experiment)}`"
    )


def _write_error(directory: Path, error: OSError) -> CacheWriteError:
    why = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    out = CacheWriteError(
        f"cannot write the results to {directory}: {why}{where}; make the folder writable and free some space, "
        f"or set {RESULTS_ENV} to another folder"
    )
    out.errno = error.errno
    return out


def _sha256(a: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([a.dtype.str, list(a.shape)]).encode())
    digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def array_digest(a: np.ndarray) -> dict[str, Any]:
    """``{"sha256": <of dtype, shape and bytes>, "rows": [<sha256 of a[i]> for each i]}``; "rows" only for
    arrays with ndim >= 1 and at most :data:`MAX_ROW_DIGESTS` rows (they locate the first changed row, for
    per-image arrays the image)."""
    a = np.asarray(a)
    if a.dtype.hasobject:
        raise TypeError(f"array of dtype {a.dtype} has no byte digest: cache numbers and strings only")
    out: dict[str, Any] = {"sha256": _sha256(a)}
    if a.ndim >= 1 and len(a) <= MAX_ROW_DIGESTS:
        out["rows"] = [_sha256(row) for row in a]
    return out


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def digests(config_dict: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What ``config.json`` records under ``"digests"``: the sha256 of the canonical JSON of the stored
    configuration and :func:`array_digest` of every array, so every stored number can be checked."""
    return {
        "config": hashlib.sha256(_canonical(config_dict)).hexdigest(),
        "arrays": {k: array_digest(v) for k, v in arrays.items()},
    }


def check_free_space(directory: Path, needed_bytes: int) -> None:
    """:class:`CacheWriteError` naming ``directory`` when its disk has less than ``needed_bytes`` free:
    called before a long computation, so that a full disk is found before the work, not at its end."""
    where = directory
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return  # unknown: the write itself reports a full disk
    if free < needed_bytes:
        raise CacheWriteError(
            f"not enough free space for the results in {directory}: {free / 2**20:.0f} MB free, about "
            f"{needed_bytes / 2**20:.0f} MB needed; free some space or set {RESULTS_ENV} to another folder"
        )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_permissions(path: Path) -> None:
    """Give ``path`` the permissions a plain ``mkdir`` or ``open`` would (``mkdtemp`` and ``mkstemp``
    make them owner-only): 0o777 (folders) or 0o666 (files) less the umask."""
    path.chmod((0o777 if path.is_dir() else 0o666) & ~_umask())


# --- interrupted saves -------------------------------------------------------------------------
# save() writes a temporary sibling ``.<name>.tmp-<pid>-<random>`` (config.json last, so a temporary
# folder holding a config.json is complete), moves a previous result aside to ``.<name>.old-<pid>``,
# renames the temporary folder into place and removes the old one. A process killed in between leaves
# these; the next save/load/is_current/check of the folder recovers from them.


def _leftovers(directory: Path) -> list[tuple[Path, str, int | None]]:
    """(path, "tmp" or "old", pid or None) of the hidden siblings a save of ``directory`` leaves."""
    pattern = re.compile(rf"^\.{re.escape(directory.name)}\.(?:(tmp|old)-(\d+)(?:-.*)?|[a-z0-9_]{{8}})$")
    try:
        siblings = list(directory.parent.iterdir())
    except OSError:
        return []
    found = []
    for path in siblings:
        match = pattern.match(path.name)
        if match and path.is_dir():
            kind = match.group(1) or "tmp"  # mkdtemp's 8 random characters: a save from before pids were added
            found.append((path, kind, int(match.group(2)) if match.group(2) else None))
    return found


def _abandoned(pid: int | None) -> bool:
    """Whether the save that made a leftover is over: its process is gone (or is this one, which is not
    saving while it recovers)."""
    if pid is None or pid == os.getpid():
        return True
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _complete(folder: Path) -> bool:
    """Whether ``folder`` holds a whole, readable result whose arrays match their digests."""
    return not [p for kind, p in _inspect(folder, None, None, rows=False) if kind not in ("no digests", "no decisions")]


def recover(directory: Path) -> None:
    """Finish what an interrupted :func:`save` of ``directory`` left: when the folder is missing, the
    newest complete temporary copy is promoted, else the moved-aside previous result is put back; the
    other leftovers of finished processes are removed."""
    stale = [(path, kind) for path, kind, pid in _leftovers(directory) if _abandoned(pid)]
    if not stale:
        return
    if not directory.exists():
        newest_first = sorted(stale, key=lambda item: (item[1] == "tmp", item[0].stat().st_mtime), reverse=True)
        for path, _ in newest_first:
            if _complete(path):
                with contextlib.suppress(OSError):  # another process may have recovered it first
                    path.rename(directory)
                    break
    for path, _ in stale:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


def save(
    directory: Path,
    experiment: str,
    config: Any,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    decisions: Any = None,
) -> Results:
    """Write the results into ``directory`` atomically (a temporary sibling, then one rename).

    ``config.json`` records the configuration, its hash and the :func:`digests` of the configuration and
    of every array. ``decisions``: a :class:`pathlib_pw.decisions.DecisionLog` saved beside the arrays.
    A folder that cannot be written raises :class:`CacheWriteError`; any failure, Ctrl-C included,
    leaves the previous result in place and no temporary folder behind.
    """
    recover(directory)
    payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    stored = config_dict(config)
    header = {
        **meta,  # what describes these arrays is computed here: a loaded cache's meta cannot override it
        "experiment": experiment,
        "config": stored,
        "config_hash": config_hash(experiment, config),
        "versions": versions(),
        "digests": digests(stored, payload),
    }
    text = json.dumps(header, indent=2, sort_keys=True) + "\n"  # unserializable metadata fails before any write

    def write(tmp: Path) -> None:
        np.savez_compressed(tmp / ARRAYS_FILE, **payload)
        if decisions is not None:
            decisions.save(tmp / DECISIONS_FILE)
        (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")  # last: a folder with a config.json is complete

    _install(directory, write)
    return load(directory)


def replace_folder(directory: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` fills a temporary sibling of ``directory``, which then replaces it: the previous
    folder is moved aside, the new one renamed into place, the old one removed. Any failure, Ctrl-C
    included, leaves the previous folder in place and no temporary folder behind."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-{os.getpid()}-", dir=directory.parent))
    moved = None
    try:
        normal_permissions(tmp)
        write(tmp)
        if directory.exists():
            moved = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            directory.rename(moved)
        tmp.rename(directory)
    except BaseException:
        if moved is not None and not directory.exists():
            with contextlib.suppress(OSError):  # else the next start recovers it
                moved.rename(directory)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if moved is not None:
        shutil.rmtree(moved, ignore_errors=True)


def _install(directory: Path, write: Callable[[Path], None]) -> None:
    """:func:`replace_folder` for a result folder: a folder that cannot be written raises
    :class:`CacheWriteError`, which says how to make room or write elsewhere."""
    try:
        replace_folder(directory, write)
    except CacheWriteError:
        raise
    except OSError as error:
        raise _write_error(directory, error) from error


def add_records(directory: Path, decisions: Any, **meta: Any) -> None:
    """Replace the recorded decisions of the cache in ``directory`` by ``decisions`` (a
    :class:`pathlib_pw.decisions.DecisionLog` holding the old ones and more) and add ``meta`` to its
    header, atomically; the arrays, configuration and digests stay byte for byte."""
    recover(directory)
    header = _read_header(directory / CONFIG_FILE)
    header.update(meta)
    text = json.dumps(header, indent=2, sort_keys=True) + "\n"

    def write(tmp: Path) -> None:
        shutil.copyfile(directory / ARRAYS_FILE, tmp / ARRAYS_FILE)
        decisions.save(tmp / DECISIONS_FILE)
        (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")

    _install(directory, write)


def _read_header(path: Path, experiment: str | None = None) -> dict[str, Any]:
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(header, dict) or not isinstance(header["config"], dict):
            raise TypeError("not an object with a 'config' object")
        return header
    except FileNotFoundError:
        raise
    except _READ_ERRORS as error:
        raise _corrupt(path, error, experiment) from error


def _read_npz(path: Path, experiment: str | None = None) -> dict[str, np.ndarray]:
    """Every array of ``path``, each read whole (which checks the zip members' CRCs)."""
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except _READ_ERRORS as error:
        raise _corrupt(path, error, experiment) from error


def load(directory: Path) -> Results:
    """The cached results in ``directory``: FileNotFoundError when it holds none, :class:`CorruptCache`
    (one line naming the file) when a file is missing or unreadable."""
    recover(directory)
    config_path, arrays_path = directory / CONFIG_FILE, directory / ARRAYS_FILE
    if not config_path.exists() and not arrays_path.exists():
        raise FileNotFoundError(f"no cached results in {directory}: compute them with `{_remake(directory)}`")
    for path in (config_path, arrays_path):
        if not path.exists():
            raise CorruptCache(f"{path}: missing: recompute the cache with `{_remake(directory)}`")
    header = _read_header(config_path)
    arrays = _read_npz(arrays_path)
    try:
        experiment = header["experiment"]
    except KeyError as error:
        raise _corrupt(config_path, error) from error
    meta = {k: v for k, v in header.items() if k not in ("experiment", "config")}
    return Results(experiment, header["config"], meta, arrays)


def load_decisions(directory: Path) -> Any:
    """The recorded decisions of a cached result, or None when it has none (:class:`CorruptCache` when
    the file is unreadable)."""
    from pathlib_pw.decisions import DecisionLog

    recover(directory)
    path = directory / DECISIONS_FILE
    if not path.exists():
        return None
    try:
        return DecisionLog.load(path)
    except _READ_ERRORS as error:
        raise _corrupt(path, error) from error


def _differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two configurations (JSON data) differ."""
    if isinstance(stored, dict) and isinstance(current, dict):
        return [
            d for k in sorted(set(stored) | set(current)) for d in _differences(stored.get(k), current.get(k), f"{prefix}{k}.")
        ]
    return [] if stored == current else [prefix.rstrip(".") or "(the whole configuration)"]


def _inspect(directory: Path, experiment: str | None, config: Any, rows: bool = True) -> list[tuple[str, str]]:
    """(kind, line) of every problem of the cache in ``directory``; ``config`` None skips the checks
    against the current configuration. ``rows`` locates the first changed row of a changed array."""
    fix = f"recompute it with `{_remake(directory, experiment)}`"
    config_path, arrays_path, decisions_path = directory / CONFIG_FILE, directory / ARRAYS_FILE, directory / DECISIONS_FILE
    problems: list[tuple[str, str]] = []
    header: dict[str, Any] | None = None
    if not config_path.exists():
        problems.append(("missing", f"{config_path}: missing: {fix}"))
    else:
        try:
            header = _read_header(config_path, experiment)
        except (CorruptCache, OSError) as error:
            problems.append(
                ("corrupt", str(error) if isinstance(error, CorruptCache) else str(_corrupt(config_path, error, experiment)))
            )
    recorded = header.get("digests") if header is not None else None
    if header is not None and config is not None:
        current = config_hash(experiment or directory.name, config)
        if header.get("config_hash") != current:
            problems.append(
                (
                    "hash",
                    f"{config_path}: stored configuration hash {header.get('config_hash')} is not the current one {current} "
                    f"(another configuration or library version): {fix}",
                )
            )
        changed = _differences(header["config"], config_dict(config))
        if changed:
            problems.append(
                ("config", f"{config_path}: stored setting(s) {', '.join(changed)} differ from the current configuration: {fix}")
            )
    if header is not None and not isinstance(recorded, dict):
        problems.append(("no digests", f"no digests in {config_path} (cached before content digests): {fix} to record them"))
        recorded = None
    elif header is not None and recorded is not None:
        if recorded.get("config") != hashlib.sha256(_canonical(header["config"])).hexdigest():
            problems.append(
                ("config", f"{config_path}: the stored configuration does not match its digest (a setting was changed): {fix}")
            )
    arrays: dict[str, np.ndarray] | None = None
    if not arrays_path.exists():
        problems.append(("missing", f"{arrays_path}: missing: {fix}"))
    else:
        try:
            arrays = _read_npz(arrays_path, experiment)
        except CorruptCache as error:
            problems.append(("corrupt", str(error)))
        except OSError as error:
            problems.append(("corrupt", str(_corrupt(arrays_path, error, experiment))))
    if arrays is not None and recorded is not None:
        problems += [
            ("array", f"{arrays_path}: {line}: {fix}") for line in _array_problems(arrays, recorded.get("arrays") or {}, rows)
        ]
    if not decisions_path.exists():
        problems.append(("no decisions", f"{decisions_path}: missing (verify cannot replay the decisions): {fix}"))
    else:
        try:
            _read_npz(decisions_path, experiment)
        except CorruptCache as error:
            problems.append(("corrupt", str(error)))
        except OSError as error:
            problems.append(("corrupt", str(_corrupt(decisions_path, error, experiment))))
    return problems


def _array_problems(arrays: Mapping[str, np.ndarray], recorded: Mapping[str, Any], rows: bool) -> list[str]:
    lines = [f"array {name!r} has no recorded digest (an extra array)" for name in sorted(set(arrays) - set(recorded))]
    lines += [f"array {name!r} is recorded but missing" for name in sorted(set(recorded) - set(arrays))]
    for name in sorted(set(arrays) & set(recorded)):
        a, expected = arrays[name], recorded[name]
        if _sha256(a) == expected.get("sha256"):
            continue
        stored_rows = expected.get("rows")
        if not rows or stored_rows is None or a.ndim == 0:
            lines.append(f"array {name!r} differs from its recorded digest")
        elif len(a) != len(stored_rows):
            lines.append(f"array {name!r} holds {len(a)} rows, its digest {len(stored_rows)}")
        else:
            first = next((i for i, row in enumerate(a) if _sha256(row) != stored_rows[i]), None)
            where = f"first at row {first} (image {first} for a per-image array)" if first is not None else "in dtype or shape"
            lines.append(f"array {name!r} differs from its recorded digest, {where}")
    return lines


def check(directory: Path, experiment: str, config: Any) -> list[str]:
    """Every problem of the cache of ``experiment`` in ``directory`` against ``config``, one line each
    naming the file and the command that recomputes it: a missing or unreadable ``config.json``,
    ``arrays.npz`` or ``decisions.npz``; a stored configuration changed since it was computed (its digest)
    or other than ``config``; a stored hash not the current one; an array whose content differs from
    its digest (naming the array and its first changed row), arrays missing or extra. An empty list:
    intact. A cache from before digests gives exactly one line starting with ``no digests``."""
    recover(directory)
    return [line for _, line in _inspect(directory, experiment, config)]


# is_current's digest checks of unchanged files, by (path, size, mtime, inode) of the files read
_checked: dict[tuple[Any, ...], bool] = {}


def _stamp(directory: Path) -> tuple[Any, ...] | None:
    stamp: list[Any] = [str(directory.resolve())]
    for name in (CONFIG_FILE, ARRAYS_FILE, DECISIONS_FILE):
        try:
            s = (directory / name).stat()
            stamp.append((s.st_size, s.st_mtime_ns, s.st_ino))
        except FileNotFoundError:
            stamp.append(None)
        except OSError:
            return None
    return tuple(stamp)


def is_current(directory: Path, experiment: str, config: Any) -> bool:
    """True when ``directory`` holds a readable result of exactly this configuration and library version
    whose arrays match their recorded digests (a cache from before digests: readable is enough). False
    for a missing, truncated or corrupt cache, so that ``run`` recomputes it."""
    recover(directory)
    try:
        header = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (*_READ_ERRORS,):
        return False
    if not isinstance(header, dict) or header.get("config_hash") != config_hash(experiment, config):
        return False
    stamp = _stamp(directory)
    if stamp is not None and (stamp, experiment) in _checked:
        return _checked[stamp, experiment]
    ok = not [p for kind, p in _inspect(directory, experiment, config, rows=False) if kind not in ("no digests", "no decisions")]
    if stamp is not None:
        _checked[stamp, experiment] = ok
    return ok


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
