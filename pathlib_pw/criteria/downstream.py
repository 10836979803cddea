"""Rerun only the layers after a site: a ``torch.fx`` trace of a model cut at each rectifier site.

A criterion that changes one site's activation many times (NeuronIntGrad scales it by every alpha)
records, in one forward pass, every value the rest of the network reads from before the site, and
then runs only the part after it, with the site's new activation and those values tiled along the
batch. Sites are found and named as :mod:`pathlib_pw.sites` does at run time: rectifier modules and
functional rectifier calls (``F.relu``, ``torch.relu_``, ``x.relu()``, ...) alike.
"""

from __future__ import annotations

import itertools
import warnings
import weakref
from collections import Counter

import torch
from torch import fx, nn

from pathlib_pw.sites import IN_PLACE_FUNCTIONS, RECTIFIER_FUNCTIONS, RECTIFIER_TYPES, functional_site_name, site_names

Part = tuple[fx.GraphModule | None, list[fx.Node]]


class Split:
    """A ``torch.fx`` trace of a model cut at each rectifier site.

    ``downstream[s]`` maps (site activation, upstream values it needs) to the logits, or is
    ``(None, [])`` when the output does not depend on site ``s``; the upstream values of all sites
    are recorded in one forward pass (:meth:`upstream_values`).
    """

    def __init__(self, model: nn.Module) -> None:
        self.graph_module = fx.symbolic_trace(model)
        modules = dict(self.graph_module.named_modules())
        nodes = list(self.graph_module.graph.nodes)
        named = [(n, _site_name(n, modules)) for n in nodes]
        self.site_nodes = [n for n, name in named if name is not None]
        counter: Counter[str] = Counter()
        calls = []
        for _node, name in named:
            if name is not None:
                calls.append((name, counter[name]))
                counter[name] += 1
        self.names = site_names(calls)
        _check_in_place(nodes, self.site_nodes, modules)
        self.downstream: list[Part] = [self._cut(nodes, s) for s in self.site_nodes]
        self.needed = list(dict.fromkeys(itertools.chain.from_iterable(inp for _, inp in self.downstream)))
        self.verified = [False] * len(self.site_nodes)

    def _cut(self, nodes: list[fx.Node], site: fx.Node) -> Part:
        depends = {site}
        for n in nodes:
            if n is not site and any(a in depends for a in n.all_input_nodes):
                depends.add(n)
        after = [n for n in nodes if n in depends and n is not site]
        if not any(n.op == "output" for n in after):
            return None, []
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {site: graph.placeholder("site_activation")}
        inputs: list[fx.Node] = []

        def bring(a: fx.Node) -> None:
            if a in env:
                return
            if a.op == "get_attr":
                env[a] = graph.node_copy(a)
            elif _is_shape_query(a):  # recomputed downstream, so it sees the batch with the copies tiled in
                for b in a.all_input_nodes:
                    bring(b)
                env[a] = graph.node_copy(a, lambda b: env[b])
            else:
                env[a] = graph.placeholder(f"upstream_{a.name}")
                inputs.append(a)

        for n in after:
            for a in n.all_input_nodes:
                bring(a)
            env[n] = graph.node_copy(n, lambda a: env[a])
        return fx.GraphModule(self.graph_module, graph), inputs

    def upstream_values(self, x: torch.Tensor) -> dict[fx.Node, object]:
        """One forward pass without gradients: the value of every site and every node a part reads."""
        keep = set(self.needed) | set(self.site_nodes)
        values: dict[fx.Node, object] = {}

        class Recorder(fx.Interpreter):
            def run_node(self, n: fx.Node) -> object:
                value = super().run_node(n)
                if n in keep:
                    values[n] = value.clone() if isinstance(value, torch.Tensor) else value
                return value

        with torch.no_grad():
            Recorder(self.graph_module).run(x)
        return values

    def activation(self, values: dict[fx.Node, object], s: int) -> torch.Tensor:
        act = values[self.site_nodes[s]]
        assert isinstance(act, torch.Tensor)
        return act

    def tileable(self, values: dict[fx.Node, object], s: int) -> bool:
        """False when the part after site ``s`` reads a Python value computed upstream (e.g. ``x.size(0)``
        for a view): it may hold the batch size, which tiling copies into the batch would break."""
        return all(isinstance(values[i], torch.Tensor) for i in self.downstream[s][1])

    def run(self, s: int, values: dict[fx.Node, object], activation: torch.Tensor, copies: int) -> torch.Tensor:
        """The logits of the part after site ``s`` for ``activation``: ``copies`` batches stacked along the
        batch dimension, with the upstream values tiled to match."""
        down, inputs = self.downstream[s]
        assert down is not None
        batch = self.activation(values, s).shape[0]
        return down(activation, *[_tile(values[i], copies, batch) for i in inputs])

    def verify(self, s: int, output: torch.Tensor, logits: torch.Tensor) -> None:
        """RuntimeError unless the part after site ``s``, run with the unchanged activation, gave
        ``output`` close to the model's ``logits``."""
        tol = 1e-3 * float(logits.abs().max()) + 1e-5
        if not torch.allclose(output, logits.view_as(output), rtol=1e-3, atol=tol):
            raise RuntimeError(
                f"the fx split of this model after site {self.names[s]!r} does not reproduce the model's "
                "output; call neuron_intgrad with recompute='full'"
            )
        self.verified[s] = True


