"""The results cache under faults (issue 28): content digests that cover every stored number, corrupt
and truncated files, a save interrupted between its two renames or by Ctrl-C, unwritable folders and
full disks, permissions, and what enters the cache key.

References: digests recomputed here with hashlib from their definition; hand-made damage (a doubled
value of the last image, an edited setting, truncated or flipped bytes, invalid UTF-8); the state a
kill leaves, copied at the moment of the kill."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pathlib_pw import experiments
from pathlib_pw.runner import cache


@dataclasses.dataclass(frozen=True)
class Toy:
    images: tuple[str, ...] = ("a", "b", "c", "d")
    scale: float = 2.0


@dataclasses.dataclass(frozen=True)
class ToyLater:
    images: tuple[str, ...] = ("a", "b", "c", "d")
    scale: float = 2.0
    chunk: int | None = cache.added_field(None)


class Log:
    """Stands in for a DecisionLog: something saved as decisions.npz."""

    def save(self, path: Path) -> None:
        np.savez_compressed(path, kept=np.arange(5))


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"maps": rng.random((4, 3, 5)), "names": np.array(["a", "b", "c", "d"]), "level": np.float64(90.0)}


def _saved(tmp_path: Path, config: object = Toy()) -> Path:
    directory = tmp_path / "book" / "toy"
    cache.save(directory, "toy", config, _arrays(), {"device": "cpu"}, Log())
    return directory


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(json.dumps([a.dtype.str, list(a.shape)]).encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


# --- digests -------------------------------------------------------------------------------------


def test_saved_digests_are_those_of_the_definition(tmp_path):
    directory = _saved(tmp_path)
    recorded = json.loads((directory / "config.json").read_text())["digests"]
    stored = {"images": ["a", "b", "c", "d"], "scale": 2.0}
    assert recorded["config"] == hashlib.sha256(json.dumps(stored, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    maps = _arrays()["maps"]
    assert recorded["arrays"]["maps"] == {"sha256": _sha(maps), "rows": [_sha(maps[i]) for i in range(4)]}
    assert recorded["arrays"]["level"] == {"sha256": _sha(np.asarray(90.0))}  # no rows for a scalar
    assert recorded == cache.digests(stored, _arrays())
    assert "rows" not in cache.array_digest(np.zeros(cache.MAX_ROW_DIGESTS + 1))
    assert cache.array_digest(np.zeros(2, np.float32)) != cache.array_digest(np.zeros(2, np.int32))  # same bytes
    assert cache.array_digest(np.zeros((2, 3))) != cache.array_digest(np.zeros((3, 2)))


def test_saving_with_a_loaded_caches_meta_records_the_new_hash_and_digests(tmp_path):
    directory = _saved(tmp_path)
    meta = cache.load(directory).meta  # holds the old configuration's hash and digests
    cache.save(directory, "toy", Toy(scale=5.0), {"x": np.ones(2)}, meta, Log())
    assert cache.load(directory).meta["config_hash"] == cache.config_hash("toy", Toy(scale=5.0))
    assert cache.check(directory, "toy", Toy(scale=5.0)) == []


def test_an_intact_cache_checks_clean(tmp_path):
    directory = _saved(tmp_path)
    assert cache.check(directory, "toy", Toy()) == []
    assert cache.is_current(directory, "toy", Toy())


def test_check_names_the_array_and_image_of_a_doubled_value(tmp_path):
    directory = _saved(tmp_path)
    arrays = _arrays()
    arrays["maps"][3, 1, 2] *= 2  # one value of the last image
    np.savez_compressed(directory / "arrays.npz", **arrays)
    (line,) = cache.check(directory, "toy", Toy())
    assert str(directory / "arrays.npz") in line and "'maps'" in line and "row 3" in line
    assert "python -m pathlib_pw run toy --profile book --force" in line
    assert not cache.is_current(directory, "toy", Toy())


def test_check_names_a_changed_stored_setting(tmp_path):
    directory = _saved(tmp_path)
    header = json.loads((directory / "config.json").read_text())
    header["config"]["scale"] = 3.0  # the stored hash left as it was
    (directory / "config.json").write_text(json.dumps(header))
    problems = cache.check(directory, "toy", Toy())
    assert problems and all(str(directory / "config.json") in p for p in problems)
    assert any("scale" in p for p in problems)
    assert any("does not match its digest" in p for p in problems)
    assert not cache.is_current(directory, "toy", Toy())


def test_check_names_a_stale_hash_and_missing_or_extra_arrays(tmp_path):
    directory = _saved(tmp_path)
    assert any("is not the current one" in p for p in cache.check(directory, "toy", Toy(scale=5.0)))
    arrays = _arrays()
    del arrays["level"]
    arrays["extra"] = np.ones(2)
    np.savez_compressed(directory / "arrays.npz", **arrays)
    problems = cache.check(directory, "toy", Toy())
    assert any("'extra'" in p and "extra array" in p for p in problems)
    assert any("'level'" in p and "missing" in p for p in problems)
    (directory / "decisions.npz").unlink()
    assert any(str(directory / "decisions.npz") in p and "missing" in p for p in cache.check(directory, "toy", Toy()))


def test_a_cache_from_before_digests_gives_exactly_one_no_digests_line(tmp_path):
    directory = _saved(tmp_path)
    header = json.loads((directory / "config.json").read_text())
    del header["digests"]
    (directory / "config.json").write_text(json.dumps(header))
    (line,) = cache.check(directory, "toy", Toy())
    assert line.startswith("no digests") and str(directory / "config.json") in line
    assert cache.is_current(directory, "toy", Toy())  # readable and of this configuration: still used


# --- corrupt files -------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def _bad_utf8(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b'"device"', b'"dev\xff\xfeice"'))


@pytest.mark.parametrize(
    "name, damage",
    [
        ("arrays.npz", _truncate),
        ("arrays.npz", _flip),
        ("decisions.npz", _truncate),
        ("decisions.npz", _flip),
        ("config.json", _bad_utf8),
        ("config.json", _truncate),
    ],
    ids=["arrays-truncated", "arrays-flipped", "decisions-truncated", "decisions-flipped", "config-utf8", "config-truncated"],
)
def test_a_corrupt_file_is_one_clear_line_and_not_current(tmp_path, name, damage):
    directory = _saved(tmp_path)
    assert cache.is_current(directory, "toy", Toy())  # remembered: the damage must still be seen
    damage(directory / name)
    read = cache.load_decisions if name == "decisions.npz" else cache.load
    with pytest.raises(cache.CorruptCache) as raised:
        read(directory)
    message = str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert "\n" not in message and message.startswith(str(directory / name)) and "--force" in message
    assert not cache.is_current(directory, "toy", Toy())
    problems = cache.check(directory, "toy", Toy())
    assert any(p.startswith(str(directory / name)) for p in problems), problems


def test_load_of_a_folder_without_results_says_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m pathlib_pw run toy --profile book"):
        cache.load(tmp_path / "book" / "toy")
    directory = _saved(tmp_path)
    (directory / "arrays.npz").unlink()
    with pytest.raises(cache.CorruptCache, match="arrays.npz: missing"):
        cache.load(directory)


def test_run_recomputes_a_cache_with_a_truncated_decisions_file(smoke_root, maps_runs):
    experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    directory = smoke_root / "smoke" / "maps_vs_sparsity"
    _truncate(directory / cache.DECISIONS_FILE)
    maps_runs.clear()
    experiments.load_or_run("maps_vs_sparsity", "smoke", progress=False)
    assert maps_runs, "a cache with a truncated decisions.npz was used as it was"
    assert cache.check(directory, "maps_vs_sparsity", experiments.get_config("maps_vs_sparsity", "smoke")) == []


# --- interrupted saves ----------------------------------------------------------------------------


def _kill_between_renames(monkeypatch, tmp_path: Path, snapshot: Path) -> None:
    """Path.rename copying ``tmp_path`` to ``snapshot`` (the state a kill leaves) at its second call, then
    raising (the failure the running process sees)."""
    real_rename = Path.rename
    count = []

    def rename(self, target):
        count.append(self)
        if len(count) == 2:
            shutil.copytree(tmp_path / "book", snapshot, symlinks=True)
            raise OSError(errno.EIO, "Input/output error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)


def test_a_failure_between_the_renames_puts_the_old_result_back(tmp_path, monkeypatch):
    directory = _saved(tmp_path)
    _kill_between_renames(monkeypatch, tmp_path, tmp_path / "snapshot")
    with pytest.raises(cache.CacheWriteError, match=str(directory)):
        cache.save(directory, "toy", Toy(scale=5.0), {"x": np.ones(2)}, {}, Log())
    monkeypatch.undo()
    assert sorted(p.name for p in directory.parent.iterdir()) == ["toy"]
    assert cache.is_current(directory, "toy", Toy()) and cache.check(directory, "toy", Toy()) == []


@pytest.mark.parametrize("access", ["load", "is_current", "check", "save"])
@pytest.mark.parametrize("temporary_complete", [True, False])
def test_a_kill_between_the_renames_is_recovered_on_the_next_access(tmp_path, monkeypatch, access, temporary_complete):
    directory = _saved(tmp_path)
    killed = tmp_path / "killed"
    _kill_between_renames(monkeypatch, tmp_path, killed)
    with pytest.raises(OSError):
        cache.save(directory, "toy", Toy(scale=5.0), {"x": np.ones(2)}, {}, Log())
    monkeypatch.undo()
    hidden = sorted(p.name for p in killed.iterdir())
    assert "toy" not in hidden and len(hidden) == 2, hidden  # the old result moved aside, the new one not in place
    if not temporary_complete:  # as if killed before the temporary folder's last write
        (next(killed.glob(".toy.tmp-*")) / "config.json").unlink()
    moved = killed / "toy"
    if access == "load":
        cache.load(moved)
    elif access == "is_current":
        cache.is_current(moved, "toy", Toy())
    elif access == "check":
        cache.check(moved, "toy", Toy())
    else:
        cache.save(killed / "other", "toy", Toy(), {"y": np.zeros(1)}, {})
        cache.save(moved, "toy", Toy(scale=7.0), {"x": np.zeros(3)}, {}, Log())
    assert sorted(p.name for p in killed.iterdir()) == (["other", "toy"] if access == "save" else ["toy"])
    if access == "save":
        assert cache.check(moved, "toy", Toy(scale=7.0)) == []
    elif temporary_complete:  # the newer complete copy was promoted
        assert cache.check(moved, "toy", Toy(scale=5.0)) == []
    else:  # the moved-aside copy was put back
        assert cache.check(moved, "toy", Toy()) == []


def test_leftovers_of_a_running_save_are_left_alone(tmp_path):
    directory = _saved(tmp_path)
    running = tmp_path / "book" / f".toy.tmp-{os.getppid()}-abc"  # a live process's save in progress
    running.mkdir()
    dead = tmp_path / "book" / f".toy.old-{os.getpid()}"
    shutil.copytree(directory, dead)
    cache.load(directory)
    assert running.exists() and not dead.exists()


def test_leftovers_of_a_killed_process_and_of_older_saves_are_recovered(tmp_path):
    import subprocess
    import sys

    directory = _saved(tmp_path)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    shutil.move(directory, tmp_path / "book" / f".toy.old-{dead_pid}")  # moved aside by a killed save
    newer = tmp_path / "newer"
    cache.save(newer, "toy", Toy(scale=5.0), {"x": np.ones(2)}, {}, Log())
    shutil.move(newer, tmp_path / "book" / ".toy.k3j_x9ab")  # its temporary folder, named as before pids
    unrelated = tmp_path / "book" / ".toy.backup.d"
    unrelated.mkdir()
    assert cache.is_current(directory, "toy", Toy(scale=5.0))
    assert sorted(p.name for p in directory.parent.iterdir()) == [".toy.backup.d", "toy"]


@pytest.mark.parametrize("where", ["savez_compressed", "rename"])
def test_ctrl_c_during_save_removes_the_temporary_folder(tmp_path, monkeypatch, where):
    directory = _saved(tmp_path)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "savez_compressed":
        monkeypatch.setattr(cache.np, "savez_compressed", interrupt)
    else:
        real_rename = Path.rename

        def rename(self, target):
            if self.name.startswith(".toy.tmp-"):
                raise KeyboardInterrupt
            return real_rename(self, target)

        monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        cache.save(directory, "toy", Toy(scale=5.0), {"x": np.ones(2)}, {}, Log())
    monkeypatch.undo()
    assert sorted(p.name for p in directory.parent.iterdir()) == ["toy"]
    assert cache.check(directory, "toy", Toy()) == []


# --- unwritable folders, permissions ---------------------------------------------------------------


def test_a_read_only_results_folder_is_one_line_naming_it(tmp_path, monkeypatch):
    directory = _saved(tmp_path)

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(directory.parent))

    monkeypatch.setattr(cache.tempfile, "mkdtemp", read_only)
    with pytest.raises(cache.CacheWriteError) as raised:
        cache.save(directory, "toy", Toy(scale=5.0), {"x": np.ones(2)}, {})
    message = str(raised.value)
    assert isinstance(raised.value, OSError) and raised.value.errno == errno.EACCES
    assert "\n" not in message and message.startswith(f"cannot write the results to {directory}") and "Permission denied" in message


def test_check_free_space_names_the_folder(tmp_path, monkeypatch):
    cache.check_free_space(tmp_path / "not" / "yet", 1)  # a folder still to be made: its disk is asked
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(cache.CacheWriteError, match=f"not enough free space for the results in {tmp_path / 'x'}"):
        cache.check_free_space(tmp_path / "x", free + 2**40)


def test_result_folders_and_files_get_the_users_normal_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        directory = _saved(tmp_path)
    finally:
        os.umask(old)
    assert directory.stat().st_mode & 0o777 == 0o750
    for name in ("config.json", "arrays.npz", "decisions.npz"):
        assert (directory / name).stat().st_mode & 0o777 == 0o640, name


# --- the cache key ---------------------------------------------------------------------------------


def test_the_library_version_is_in_the_cache_key(monkeypatch):
    before = cache.config_hash("toy", Toy())
    monkeypatch.setattr(cache, "__version__", "999.0")
    assert cache.config_hash("toy", Toy()) != before


def test_an_added_field_enters_the_key_only_away_from_its_default():
    assert cache.config_hash("toy", ToyLater()) == cache.config_hash("toy", Toy())
    assert cache.config_dict(ToyLater()) == cache.config_dict(Toy())
    assert cache.config_hash("toy", ToyLater(chunk=4)) != cache.config_hash("toy", Toy())
    assert cache.config_dict(ToyLater(chunk=4))["chunk"] == 4
