"""The package's shape: the public names only grow, and imports flow one way (no upward arrows).

Layers, bottom to top: decisions, selection, sites -> pathway -> thresholds, models -> architectures
-> metrics, the attribution maps, sanity -> criteria -> the attribution registry -> experiments -> claims
-> __main__. A module may import from its own layer's modules that sit below it and from lower layers only.
The files of ``attribution/`` are nodes of their own (``attribution.maps``, ...): its maps sit below the
criteria, its registry (which extracts pathways) above them, and its ``__init__`` imports neither.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pathlib_pw

PACKAGE = Path(pathlib_pw.__file__).parent

# the public API before the architecture issue; it may only grow
PUBLIC_BEFORE = {
    "CRITERIA", "SALIENCY_METHODS", "VARIANTS", "Pathway", "dead_share", "extract_pathway", "extract_pathways",
    "jaccard", "load_imagenet_val", "load_model", "load_photos", "output_change", "pathway_grad", "preprocess",
    "record_activations", "saliency",
}


# subpackages whose files are nodes of their own: ``pathlib_pw.attribution.maps`` -> ``attribution.maps``
SPLIT = ("attribution", "runner")


def _node(parts: list[str] | tuple[str, ...]) -> str:
    """The graph node of module ``pathlib_pw.<parts>``: its top-level module or subpackage, or the file of a SPLIT one."""
    if parts[0] in SPLIT and len(parts) > 1 and (PACKAGE / parts[0] / parts[1]).with_suffix(".py").exists():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def _imports(path: Path) -> set[str]:
    """The pathlib_pw modules ``path`` imports (``pathlib_pw.x.y`` -> ``x``; the package itself -> ``__init__``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pathlib_pw"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("pathlib_pw")]
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and (PACKAGE / parts[1]).with_suffix(".py").exists() or (len(parts) > 1 and (PACKAGE / parts[1]).is_dir()):
                found.add(_node(parts[1:]))
    return found


def _modules() -> dict[str, set[str]]:
    """Top-level module or subpackage name -> the top-level modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        name = _node([rel[0].removesuffix(".py"), *(part.removesuffix(".py") for part in rel[1:2] if part != "__init__.py")])
        graph.setdefault(name, set()).update(_imports(path) - {name})
    return graph


LAYERS = [
    {"decisions", "selection", "sites", "_version", "verdicts", "statistics", "units", "_deprecation", "runner"},
    {"pathway", "imagenet", "cache", "runner.cache", "runner.verification"},
    {"thresholds", "models", "data", "reference", "training"},
    {"architectures", "runner.inputs"},
    {"metrics", "saliency", "sanity", "plotting", "removal", "digits", "cifar10", "decoding", "linearity"}
    | {"attribution", "attribution.maps", "attribution.pathway_grad", "attribution.baselines", "attribution.controls"},
    {"criteria", "roar", "downstream"},
    {"attribution_methods", "quantus_adapter", "explain", "attribution.registry", "attribution.quantus"}
    | {"runner.contract"},
    {"experiments"},
    {"claims", "explorer"},
    {"__main__", "__init__"},
]


def _layer(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if module in layer:
            return i
    raise AssertionError(f"module {module!r} is in no layer: add it to LAYERS in {__file__}")


def test_public_api_only_grows():
    assert PUBLIC_BEFORE <= set(pathlib_pw.__all__)
    for name in pathlib_pw.__all__:
        assert hasattr(pathlib_pw, name), name


def test_imports_flow_downwards_only():
    graph = _modules()
    upward = [(m, d) for m, deps in graph.items() for d in deps if _layer(d) > _layer(m)]
    assert upward == []


def test_no_import_cycle():
    """The module graph is acyclic: no module reaches itself through the modules it imports."""
    graph = _modules()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(path[path.index(dep):] + [dep]) if dep in path else dep}")
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_runner_never_imports_the_experiments():
    graph = _modules()
    for node in ("runner", "runner.cache", "runner.verification", "runner.inputs", "runner.contract"):
        assert "experiments" not in graph[node], node


def test_criteria_never_import_experiments_or_saliency_and_saliency_never_criteria():
    graph = _modules()
    assert not graph["criteria"] & {"experiments", "saliency"}
    assert not graph["saliency"] & {"criteria", "experiments"}
    for maps in ("attribution", "attribution.maps", "attribution.pathway_grad", "attribution.baselines", "attribution.controls"):
        assert not graph[maps] & {"criteria", "experiments", "attribution.registry"}, maps
    assert graph["decisions"] == set()
