"""Packaging: the version is written once, every import is declared, the results cache finds its folder in
a checkout and outside one, and a wheel built from the project works outside the repository."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

import pathlib_pw
from pathlib_pw import _version, data, reference
from pathlib_pw.runner import cache

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pathlib_pw"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalized(re.match(r"[A-Za-z0-9_.-]+", requirement.strip()).group(0))


# ---- the version ----------------------------------------------------------------------------------


def test_version_is_written_once_and_read_by_hatchling():
    tree = ast.parse((PACKAGE / "_version.py").read_text())
    assert [type(node) for node in tree.body] == [ast.Assign]
    assert [t.id for t in tree.body[0].targets] == ["__version__"]
    project = _pyproject()
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "pathlib_pw/_version.py"
    assert pathlib_pw.__version__ == _version.__version__ == cache.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", pathlib_pw.__version__)
    for path in PACKAGE.rglob("*.py"):  # no second copy of the version anywhere in the package
        if path.name != "_version.py":
            assert not re.search(r"^__version__\s*=", path.read_text(), re.MULTILINE), path


@dataclasses.dataclass
class _Config:
    model: str = "mobilenet_v2"
    sparsity: float = 90.0
    images: tuple = ("chelsea", "coffee")


def test_cache_keys_are_unchanged(monkeypatch):
    monkeypatch.setattr(cache, "__version__", "0.1.0")
    # computed by the code before the version moved to _version.py (from pathlib_pw import __version__)
    assert cache.config_hash("paths", _Config()) == "2c647b625e172b01"
    monkeypatch.setattr(cache, "__version__", "0.1.1")
    assert cache.config_hash("paths", _Config()) != "2c647b625e172b01"
    monkeypatch.undo()
    payload = json.dumps(
        {"experiment": "paths", "config": cache.config_dict(_Config()), "version": pathlib_pw.__version__}, sort_keys=True
    )
    assert cache.config_hash("paths", _Config()) == hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert cache.versions()["pathlib_pw"] == pathlib_pw.__version__


# ---- the dependencies -----------------------------------------------------------------------------


def _third_party_imports() -> dict[str, list[str]]:
    """Top-level modules imported anywhere in pathlib_pw/ (lazy imports inside functions included)."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("__future__", "pathlib_pw"):
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_import_of_the_package_is_declared():
    project = _pyproject()["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    optional = {_requirement_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    distributions = importlib.metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"torch", "pandas", "matplotlib", "seaborn", "sklearn", "PIL"} <= set(imports)
    for module, where in imports.items():
        provided_by = {_normalized(d) for d in distributions.get(module, [])}
        assert provided_by, f"{module} (imported in {where}) is not installed"
        assert provided_by & (declared | optional), f"{module} (imported in {where}) is not declared in pyproject.toml"
    # requirements.txt keeps the exact pins; pyproject.toml does not repeat them
    assert not [r for r in project["dependencies"] if "==" in r]
    pinned = {
        _requirement_name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert declared <= pinned, f"declared but not in requirements.txt: {sorted(declared - pinned)}"


# ---- where the results cache lives -----------------------------------------------------------------


def _fake_tree(tmp_path: Path, pyproject: str | None, results: bool) -> Path:
    """A folder holding a pathlib_pw/ package (no real files needed) and, optionally, a project file."""
    root = tmp_path / "tree"
    (root / "pathlib_pw").mkdir(parents=True)
    if pyproject is not None:
        (root / "pyproject.toml").write_text(pyproject)
    if results:
        (root / "data" / "results").mkdir(parents=True)
    return root


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A working directory outside every tree, with $PATHLIB_PW_RESULTS unset."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(cache.RESULTS_ENV, raising=False)
    return cwd


def test_results_root_is_the_env_var_when_set(tmp_path, monkeypatch, elsewhere):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path / "mine"))
    assert cache.results_root() == tmp_path / "mine"


def test_results_root_in_this_checkout_is_its_data_results(elsewhere):
    assert cache.checkout_root() == ROOT
    assert cache.results_root() == ROOT / "data" / "results"


def test_results_root_in_a_checkout(tmp_path, monkeypatch, elsewhere):
    root = _fake_tree(tmp_path, '[project]\nname = "pathlib_pw"\ndynamic = ["version"]\n', results=True)
    monkeypatch.setattr(cache, "__file__", str(root / "pathlib_pw" / "runner" / "cache.py"))
    assert cache.checkout_root() == root
    assert cache.results_root() == root / "data" / "results"
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path / "mine"))  # the env var still wins
    assert cache.results_root() == tmp_path / "mine"


