"""DGR, Distillation Guided Routing (Wang et al., CVPR 2018) as re-implemented by Khakzar et al. (book/methods.md: pathway criteria).

A learnable gate multiplies every rectifier output; the gates are trained so that the gated network
reproduces the original softmax with an L1 penalty on the gates. All images are optimized at once:
the loss is a sum of per-image terms over disjoint gates, and SGD with momentum is element-wise, so
each image follows exactly the trajectory it would follow alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import nn

from pathlib_pw.criteria._progress import bar
from pathlib_pw.criteria._scores import hand_back
from pathlib_pw.criteria.seeds import per_image_seeds, tie_keys
from pathlib_pw.criteria.spec import CHAOTIC, SHARP, CriterionSpec
from pathlib_pw.decisions import Rounding
from pathlib_pw.pathway import Pathway
from pathlib_pw.selection import per_image
from pathlib_pw.sites import evaluating, hooked, record_activations, resolve_target
from pathlib_pw.thresholds import threshold_pathway, tie_broken_pathway

INITS = ("1", "r")
GATE_SHAPES = ("neuron", "channel")
TIES = ("random", "all")


def dgr(
    model: nn.Module,
    x: torch.Tensor,
    levels: list[torch.Tensor],
    target: torch.Tensor | int | None,
    variant: str,
    init: Literal["1", "r"] = "1",
    lam: float = 0.01,
    lr: float = 0.01,
    momentum: float = 0.9,
    iterations: int = 1000,
    clamp_max: float = 100.0,
    gates: Literal["neuron", "channel"] = "neuron",
    max_retries: int = 100,
    ties: Literal["random", "all"] = "random",
    seed: torch.Tensor | int = 0,
) -> list[Pathway]:
    """Keep the neurons whose trained gate lies above the global ``sparsity``-th percentile.

    ``levels``: sparsities in percent, one (B,) tensor per level; returns one Pathway per level, all
    from one optimization of the gates.

    Args:
        init: ``"1"`` (gates start at 1) or ``"r"`` (gates start Uniform(0, 1) and, for images where no
            iterate keeps the prediction, ``lam`` is divided by 10 and the run repeated, up to
            ``max_retries`` times).
        lam: L1 weight on the gates (the authors' 0.01).
        gates: ``"neuron"`` (one gate per neuron, as the authors coded) or ``"channel"`` (one per
            channel, as in Wang et al.).
        ties: how gates equal to the cut are treated. Gates tie in blocks: the L1 step moves every gate
            whose neuron does not reach the logit by the same amount, so they stay equal, and the clamp
            at 0 makes the lowest ones exactly 0. ``"random"`` (the intended default) removes exactly
            the k + 1 = floor(p / 100 x (N - 1)) + 1 lowest gates, the count the paper's rule removes
            when nothing ties, taking tied gates in a seeded random order per image (the tie order
            of Greedy, :func:`~pathlib_pw.criteria.seeds.tie_keys`): position never decides.
            ``"all"`` applies the paper's ``gate <= percentile`` rule, which removes every gate tied
            at the cut, so the realized sparsity can far exceed the request (a whole tied block at
            once; with init ``"r"`` and long runs, every gate clamped to 0). ``"original_code"``
            always uses the ``<=`` rule, as the authors' code did (``ties`` is validated, not used).
        seed: one seed per image for init ``"r"`` and for the tie order.
        variant: ``"intended"`` draws fresh gates and a new optimizer for every init ``"r"`` retry;
            ``"original_code"`` (the authors' ``cdrp/main2.py``) sets up the gates and the optimizer
            once and, after a pass of ``iterations`` steps in which no iterate kept the prediction,
            divides ``lam`` by 10 and continues from the current gates and momentum (at most
            ``1 + max_retries`` passes: the authors' 100 passes are ``max_retries=99``).

    The gates kept are those of the iterate with the lowest loss among those whose top-1 equals the
    original top-1. Where no iterate keeps the prediction (the authors' code crashes), the lowest-loss
    iterate is used and ``info["kept_prediction"]`` is False for that image.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
    if gates not in GATE_SHAPES:
        raise ValueError(f"gates must be one of {list(GATE_SHAPES)}, got {gates!r}")
    if not isinstance(ties, str) or ties not in TIES:
        raise ValueError(f"ties must be one of {list(TIES)}, got {ties!r}")
    for name, value in (("iterations", iterations), ("max_retries", max_retries)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    logits, acts, names = record_activations(model, x)
    tgt = resolve_target(target, logits)
    batch = x.shape[0]
    device = acts[0].device
    seeds = per_image_seeds(seed, batch)
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    shapes = [tuple(a.shape[1:]) if gates == "neuron" else (a.shape[1],) + (1,) * (a.dim() - 2) for a in acts]

    if variant not in ("intended", "original_code"):
        raise ValueError(f"variant must be 'intended' or 'original_code', got {variant!r}")
    lams = torch.full((batch,), float(lam), dtype=x.dtype, device=device)
    retries = torch.zeros(batch, dtype=torch.long)
    with bar(iterations, "dgr", "it") as iterations_bar:
        best, state = _optimize(
            model, x, logits, shapes, init, generators, lams, lr, momentum, iterations, clamp_max, None, iterations_bar.update
        )
        for retry in range(max_retries if init == "r" else 0):
            failed = (~best.kept).nonzero().flatten().cpu()
            if failed.numel() == 0:
                break
            lams[failed] /= 10
            retries[failed] += 1
            iterations_bar.reset()
            iterations_bar.set_postfix_str(f"retry {retry + 1}/{max_retries}, {failed.numel()} of {batch} images")
            # the authors continue from the current gates and momentum; we start afresh
            start = state.select(failed.to(device)) if variant == "original_code" else None
            again, now = _optimize(
                model,
                x[failed],
                logits[failed],
                shapes,
                init,
                [generators[i] for i in failed],
                lams[failed],
                lr,
                momentum,
                iterations,
                clamp_max,
                start,
                iterations_bar.update,
            )
            best.update(failed, again)
            state.update(failed.to(device), now)
    scores = [g.expand(-1, *a.shape[1:]) for g, a in zip(best.gates, acts)]
    hand_back(scores)
    info: dict[str, Any] = dict(
        target=tgt.cpu(),
        kept_prediction=best.kept.cpu(),
        best_loss=best.loss.cpu(),
        final_lambda=lams.cpu(),
        retries=retries,
        init=init,
        gates=gates,
    )
    if variant == "original_code" or ties == "all":
        return [threshold_pathway(scores, level, names, "dgr", ties="all", **info) for level in levels]
    if gates == "neuron":
        keys = tie_keys(seeds, sum(a[0].numel() for a in acts)).to(device)
        return [tie_broken_pathway(scores, level, names, "dgr", keys, ties="random", **info) for level in levels]
    # one tie rank per channel, shared by its neurons; a channel cut at the count is removed whole
    ranks = tie_keys(seeds, sum(a.shape[1] for a in acts)).to(device)
    keys = torch.cat(
        [k.view(batch, -1, *([1] * (a.dim() - 2))).expand_as(a).flatten(1) for k, a in zip(_split(ranks, acts), acts)], 1
    )
    return [tie_broken_pathway(scores, level, names, "dgr", keys, whole_channels=True, ties="random", **info) for level in levels]


def _split(ranks: torch.Tensor, acts: list[torch.Tensor]) -> list[torch.Tensor]:
    """(B, total channels) -> one (B, C) block per site."""
    return list(torch.split(ranks, [a.shape[1] for a in acts], dim=1))


class _Best:
    def __init__(self, gates: list[torch.Tensor], loss: torch.Tensor, kept: torch.Tensor) -> None:
        self.gates, self.loss, self.kept = gates, loss, kept

    def update(self, index: torch.Tensor, other: _Best) -> None:
        index = index.to(self.loss.device)
        for g, o in zip(self.gates, other.gates):
            g[index] = o
        self.loss[index] = other.loss
        self.kept[index] = other.kept


class _State:
    """The gates and SGD momentum buffers at the end of a pass (one row per image)."""

    def __init__(self, gates: list[torch.Tensor], buffers: list[torch.Tensor | None]) -> None:
        self.gates, self.buffers = gates, buffers

    def select(self, index: torch.Tensor) -> _State:
        return _State([g[index] for g in self.gates], [None if b is None else b[index] for b in self.buffers])

    def update(self, index: torch.Tensor, other: _State) -> None:
        for g, o in zip(self.gates, other.gates):
            g[index] = o
        for j, new in enumerate(other.buffers):
            if new is not None:
                buffer = self.buffers[j]
                if buffer is None:
                    buffer = self.buffers[j] = torch.zeros_like(self.gates[j])
                buffer[index] = new


def _optimize(
    model: nn.Module,
    x: torch.Tensor,
    logits: torch.Tensor,
    shapes: list[tuple[int, ...]],
    init: str,
    generators: list[torch.Generator],
    lams: torch.Tensor,
    lr: float,
    momentum: float,
    iterations: int,
    clamp_max: float,
    start: _State | None = None,
    done: Callable[[], object] = lambda: None,
) -> tuple[_Best, _State]:
    """One pass of ``iterations`` SGD steps on the gates; ``done()`` after each step."""
    batch = x.shape[0]
    device = logits.device
    if start is not None:  # continue from these gates and momentum (the authors' retries)
        params = [g.detach().clone() for g in start.gates]
    elif init == "1":
        params = [torch.ones(batch, *s, device=device, dtype=x.dtype) for s in shapes]
    else:
        params = [torch.stack([torch.rand(s, generator=g, device=device, dtype=x.dtype) for g in generators]) for s in shapes]
    params = [p.requires_grad_(True) for p in params]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
    if start is not None:
        for p, buffer in zip(params, start.buffers):
            if buffer is not None:
                optimizer.state[p]["momentum_buffer"] = buffer.clone()
    p_orig = logits.softmax(1).detach()
    top1 = logits.argmax(1)

    # the best prediction-keeping iterate, and the lowest-loss one for images where none keeps it
    best_kept, best_any = (
        _Best(
            [p.detach().clone() for p in params],
            torch.full((batch,), float("inf"), device=device),
            torch.zeros(batch, dtype=torch.bool, device=device),
        )
        for _ in range(2)
    )

    def edit(index: int, output: torch.Tensor) -> torch.Tensor:
        return output * params[index]

    with evaluating(model), hooked(model, edit, keep_outputs=False):
        for _ in range(iterations):
            out = model(x)
            ce = -(p_orig * torch.log(out.softmax(1) + 1e-20)).sum(1)
            with torch.no_grad():
                # the gates are never negative (they start at 1 or in [0, 1) and are clamped at 0), so
                # their sum is their L1 norm, the same float sum as that of their absolute values
                l1 = sum(p.flatten(1).sum(1) for p in params)
                loss = ce.detach() + lams * l1
                keeps = out.argmax(1) == top1
                # the lowest-loss gates overall matter only for images that never kept the prediction
                for best, allowed in ((best_kept, keeps), (best_any, ~(best_kept.kept | keeps))):
                    improve = allowed & (loss < best.loss)
                    if device.type == "cpu":  # on the GPU the checks would cost a sync
                        if not bool(improve.any()):
                            continue  # nothing to copy
                        if bool(improve.all()):
                            for g, p in zip(best.gates, params):
                                g.copy_(p)
                            best.loss = loss.clone()
                            continue
                    for g, p in zip(best.gates, params):
                        torch.where(per_image(improve, g), p, g, out=g)
                    best.loss = torch.where(improve, loss, best.loss)
                best_kept.kept |= keeps
            optimizer.zero_grad(set_to_none=True)
            ce.sum().backward(inputs=params)
            with torch.no_grad():
                # the L1 term's gradient, lam x sign(gate), added as autograd would add it (an exact product)
                for p in params:
                    grad = p.grad if p.grad is not None else torch.zeros_like(p)
                    p.grad = grad.addcmul_(p.sgn(), per_image(lams, p))
            optimizer.step()
            with torch.no_grad():
                for p in params:
                    p.clamp_(0.0, clamp_max)
            done()
    failed = ~best_kept.kept
    for g, a in zip(best_kept.gates, best_any.gates):
        g[failed] = a[failed]
    best_kept.loss = torch.where(failed, best_any.loss, best_kept.loss)
    buffers = [optimizer.state[p].get("momentum_buffer") if p in optimizer.state else None for p in params]
    return best_kept, _State([p.detach() for p in params], [None if b is None else b.detach() for b in buffers])


def _rounding(options: Mapping[str, Any]) -> Rounding:
    return CHAOTIC if str(options.get("init", "1")) == "1" else SHARP


SPEC = CriterionSpec(
    "dgr",
    dgr,
    "Distillation Guided Routing: trained gates, the lowest removed",
    options=("init", "lam", "lr", "momentum", "iterations", "clamp_max", "gates", "max_retries", "ties", "seed"),
    seeded=True,
    rounding=_rounding,
    variants=("intended", "original_code"),
    overshoot="with ties='all' or variant 'original_code' the paper's gate <= cut rule removes every gate tied at "
    "the cut (gates of neurons that do not reach the logit move together, and many end clamped at 0)",
    scores=True,
)
