"""Activation sites: every call of a rectifier module, in forward order.

A *neuron* (PAPER.md section 2) is one element of one rectifier output at one call. A module that is
called several times per forward pass (torchvision ResNet's ``relu``) gives one site per call. Sites
are named ``"<module>"`` for a module called once and ``"<module>#<k>"`` for its k-th call otherwise.

Everything that changes a model goes through :func:`hooked`, a context manager that removes its
hooks on exit, also when the body raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

RECTIFIER_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)

Edit = Callable[[int, torch.Tensor], torch.Tensor]


def rectifier_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """All ``nn.ReLU``/``nn.ReLU6`` submodules as ``(qualified name, module)``, in registration order."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, RECTIFIER_TYPES)]
    if not found:
        raise ValueError(
            f"model {type(model).__name__} has no rectifier module: pathways need nn.ReLU or nn.ReLU6 "
            "modules (functional torch.relu calls cannot be hooked; wrap them in nn.ReLU)"
        )
    return found


def site_names(calls: Sequence[tuple[str, int]]) -> list[str]:
    """Names for ``(module name, call index)`` pairs; the ``#k`` suffix only for reused modules."""
    counts = Counter(name for name, _ in calls)
    return [name if counts[name] == 1 else f"{name}#{k}" for name, k in calls]


@dataclasses.dataclass
class Trace:
    """What one forward pass under :func:`hooked` saw: site names, shapes and (edited) outputs."""

    calls: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    outputs: list[torch.Tensor] = dataclasses.field(default_factory=list)

    @property
    def sites(self) -> list[str]:
        return site_names(self.calls)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Per-site activation shape without the batch dimension."""
        return [tuple(o.shape[1:]) for o in self.outputs]

    def _reset(self) -> None:
        self.calls.clear()
        self.outputs.clear()


@contextlib.contextmanager
def hooked(
    model: nn.Module,
    edit: Edit | None = None,
    *,
    keep_outputs: bool = True,
    on_end: Callable[[Trace], None] | None = None,
) -> Iterator[Trace]:
    """Hook every rectifier call of ``model`` for the duration of the block.

    ``edit(site_index, output)`` may return a replacement for the rectifier output (a mask product, a
    gate, a scaled copy); the returned tensor is what the rest of the network sees and what is
    recorded in ``trace.outputs``. The site counter restarts at every forward call of ``model``, and
    ``on_end(trace)`` runs after each one.
    """
    trace = Trace()
    per_module_calls: Counter[str] = Counter()

    def reset(_module: nn.Module, _args: object) -> None:
        trace._reset()
        per_module_calls.clear()

    def make_hook(name: str) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor | None]:
        def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor | None:
            index = len(trace.calls)
            trace.calls.append((name, per_module_calls[name]))
            per_module_calls[name] += 1
            new = edit(index, output) if edit is not None else output
            if keep_outputs:
                trace.outputs.append(new)
            return new if edit is not None else None

        return hook

    handles = [model.register_forward_pre_hook(reset)]
    if on_end is not None:
        handles.append(model.register_forward_hook(lambda _m, _a, _o: on_end(trace)))
    try:
        for name, module in rectifier_modules(model):
            handles.append(module.register_forward_hook(make_hook(name)))
        yield trace
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore every submodule's mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        if any(training for _, training in modes):  # eval() walks every module: only when one trains
            model.eval()
        yield model
    finally:
        for m, training in modes:
            if m.training != training:
                m.training = training


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def check_input(x: object, name: str = "x") -> torch.Tensor:
    """Validate an image batch: a floating tensor of shape (B, C, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32/float64/...), got dtype {x.dtype}")
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B, C, H, W) with B >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def record_activations(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[str]]:
    """One forward pass without gradients: ``(logits, per-site activations, site names)``."""
    check_input(x)
    with evaluating(model), torch.no_grad(), hooked(model) as trace:
        # a copy: a model may start with an in-place rectifier on its input
        logits = model(x.to(model_device(model)).clone())
        outputs = [o.detach() for o in trace.outputs]
        names = trace.sites
    return logits, outputs, names


def as_index_tensor(value: object, name: str) -> torch.Tensor:
    """An int or a sequence of ints as a flat long tensor; TypeError naming ``name`` otherwise."""
    message = f"{name} must be an int or a sequence of ints, got {value!r}"
    if isinstance(value, (str, bytes)):
        raise TypeError(message)
    try:
        t = torch.as_tensor(value).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(message) from None
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(message)
    return t.long()


def resolve_target(target: int | Sequence[int] | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """The explained class per image: the prediction when ``target`` is None, else validated (B,) long."""
    batch, classes = logits.shape
    if target is None:
        return logits.detach().argmax(1)
    t = as_index_tensor(target, "target").to(logits.device)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"target must be one class index or one per image ({batch}), got {t.numel()}")
    if (t < 0).any() or (t >= classes).any():
        raise ValueError(f"target must be a class index in [0, {classes}), got {target!r}")
    return t.contiguous()


def activations_and_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    edit: Edit | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[str], torch.Tensor]:
    """Forward and backward of the target logits.

    Returns ``(logits, activations, d logit / d activation, site names, target)``; ``target=None``
    explains the prediction of this (possibly edited) forward pass. Images are independent in eval
    mode, so one backward of the summed target logits gives every image its own gradient. Parameter
    ``.grad`` fields are left untouched.
    """
    with evaluating(model), hooked(model, edit) as trace:
        inp = x.detach().to(model_device(model)).requires_grad_(True)
        logits = model(inp.clone())  # never an in-place op on the leaf or the caller's tensor
        tgt = resolve_target(target, logits)
        picked = logits.gather(1, tgt.view(-1, 1)).sum()
        grads = torch.autograd.grad(picked, trace.outputs, allow_unused=True)
        acts = [o.detach() for o in trace.outputs]
        names = trace.sites
    grads_out = [torch.zeros_like(a) if g is None else g.detach() for a, g in zip(acts, grads)]
    return logits.detach(), acts, grads_out, names, tgt