@pytest.mark.parametrize(
    "pyproject, results",
    [
        (None, True),  # site-packages: no project file beside the package
        ('[project]\nname = "something_else"\n', True),  # another project vendoring pathlib_pw
        ('[project]\nname = "pathlib_pw"\n', False),  # a source tree without the results folder
    ],
    ids=["installed", "other-project", "no-results-folder"],
)
def test_results_root_outside_a_checkout_is_under_the_working_directory(tmp_path, monkeypatch, elsewhere, pyproject, results):
    root = _fake_tree(tmp_path, pyproject, results)
    monkeypatch.setattr(cache, "__file__", str(root / "pathlib_pw" / "runner" / "cache.py"))
    assert cache.checkout_root() is None
    assert cache.results_root() == elsewhere / "data" / "results"


# ---- the wheel --------------------------------------------------------------------------------------

_IN_THE_WHEEL = r"""
import importlib.metadata, json, os, sys
import torch, torchvision
import pathlib_pw
from pathlib_pw import data, reference
from pathlib_pw.runner import cache

tables = {name: len(reference.authors_table(name)) for name in reference.TABLES}
overlap, dead = reference.authors_overlap()
torch.manual_seed(0)
model = torchvision.models.mobilenet_v2(weights=None).eval()
x = torch.rand(1, 3, 32, 32)
path = pathlib_pw.extract_pathway(model, x, "neuron_mct", 50)
kept = sum(int(m.sum()) for m in path.masks)
total = sum(m.numel() for m in path.masks)
print(json.dumps({
    "file": pathlib_pw.__file__,
    "version": pathlib_pw.__version__,
    "metadata_version": importlib.metadata.version("pathlib_pw"),
    "tables": tables,
    "overlap": float(overlap.loc["NeuronIntGrad", "NeuronMCT"]),
    "table_file": str(reference.reference_file("roar")),
    "kept": kept,
    "sparsity": float(path.sparsity[0]),
    "total": total,
    "results_root": str(cache.results_root()),
    "checkout": str(cache.checkout_root()),
    "pixels_file": str(data.PHOTO_PIXELS_FILE),
    "pixel_arrays": len(data._shipped_pixels()),
}))
"""


def test_wheel_works_outside_the_repository(tmp_path):
    """Build the wheel without network (no build isolation), install it without dependencies into a
    folder of its own and use it from a working directory outside the repository."""
    assert importlib.util.find_spec("hatchling"), "hatchling builds the wheel: pip install -r requirements.txt"
    dist, target, cwd = tmp_path / "dist", tmp_path / "site", tmp_path / "work"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", cache.RESULTS_ENV)}
    env["PIP_NO_INDEX"] = "1"  # nothing may come from the network
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def pip(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "pip", *args], env=env, cwd=cwd, capture_output=True, text=True)
        assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"

    pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist), str(ROOT))
    (wheel,) = dist.glob("pathlib_pw-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for name in reference.TABLES:
        assert f"pathlib_pw/{reference.REFERENCE_FOLDER}/{name}_authors.csv" in names
    assert f"pathlib_pw/{reference.REFERENCE_FOLDER}/README.md" in names
    assert "pathlib_pw/_version.py" in names
    assert "pathlib_pw/py.typed" in names  # PEP 561: type checkers read the package's annotations
    assert {"pathlib_pw/photo_pixels/photos_uint8.npz", "pathlib_pw/photo_pixels/provenance.json"} <= names
    assert not [n for n in names if n.startswith(("data/", "tests/", "book/")) or "/data/results/" in n]
    assert f"Version: {pathlib_pw.__version__}\n" in metadata
    requires = {_requirement_name(line.split(":", 1)[1]) for line in metadata.splitlines() if line.startswith("Requires-Dist:")}
    assert {"pandas", "matplotlib", "seaborn", "scikit-learn", "pillow", "torch"} <= requires

    pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    done = subprocess.run(
        [sys.executable, "-c", _IN_THE_WHEEL], env={**env, "PYTHONPATH": str(target)}, cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(target), f"imported the checkout, not the wheel: {out['file']}"
    assert out["version"] == out["metadata_version"] == pathlib_pw.__version__
    assert out["tables"] == {name: len(reference.authors_table(name)) for name in reference.TABLES}
    assert out["overlap"] == pytest.approx(65.91)
    assert Path(out["table_file"]).is_relative_to(target)
    assert 0 < out["kept"] < out["total"] and 49 <= out["sparsity"] < 100  # ties at zero score are removed together
    assert out["checkout"] == "None"
    assert Path(out["pixels_file"]).is_relative_to(target) and out["pixel_arrays"] == 2 * len(data.PHOTOS)
    assert Path(out["results_root"]) == cwd / "data" / "results"
    assert not Path(out["results_root"]).is_relative_to(target)
