"""Per-image experiments split into chunks of images, shared among processes, resumable.

Under ``torchrun --nproc_per_node=N -m pathlib_pw run EXPERIMENT`` every rank computes every N-th
chunk and writes each finished chunk atomically under ``<results>/<profile>/.shards/``; rank 0 then
merges the chunks in image order into the experiment's usual cache, self-checks it like
:func:`pathlib_pw.experiments.load_or_run`, records ``world_size`` in its ``config.json`` and removes
the shards. Running the same command again after an interruption skips the finished chunks, whatever
the number of processes.

A chunk is a whole number of the experiment's batches and its images keep their numbers in the whole
run (:meth:`~pathlib_pw.runner.inputs.Inputs.window`), so per-image seeds, recorded threshold
decisions and batches are those of a single-process run: the merge equals it (tested). The processes
synchronize through ``torch.distributed`` with the gloo backend, which also serves processes that
compute on GPUs: they exchange nothing but barriers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from pathlib_pw import decisions
from pathlib_pw.experiments import EXPERIMENTS, _parts, _self_check_and_save, get_config, load_or_run, recorded_keys, run
from pathlib_pw.runner import cache
from pathlib_pw.runner.contract import Profile, image_count

CHUNK_IMAGES = 16  # images per chunk, rounded up to whole batches of the experiment
CHUNK_ENV = "PATHLIB_PW_CHUNK_IMAGES"  # another chunk size: finer resuming and load balance, more files
SHARDS = ".shards"
_SECONDS = "__seconds__"


@dataclasses.dataclass(frozen=True)
class Processes:
    """Where this process stands among the ones sharing the work (torchrun's environment)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def device(self, device: str) -> str:
        """``device`` for this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` when several share a node."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.world_size > 1 else device


@contextlib.contextmanager
def processes(timeout_hours: float = 48.0) -> Iterator[Processes]:
    """The process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), gloo backend,
    destroyed on exit; a single process without torchrun. Waiting ranks block in barriers while rank
    0 runs an experiment that is not per image, hence the long timeout."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield Processes()
        return
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=timeout_hours))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # for code that allocates on "the" current GPU
    try:
        yield Processes(dist.get_rank(), dist.get_world_size(), local_rank)
    finally:
        if created:
            dist.destroy_process_group()


def shardable(experiment: str) -> bool:
    """Whether ``experiment`` is computed image by image (its module sets ``SHARD_BY_IMAGE = True``)."""
    return bool(getattr(_parts(experiment).module, "SHARD_BY_IMAGE", False))


def chunk_size(config: Any) -> int:
    """Images per chunk: :data:`CHUNK_IMAGES` (or ``$PATHLIB_PW_CHUNK_IMAGES``) rounded up to whole
    batches of the configuration."""
    batch = int(getattr(config, "batch_size", None) or getattr(config, "batch", None) or 1)
    wanted = os.environ.get(CHUNK_ENV, str(CHUNK_IMAGES))
    if not wanted.isdigit() or int(wanted) < 1:
        raise ValueError(f"{CHUNK_ENV} must be a positive integer, got {wanted!r}")
    return batch * math.ceil(int(wanted) / batch)


