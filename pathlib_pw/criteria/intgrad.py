"""NeuronIntGrad: integrated gradients of the target logit w.r.t. each site's activation (PAPER.md section 3).

For each site separately the activation is scaled by alpha, the rest of the network recomputed from
the scaled activation, and d logit / d(scaled activation) averaged over the alphas; the score is
|activation x average gradient|, then the global threshold.

Two implementations of the intended method give the same numbers: ``recompute="downstream"`` splits
a ``torch.fx`` trace of the model at each site and reruns only the part after it (all alphas of all
images in one batch), ``recompute="full"`` reruns the whole network with a scaling hook (any model).
"""

from __future__ import annotations

import functools
import itertools
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from torch import fx, nn

from pathlib_pw.criteria.spec import INTEGRATED, CriterionSpec
from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import RECTIFIER_TYPES, evaluating, hooked, record_activations, resolve_target, site_names
from pathlib_pw.thresholds import global_threshold

DEFAULT_STEPS = 10
# "auto" on the CPU: about this many images x alphas per downstream pass. Measured on MobileNetV2 (2
# cores): 44 per pass (batch 4, all 11 alphas) cost 8.9-9.9 s per image, 12-16 per pass 6.6-7.6 s.
CPU_SAMPLES_PER_PASS = 16


def intended_alphas(steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """``steps + 1`` points 0, 1/steps, ..., 1."""
    return torch.arange(steps + 1, dtype=torch.float64) / steps


def original_code_alphas(steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """The authors' accumulated scale (``alpha += i / steps``): 0, 0.1, 0.3, 0.6, 1.0, ..., 5.5 for 10 steps."""
    return torch.cumsum(torch.arange(steps + 1, dtype=torch.float64) / steps, 0)


def neuron_intgrad(
    model: nn.Module,
    x: torch.Tensor,
    levels: list[torch.Tensor],
    target: torch.Tensor | int | None,
    variant: str,
    steps: int = DEFAULT_STEPS,
    alpha_chunk: int | str | None = "auto",
    recompute: str = "auto",
) -> list[Pathway]:
    """Keep the neurons of highest integrated-gradient contribution (Khakzar et al., CVPR 2021).

    ``levels``: sparsities in percent, one (B,) tensor per level; returns one Pathway per level, all
    from one set of scores.

    Args:
        steps: number of alpha intervals; the authors used 10 (11 points).
        alpha_chunk: how many alphas to push through the network at once, with all images: an int,
            ``None`` (all) or ``"auto"``: on a GPU all, halved after an out-of-memory error (and kept
            halved for the remaining sites); on the CPU about ``CPU_SAMPLES_PER_PASS`` images x alphas
            per pass, which runs faster there. The scores do not depend on it beyond float rounding.
        recompute: ``"downstream"`` (fx split, fastest), ``"full"`` (hooks, any model) or ``"auto"``
            (downstream when the model can be traced, else full).
        variant: ``"original_code"`` reproduces the authors' code: accumulated alphas (0 .. 5.5) and a
            loop over rectifier *modules* while masks are indexed by *call*, so for a model with reused
            rectifiers (ResNet) only the first ``n_modules`` call sites are scored and masked, each with
            the scaling applied to every call of module k while the gradient is read at call site k.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if alpha_chunk not in (None, "auto") and (
        not isinstance(alpha_chunk, int) or isinstance(alpha_chunk, bool) or alpha_chunk < 1
    ):
        raise ValueError(f"alpha_chunk must be a positive int, None (all alphas) or 'auto', got {alpha_chunk!r}")
    if recompute not in ("auto", "downstream", "full"):
        raise ValueError(f"recompute must be one of ['auto', 'downstream', 'full'], got {recompute!r}")
    logits, acts, names = record_activations(model, x)
    tgt = resolve_target(target, logits)
    split = None if recompute == "full" else _split_for(model, names, strict=recompute == "downstream")
    chunks = AlphaChunks(alpha_chunk, steps + 1, x.shape[0], acts[0].device)
    if variant == "original_code":
        alphas = original_code_alphas(steps)
        scores, scored = _original_code_scores(model, x, acts, names, tgt, alphas, chunks, split, logits)
    else:
        alphas = intended_alphas(steps)
        if split is not None:
            grads = split.mean_gradients(x, tgt, alphas, chunks, logits, range(len(names)))
        else:
            grads = [_mean_gradient_full(model, x, tgt, alphas, chunks, {s}, s) for s in range(len(names))]
        scores = [(a * g).abs() for a, g in zip(acts, grads)]
        scored = len(names)
    paths = []
    for level in levels:
        masks, cut = global_threshold(scores[:scored], level)
        masks += [torch.ones_like(a, dtype=torch.bool) for a in acts[scored:]]
        paths.append(
            Pathway.from_masks(
                masks, names, "neuron_intgrad", requested_sparsity=level.float(), threshold=cut.float().cpu(),
                target=tgt.cpu(), scored_sites=scored, variant=variant,
            )
        )
    return paths


class AlphaChunks:
    """How many alphas go through the network per pass (see ``alpha_chunk`` of :func:`neuron_intgrad`)."""

    def __init__(self, request: int | str | None, n_alphas: int, batch: int, device: torch.device) -> None:
        self.adaptive = request == "auto" and device.type == "cuda"
        if request == "auto":
            request = None if device.type == "cuda" else max(1, CPU_SAMPLES_PER_PASS // batch)
        self.size = n_alphas if request is None else min(int(request), n_alphas)

    def total(self, alphas: torch.Tensor, gradient_sum: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Sum of ``gradient_sum(part)`` over the parts of ``alphas``, retried in halves after a CUDA OOM."""
        while True:
            try:
                parts = [alphas[i : i + self.size] for i in range(0, len(alphas), self.size)]
                total = gradient_sum(parts[0])
                for part in parts[1:]:
                    total += gradient_sum(part)
                return total
            except torch.OutOfMemoryError:
                if not self.adaptive or self.size == 1:
                    raise
            # outside the except block, so the failed pass's tensors are already released
            self.size = max(1, self.size // 2)
            torch.cuda.empty_cache()


def _scaled_gradient_sum(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    alphas: torch.Tensor,
    scale_sites: set[int],
    read_site: int,
) -> torch.Tensor:
    """Sum over ``alphas`` of d logit / d(output of ``read_site``), full network, sites in ``scale_sites`` scaled."""
    batch = x.shape[0]
    n = len(alphas)
    scale = alphas.to(x.device, x.dtype).repeat_interleave(batch)

    def edit(index: int, output: torch.Tensor) -> torch.Tensor:
        if index in scale_sites:
            return output * scale.view(-1, *([1] * (output.dim() - 1)))
        return output * 1.0 if index == read_site else output

    with evaluating(model), hooked(model, edit) as trace:
        logits = model(x.repeat(n, *([1] * (x.dim() - 1))))
        picked = logits.gather(1, target.repeat(n).view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(picked, trace.outputs[read_site])
    return grad.view(n, batch, *grad.shape[1:]).sum(0)


def _mean_gradient_full(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    alphas: torch.Tensor,
    chunks: AlphaChunks,
    scale_sites: set[int],
    read_site: int,
) -> torch.Tensor:
    total = chunks.total(alphas, lambda a: _scaled_gradient_sum(model, x, target, a, scale_sites, read_site))
    return total / len(alphas)


def _original_code_scores(
    model: nn.Module,
    x: torch.Tensor,
    acts: list[torch.Tensor],
    names: list[str],
    target: torch.Tensor,
    alphas: torch.Tensor,
    chunks: AlphaChunks,
    split: _Split | None,
    logits: torch.Tensor,
) -> tuple[list[torch.Tensor], int]:
    # The authors loop k over rectifier modules; a hook on module k scales each of its calls, and the
    # score is stored at mask index k, i.e. read at the k-th call site.
    module_of_site = [name.split("#")[0] for name in names]
    modules = list(dict.fromkeys(module_of_site))
    scaled = [{i for i, m in enumerate(module_of_site) if m == module} for module in modules]
    # where module k is called once, at site k, this is plain per-site integration: use the split
    plain = [k for k in range(len(modules)) if scaled[k] == {k}] if split is not None else []
    fast = dict(zip(plain, split.mean_gradients(x, target, alphas, chunks, logits, plain))) if plain else {}
    scores = []
    for k in range(len(modules)):
        grad = fast[k] if k in fast else _mean_gradient_full(model, x, target, alphas, chunks, scaled[k], k)
        scores.append((acts[k] * grad).abs())
    return scores, len(modules)


class _Split:
    """A ``torch.fx`` trace of a model cut at each rectifier site.

    ``downstream[s]`` maps (scaled site activation, upstream values it needs) to the logits; the
    upstream values of all sites are recorded in one forward pass.
    """

    def __init__(self, model: nn.Module) -> None:
        self.graph_module = fx.symbolic_trace(model)
        modules = dict(self.graph_module.named_modules())
        nodes = list(self.graph_module.graph.nodes)
        self.site_nodes = [
            n for n in nodes if n.op == "call_module" and isinstance(modules.get(str(n.target)), RECTIFIER_TYPES)
        ]
        counter: Counter[str] = Counter()
        calls = []
        for n in self.site_nodes:
            calls.append((str(n.target), counter[str(n.target)]))
            counter[str(n.target)] += 1
        self.names = site_names(calls)
        self.downstream: list[tuple[fx.GraphModule | None, list[fx.Node]]] = [self._cut(nodes, s) for s in self.site_nodes]
        self.needed = list(dict.fromkeys(itertools.chain.from_iterable(inp for _, inp in self.downstream)))
        self.verified = [False] * len(self.site_nodes)

    def _cut(self, nodes: list[fx.Node], site: fx.Node) -> tuple[fx.GraphModule | None, list[fx.Node]]:
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
            elif _is_shape_query(a):  # recomputed downstream, so it sees the batch with the alphas tiled in
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

    def mean_gradients(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        alphas: torch.Tensor,
        chunks: AlphaChunks,
        logits: torch.Tensor,
        sites: Sequence[int],
    ) -> list[torch.Tensor]:
        """Mean over ``alphas`` of d logit / d(scaled activation) at each site in ``sites``."""
        with evaluating(self.graph_module):
            values = self.upstream_values(x)
            grads = []
            for s in sites:
                down, inputs = self.downstream[s]
                act = values[self.site_nodes[s]]
                assert isinstance(act, torch.Tensor)
                if down is None:
                    grads.append(torch.zeros_like(act))
                    continue
                if any(not isinstance(values[i], torch.Tensor) for i in inputs):
                    # a Python value computed upstream (e.g. ``x.size(0)`` for a view) may hold the batch
                    # size, which tiling the alphas into the batch would break: rerun the whole network
                    grads.append(_mean_gradient_full(self.graph_module, x, target, alphas, chunks, {s}, s))
                    continue

                one_pass = functools.partial(self._gradient_sum, s, values, target, logits)
                grads.append(chunks.total(alphas, one_pass) / len(alphas))
        return grads

    def _gradient_sum(
        self, s: int, values: dict[fx.Node, object], target: torch.Tensor, logits: torch.Tensor, alphas: torch.Tensor
    ) -> torch.Tensor:
        """Sum over ``alphas`` of d logit / d(site ``s`` activation scaled by alpha), one downstream pass."""
        down, inputs = self.downstream[s]
        act = values[self.site_nodes[s]]
        assert isinstance(act, torch.Tensor) and down is not None
        n, batch = len(alphas), act.shape[0]
        scaled = alphas.to(act.device, act.dtype).view(-1, *([1] * act.dim())) * act.unsqueeze(0)
        scaled = scaled.reshape(n * batch, *act.shape[1:]).requires_grad_(True)
        out = down(scaled, *[_tile(values[i], n, batch) for i in inputs])
        picked = out.gather(1, target.repeat(n).view(-1, 1)).sum()
        (g,) = torch.autograd.grad(picked, scaled)
        if not self.verified[s] and bool((alphas == 1).any()):
            self._verify(s, out.detach().view(n, batch, -1)[int((alphas == 1).nonzero()[0])], logits)
        return g.view(n, batch, *act.shape[1:]).sum(0)

    def _verify(self, s: int, out_at_one: torch.Tensor, logits: torch.Tensor) -> None:
        tol = 1e-3 * float(logits.abs().max()) + 1e-5
        if not torch.allclose(out_at_one, logits.view_as(out_at_one), rtol=1e-3, atol=tol):
            raise RuntimeError(
                f"the fx split of this model after site {self.names[s]!r} does not reproduce the model's "
                "output; call neuron_intgrad with recompute='full'"
            )
        self.verified[s] = True


def _is_shape_query(node: fx.Node) -> bool:
    """``t.size(...)``, ``t.dim()``, ``t.shape`` and arithmetic on them (``t.shape[0]``): Python values
    that may hold the batch size."""
    if node.op == "call_method":
        return node.target in ("size", "dim")
    if node.op != "call_function":
        return False
    if node.target is getattr:
        return len(node.args) > 1 and node.args[1] == "shape"
    inputs = node.all_input_nodes
    return getattr(node.target, "__module__", None) == "_operator" and bool(inputs) and all(map(_is_shape_query, inputs))


def _tile(value: object, n: int, batch: int) -> object:
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == batch:
        return value.repeat(n, *([1] * (value.dim() - 1)))
    return value


_SPLITS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], _Split | None]] = weakref.WeakKeyDictionary()


def _split_for(model: nn.Module, names: list[str], strict: bool) -> _Split | None:
    """The cached fx split of ``model`` (rebuilt when its submodules change), or None if it cannot be traced."""
    fingerprint = tuple(id(m) for m in model.modules())
    cached = _SPLITS.get(model)
    if cached is None or cached[0] != fingerprint:
        try:
            split: _Split | None = _Split(model)
        except Exception as error:  # fx raises many types for untraceable control flow
            if strict:
                raise RuntimeError(f"recompute='downstream' needs an fx-traceable model: {error}") from error
            warnings.warn(f"model is not fx-traceable ({error}); NeuronIntGrad recomputes the full network", stacklevel=3)
            split = None
        _SPLITS[model] = (fingerprint, split)
        cached = _SPLITS[model]
    split = cached[1]
    if split is None and strict:
        raise RuntimeError("recompute='downstream' needs an fx-traceable model; this one could not be traced")
    if split is not None and split.names != names:
        if strict:
            raise RuntimeError("the fx trace of this model finds other rectifier sites than its forward hooks")
        return None
    return split


SPEC = CriterionSpec(
    "neuron_intgrad", neuron_intgrad, "integrated gradients of the logit with respect to each site, global threshold",
    options=("steps", "alpha_chunk", "recompute"), variants=("intended", "original_code"), rounding=INTEGRATED,
)
