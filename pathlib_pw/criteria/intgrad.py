"""NeuronIntGrad: integrated gradients of the target logit w.r.t. each site's activation (book/methods.md: pathway criteria).

For each site separately the activation is scaled by alpha, the rest of the network recomputed from
the scaled activation, and d logit / d(scaled activation) averaged over the alphas; the score is
|activation x average gradient|, then the global threshold.

Two implementations of the intended method give the same numbers: ``recompute="downstream"`` reruns
only the part of a ``torch.fx`` trace after each site (:mod:`pathlib_pw.criteria.downstream`; all alphas of all
images in one batch), ``recompute="full"`` reruns the whole network with a scaling hook (any model).
Both handle functional rectifier sites (``F.relu``, ``torch.relu_``, ...) as well as rectifier modules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import fx, nn

from pathlib_pw.criteria._progress import bar
from pathlib_pw.criteria._scores import hand_back
from pathlib_pw.criteria.downstream import Split, split_for
from pathlib_pw.criteria.spec import INTEGRATED, CriterionSpec
from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import evaluating, hooked, record_activations, resolve_target
from pathlib_pw.thresholds import global_threshold

DEFAULT_STEPS = 10
# "auto" on the CPU: about this many images x alphas per downstream pass (Performance page)
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
            (downstream when torch.fx can split the model and finds the run-time sites, else full).
            Functional rectifier sites take the downstream path too.
        variant: ``"original_code"`` reproduces the authors' code: accumulated alphas (0 .. 5.5) and a
            loop over rectifier *modules* while masks are indexed by *call*, so for a model with reused
            rectifiers (ResNet) only the first ``n_modules`` call sites are scored and masked, each with
            the scaling applied to every call of module k while the gradient is read at call site k.
            A functional rectifier counts as one "module" per site name without ``#k`` (its enclosing
            module and function); the authors' code hooks modules only and finds no such site.
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
    split = None if recompute == "full" else split_for(model, names, strict=recompute == "downstream")
    chunks = AlphaChunks(alpha_chunk, steps + 1, x.shape[0], acts[0].device)
    # the authors score one site per rectifier module
    scored = len(dict.fromkeys(_module_of_site(names))) if variant == "original_code" else len(names)
    with bar(scored, f"neuron_intgrad ({steps + 1} alphas)", "site") as sites_bar:
        if variant == "original_code":
            alphas = original_code_alphas(steps)
            scores = _original_code_scores(model, x, acts, names, tgt, alphas, chunks, split, logits, sites_bar.update)
        else:
            alphas = intended_alphas(steps)
            if split is not None:
                grads = _downstream_mean_gradients(split, x, tgt, alphas, chunks, logits, range(scored), sites_bar.update)
            else:
                grads = []
                for s in range(scored):
                    grads.append(_mean_gradient_full(model, x, tgt, alphas, chunks, {s}, s))
                    sites_bar.update()
            scores = [(a * g).abs() for a, g in zip(acts, grads)]
    hand_back(scores[:scored])
    paths = []
    for level in levels:
        masks, cut = global_threshold(scores[:scored], level)
        masks += [torch.ones_like(a, dtype=torch.bool) for a in acts[scored:]]
        paths.append(
            Pathway.from_masks(
                masks,
                names,
                "neuron_intgrad",
                requested_sparsity=level.float(),
                threshold=cut.float().cpu(),
                target=tgt.cpu(),
                scored_sites=scored,
                variant=variant,
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
            output = output * scale.view(-1, *([1] * (output.dim() - 1)))
        elif index == read_site:
            output = output * 1.0
        # a rectifier applied to the input itself has nothing upstream that needs a gradient
        return output.requires_grad_() if index == read_site and not output.requires_grad else output

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
    split: Split | None,
    logits: torch.Tensor,
    done: Callable[[], object],
) -> list[torch.Tensor]:
    """The scores of the first ``n_modules`` sites; ``done()`` after each."""
    # The authors loop k over rectifier modules; a hook on module k scales each of its calls, and the
    # score is stored at mask index k, i.e. read at the k-th call site.
    module_of_site = _module_of_site(names)
    modules = list(dict.fromkeys(module_of_site))
    scaled = [{i for i, m in enumerate(module_of_site) if m == module} for module in modules]
    # where module k is called once, at site k, this is plain per-site integration: use the split
    plain = [k for k in range(len(modules)) if scaled[k] == {k}] if split is not None else []
    fast = {}
    if split is not None and plain:
        fast = dict(zip(plain, _downstream_mean_gradients(split, x, target, alphas, chunks, logits, plain, done)))
    scores = []
    for k in range(len(modules)):
        if k in fast:
            grad = fast[k]
        else:
            grad = _mean_gradient_full(model, x, target, alphas, chunks, scaled[k], k)
            done()
        scores.append((acts[k] * grad).abs())
    return scores


def _module_of_site(names: Sequence[str]) -> list[str]:
    """The rectifier module (or functional call) of each site: its name without ``#k``."""
    return [name.split("#")[0] for name in names]


def _downstream_mean_gradients(
    split: Split,
    x: torch.Tensor,
    target: torch.Tensor,
    alphas: torch.Tensor,
    chunks: AlphaChunks,
    logits: torch.Tensor,
    sites: Sequence[int],
    done: Callable[[], object],
) -> list[torch.Tensor]:
    """Mean over ``alphas`` of d logit / d(scaled activation) at each site in ``sites``, rerunning only the
    layers after the site; ``done()`` after each site."""
    with evaluating(split.graph_module):
        values = split.upstream_values(x)
        grads = []
        for s in sites:
            if split.downstream[s][0] is None:
                grads.append(torch.zeros_like(split.activation(values, s)))
            elif not split.tileable(values, s):
                grads.append(_mean_gradient_full(split.graph_module, x, target, alphas, chunks, {s}, s))
            else:
                one_pass = functools.partial(_downstream_gradient_sum, split, s, values, target, logits)
                grads.append(chunks.total(alphas, one_pass) / len(alphas))
            done()
    return grads


def _downstream_gradient_sum(
    split: Split,
    s: int,
    values: dict[fx.Node, object],
    target: torch.Tensor,
    logits: torch.Tensor,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """Sum over ``alphas`` of d logit / d(site ``s`` activation scaled by alpha), one downstream pass."""
    act = split.activation(values, s)
    n, batch = len(alphas), act.shape[0]
    scaled = alphas.to(act.device, act.dtype).view(-1, *([1] * act.dim())) * act.unsqueeze(0)
    scaled = scaled.reshape(n * batch, *act.shape[1:]).requires_grad_(True)
    out = split.run(s, values, scaled, n)
    picked = out.gather(1, target.repeat(n).view(-1, 1)).sum()
    (g,) = torch.autograd.grad(picked, scaled)
    if not split.verified[s] and bool((alphas == 1).any()):
        split.verify(s, out.detach().view(n, batch, -1)[int((alphas == 1).nonzero()[0])], logits)
    return g.view(n, batch, *act.shape[1:]).sum(0)


SPEC = CriterionSpec(
    "neuron_intgrad",
    neuron_intgrad,
    "integrated gradients of the logit with respect to each site, global threshold",
    options=("steps", "alpha_chunk", "recompute"),
    variants=("intended", "original_code"),
    rounding=INTEGRATED,
    scores=True,
)