def _site_name(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """The run-time site name of a rectifier node (without ``#k``), None for other nodes."""
    if node.op == "call_module":
        return str(node.target) if isinstance(modules.get(str(node.target)), RECTIFIER_TYPES) else None
    if node.op == "call_function" and node.target in RECTIFIER_FUNCTIONS:
        function = node.target
    elif node.op == "call_method" and node.target in ("relu", "relu_"):
        function = getattr(torch.Tensor, str(node.target))
    else:
        return None
    stack = node.meta.get("nn_module_stack") or {}
    module = next(reversed(stack.values()))[0] if stack else ""
    return functional_site_name(module, function)


def _check_in_place(nodes: list[fx.Node], sites: list[fx.Node], modules: dict[str, nn.Module]) -> None:
    """ValueError when a node reads the input of an in-place rectifier after it (``x.relu_(); conv(x)``):
    the graph's data flow does not show the change, so the parts after the site would read stale values."""
    order = {n: i for i, n in enumerate(nodes)}
    for site in sites:
        if site.op == "call_module":
            in_place = bool(getattr(modules[str(site.target)], "inplace", False))
        elif site.op == "call_method":
            in_place = site.target == "relu_"
        else:
            in_place = site.target in IN_PLACE_FUNCTIONS or bool(site.kwargs.get("inplace", False))
        source = site.args[0] if site.args else None
        if in_place and isinstance(source, fx.Node):
            later = [u.name for u in source.users if order[u] > order[site]]
            if later:
                raise ValueError(f"{later[0]!r} reads {source.name!r} after the in-place rectifier {site.name!r} changed it")


def _is_shape_query(node: fx.Node) -> bool:
    """``t.size(...)``, ``t.dim()``, ``t.shape`` and arithmetic on them (``t.shape[0]``): Python values
    that may hold the batch size."""
    if node.op == "call_method":
        return node.target in ("size", "dim")
    if node.op != "call_function":
        return False
    if node.target is getattr:
        return len(node.args) > 1 and bool(node.args[1] == "shape")
    inputs = node.all_input_nodes
    return getattr(node.target, "__module__", None) == "_operator" and bool(inputs) and all(map(_is_shape_query, inputs))


def _tile(value: object, n: int, batch: int) -> object:
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == batch:
        return value.repeat(n, *([1] * (value.dim() - 1)))
    return value


# model -> (its submodules' ids, its split or why it has none)
_SPLITS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], Split | str]] = weakref.WeakKeyDictionary()


def split_for(model: nn.Module, names: list[str], strict: bool) -> Split | None:
    """The cached fx split of ``model`` (rebuilt when its submodules change), or None if it cannot be
    split or finds other sites than ``names`` (the run-time sites); with ``strict`` those raise RuntimeError."""
    fingerprint = tuple(id(m) for m in model.modules())
    cached = _SPLITS.get(model)
    if cached is None or cached[0] != fingerprint:
        try:
            cached = _SPLITS[model] = (fingerprint, Split(model))
        except Exception as error:  # fx raises many types for untraceable control flow
            cached = _SPLITS[model] = (fingerprint, str(error))
            if strict:
                raise RuntimeError(f"recompute='downstream' needs a model that torch.fx can split: {error}") from error
            warnings.warn(f"torch.fx cannot split this model ({error}); NeuronIntGrad recomputes the full network", stacklevel=3)
    split = cached[1]
    if isinstance(split, str):
        if strict:
            raise RuntimeError(f"recompute='downstream' needs a model that torch.fx can split: {split}")
        return None
    if split.names != names:
        if strict:
            raise RuntimeError("the fx trace of this model finds other rectifier sites than its forward hooks")
        return None
    return split