def chunks(n_images: int, size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of ``n_images`` images, in image order."""
    return [(start, min(start + size, n_images)) for start in range(0, n_images, size)]


def shard_directory(experiment: str, profile: str, config: Any) -> Path:
    """Where the chunks of ``experiment`` under ``profile`` are kept until merged: keyed by the
    configuration's hash, so a run after a configuration change never resumes from the old chunks."""
    return cache.results_root() / profile / SHARDS / f"{experiment}-{cache.config_hash(experiment, config)[:16]}"


def _prepare_shards(experiment: str, config: Any, shards: Path, force: bool) -> None:
    """The chunk folder of this configuration, empty under ``force``; chunk folders of the experiment's
    other configurations are removed (they can never be resumed by this code), as is a folder whose
    recorded configuration is not this one."""
    stored = shards / "config.json"
    wanted = cache.config_dict(config)
    try:
        if shards.exists() and not force:
            try:
                force = json.loads(stored.read_text(encoding="utf-8")) != wanted
            except (OSError, ValueError):
                force = True
        if force:
            shutil.rmtree(shards, ignore_errors=True)
        for other in shards.parent.glob(f"{experiment}-*"):
            if other != shards and other.is_dir() and len(other.name) == len(shards.name):
                shutil.rmtree(other, ignore_errors=True)
        shards.mkdir(parents=True, exist_ok=True)
        if not stored.exists():
            _write_atomic(
                stored, lambda tmp: tmp.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            )
    except cache.CacheWriteError:
        raise
    except OSError as error:
        raise cache.CacheWriteError(f"cannot write the chunks of {experiment} to {shards}: {error.strerror or error}") from error


def needed_bytes(directory: Path) -> int:
    """Free space to ask for before computing the results of ``directory``: four times an existing
    cache's size (uncompressed chunks, then the new copy written beside the old one), else
    :data:`pathlib_pw.runner.cache.DEFAULT_NEEDED_BYTES`."""
    size = sum(p.stat().st_size for p in directory.glob("*") if p.is_file()) if directory.is_dir() else 0
    return 4 * size if size else cache.DEFAULT_NEEDED_BYTES


def _shard_file(directory: Path, start: int, stop: int) -> Path:
    return directory / f"images-{start:07d}-{stop:07d}.npz"


def _decisions_file(directory: Path, start: int, stop: int) -> Path:
    """Where the recorded threshold decisions of a chunk go (written before its images)."""
    return directory / f"decisions-{start:07d}-{stop:07d}.npz"


def _write_atomic(path: Path, write: Any) -> None:
    """``write(tmp_path)``, then one rename: a file at ``path`` is always complete."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        cache.normal_permissions(Path(tmp))  # mkstemp's file is owner-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_shard(path: Path, arrays: Mapping[str, np.ndarray], seconds: float) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
            payload[_SECONDS] = np.float64(seconds)
            np.savez(f, **payload)

    _write_atomic(path, write)


def _load_shard(path: Path) -> tuple[dict[str, np.ndarray], float]:
    """A chunk's arrays and seconds; an unreadable chunk is removed and raises
    :class:`pathlib_pw.runner.cache.CorruptCache` (rerunning recomputes only its images)."""
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files if k != _SECONDS}
            return arrays, float(data[_SECONDS])
    except cache._READ_ERRORS as error:
        path.unlink(missing_ok=True)
        raise cache.CorruptCache(
            f"{path}: unreadable chunk ({' '.join(str(error).split())}), removed: rerun the same command to recompute its images"
        ) from error


def merge(parts: Sequence[Mapping[str, np.ndarray]], per_image: set[str]) -> dict[str, np.ndarray]:
    """The chunks' arrays as one result: per-image arrays concatenated in order, every other array
    equal in all chunks (ValueError naming the first that differs)."""
    if not parts:
        raise ValueError("parts must hold at least one chunk")
    keys = set(parts[0])
    for i, part in enumerate(parts[1:], 1):
        if set(part) != keys:
            raise ValueError(f"chunk {i} holds arrays {sorted(part)}, chunk 0 {sorted(keys)}")
    merged = {}
    for key in sorted(keys):
        if key in per_image:
            merged[key] = np.concatenate([part[key] for part in parts])
            continue
        first = parts[0][key]
        for i, part in enumerate(parts[1:], 1):
            same = first.shape == part[key].shape and np.array_equal(first, part[key], equal_nan=first.dtype.kind in "fc")
            if not same:
                raise ValueError(f"array {key!r} is not per image but differs between chunk 0 and chunk {i}")
        merged[key] = first
    return merged


def finished_images(directory: Path) -> int:
    """How many images the finished chunks in ``directory`` hold."""
    return sum(int(p.stem.split("-")[2]) - int(p.stem.split("-")[1]) for p in directory.glob("images-*.npz"))


def run_sharded(
    experiment: str,
    profile: Profile = "book",
    device: str = "cpu",
    force: bool = False,
    progress: bool = True,
    procs: Processes = Processes(),
) -> cache.Results:
    """The cached result of per-image ``experiment`` under ``profile``, computed chunk by chunk by the
    processes in ``procs`` (see the module docstring); cached results are returned unless ``force``."""
    if not shardable(experiment):
        raise ValueError(f"experiment {experiment!r} is not computed image by image: use load_or_run")
    config = get_config(experiment, profile)
    directory = cache.results_root() / profile / experiment
    if not force and cache.is_current(directory, experiment, config):
        return cache.load(directory)
    shards = shard_directory(experiment, profile, config)
    if procs.rank == 0:
        cache.check_free_space(directory.parent, needed_bytes(directory))
        _prepare_shards(experiment, config, shards, force)
    procs.barrier()
    todo = chunks(image_count(config), chunk_size(config))
    start_time = time.perf_counter()
    _compute(experiment, config, todo[procs.rank :: procs.world_size], shards, procs, device, progress)
    procs.barrier()
    if procs.rank == 0:
        _merge_and_save(experiment, profile, config, todo, shards, procs, device)
        print(f"{experiment}/{profile}: {time.perf_counter() - start_time:.1f} s on {procs.world_size} process(es)")
    procs.barrier()
    return cache.load(directory)


def _compute(
    experiment: str,
    config: Any,
    mine: Sequence[tuple[int, int]],
    shards: Path,
    procs: Processes,
    device: str,
    progress: bool,
) -> None:
    total = image_count(config)
    bar = tqdm(
        total=total,
        initial=finished_images(shards),
        unit="img",
        desc=f"{experiment} ({procs.world_size} process{'es' if procs.world_size > 1 else ''})",
        disable=not progress or procs.rank != 0,
        smoothing=0.1,
    )
    with bar:
        for start, stop in mine:
            path = _shard_file(shards, start, stop)
            keys = recorded_keys(experiment, config)
            if path.exists() and (_decisions_file(shards, start, stop).exists() or (keys is not None and start > 0)):
                continue
            part = dataclasses.replace(config, inputs=config.inputs.window(start, stop))
            if keys is None or start == 0:  # the images `verify` recomputes: record their threshold decisions
                with decisions.recording(only=keys) as log:
                    arrays, seconds = run(experiment, part, device, progress=False)
                _write_atomic(_decisions_file(shards, start, stop), log.save)
            else:
                arrays, seconds = run(experiment, part, device, progress=False)
            _save_shard(path, arrays, seconds)
            bar.update(finished_images(shards) - bar.n)  # all processes' chunks, read from disk


def _merge_and_save(
    experiment: str,
    profile: Profile,
    config: Any,
    todo: Sequence[tuple[int, int]],
    shards: Path,
    procs: Processes,
    device: str,
) -> None:
    loaded = [_load_shard(_shard_file(shards, start, stop)) for start, stop in todo]
    arrays = merge([a for a, _ in loaded], set(_parts(experiment).module.PER_IMAGE))
    log = decisions.DecisionLog()
    for start, stop in todo:
        if _decisions_file(shards, start, stop).exists():
            log.records.update(decisions.DecisionLog.load(_decisions_file(shards, start, stop)).records)
    seconds = sum(s for _, s in loaded)
    try:
        _self_check_and_save(
            experiment,
            profile,
            config,
            arrays,
            log,
            device,
            seconds,
            world_size=procs.world_size,
            chunk_images=chunk_size(config),
        )
    except OSError as error:  # the chunks stay: a rerun merges them without computing them again
        raise cache.CacheWriteError(
            f"{error}; the finished chunks are kept in {shards}: rerun the same command to merge them"
        ) from error
    shutil.rmtree(shards, ignore_errors=True)


def run_experiment(
    experiment: str,
    profile: Profile = "book",
    device: str = "cpu",
    force: bool = False,
    progress: bool = True,
    procs: Processes = Processes(),
) -> cache.Results:
    """What ``python -m pathlib_pw run`` does for one experiment: per-image experiments chunk by chunk
    on all processes (:func:`run_sharded`), the others on rank 0 while the rest wait. An experiment
    whose computation and configuration equal those of another's current cache (``sanity_own_class``
    under ``paper``) takes that cache's arrays instead of computing them again."""
    if not force and procs.rank == 0:
        _reuse_identical(experiment, profile)
    procs.barrier()
    if shardable(experiment):
        return run_sharded(experiment, profile, device, force, progress, procs)
    if procs.rank == 0:
        directory = cache.results_root() / profile / experiment
        if force or not cache.is_current(directory, experiment, get_config(experiment, profile)):
            cache.check_free_space(directory.parent, needed_bytes(directory))
        load_or_run(experiment, profile, device, force, progress)
    procs.barrier()
    return cache.load(cache.results_root() / profile / experiment)


def _reuse_identical(experiment: str, profile: Profile) -> None:
    """Copy the cache of another experiment with the same computation when its stored configuration
    equals this one's and it is intact (every digest checks out, :func:`pathlib_pw.runner.cache.check`)."""
    config = get_config(experiment, profile)
    directory = cache.results_root() / profile / experiment
    if cache.is_current(directory, experiment, config):
        return
    for other in EXPERIMENTS:
        source = cache.results_root() / profile / other
        if other == experiment or _parts(other).module.run is not _parts(experiment).module.run:
            continue
        other_config = get_config(other, profile)
        if cache.config_dict(other_config) != cache.config_dict(config):
            continue
        if cache.is_current(source, other, other_config) and not cache.check(source, other, other_config):
            found = cache.load(source)
            meta = {k: v for k, v in found.meta.items() if k not in ("config_hash", "versions")}
            cache.save(directory, experiment, config, found.arrays, {**meta, "copied_from": other}, cache.load_decisions(source))
            return


__all__ = [
    "CHUNK_IMAGES",
    "Processes",
    "chunk_size",
    "chunks",
    "merge",
    "processes",
    "run_experiment",
    "run_sharded",
    "shardable",
]
