"""What every attribution map shares: the method protocol, the channel reduction and normalization,
the explained class and the input gradient.

Every map has shape (B, H, W) with values in [-1, 1]: RGB reduced to the signed value of largest
magnitude, then divided by the image's largest absolute value (an all-zero map stays zero).
"""

from __future__ import annotations

import dataclasses
import itertools
import weakref
from collections.abc import Callable, Sequence

import torch
from torch import nn

from pathlib_pw import _deprecation
from pathlib_pw.pathway import Pathway
from pathlib_pw.selection import per_image
from pathlib_pw.sites import as_index_tensor, evaluating, resolve_target

# an attribution method: (model, x (B, C, H, W), explained class per image (B,) long) -> maps (B, H, W)
AttributionMethod = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Target = int | Sequence[int] | torch.Tensor | None


def reduce_channels(attribution: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W): per pixel, the channel value of largest magnitude, sign kept.

    Ties go to the first channel and NaN wins, as with ``argmax``; a channel loop because ``argmax``
    over a short dimension is slow on the CPU.
    """
    best = attribution[:, 0]
    for c in range(1, attribution.shape[1]):
        value = attribution[:, c]
        take = (value.abs() > best.abs()) | (value.isnan() & ~best.isnan())
        best = torch.where(take, value, best)
    return best


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Divide each map by its largest absolute value; all-zero maps stay zero."""
    peak = per_image(maps.abs().flatten(1).amax(1), maps)
    return maps / torch.where(peak > 0, peak, torch.ones_like(peak))


@_deprecation.keyword_only_from(2, "target", "path")
def explained_class(model: nn.Module, x: torch.Tensor, *, target: Target = None, path: Pathway | None = None) -> torch.Tensor:
    """The class explained per image: ``target`` validated, or the (masked) network's prediction."""
    with torch.no_grad(), evaluating(model):
        if path is None:
            logits = model(x.clone())
        else:
            with path.applied(model):
                logits = model(x.clone())
    return resolve_target(target, logits)


def input_gradient(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """d logit[target] / d input; ``target`` is resolved against this forward pass's logits."""
    inp = x.detach().requires_grad_(True)
    logits = model(inp.clone())  # a model may start with an in-place rectifier
    tgt = resolve_target(target, logits)
    # a logit that does not depend on the input has a zero gradient, not None
    (grad,) = torch.autograd.grad(logits.gather(1, tgt.view(-1, 1)).sum(), inp, allow_unused=True, materialize_grads=True)
    return grad


@dataclasses.dataclass
class _Remembered:
    """An input gradient through a pathway and everything it was computed from."""

    path: weakref.ref[Pathway]
    model: weakref.ref[nn.Module]
    state: tuple[int, ...]
    x: torch.Tensor
    x_version: int
    target: torch.Tensor
    grad: torch.Tensor


# id(pathway) -> its input gradient, while the pathway lives and until forget_input_gradients (memory:
# one input-sized gradient per pathway). extract_pathway's connectivity check computes the very
# gradient that PathwayGrad then needs; remembering it saves a third pass over the network.
_REMEMBERED: dict[int, _Remembered] = {}


def _state(model: nn.Module, path: Pathway) -> tuple[int, ...]:
    """What the gradient through ``path`` depends on besides the input and target: the identity and
    in-place version of every parameter, buffer and mask, and the modules' hook counts (tensors a
    module registers; one its forward uses without registering it is not seen)."""
    out: list[int] = []
    for m in model.modules():  # one walk: model.parameters() and .buffers() each walk the modules again
        for t in itertools.chain(m._parameters.values(), m._buffers.values()):
            if t is not None:
                out += (id(t), t._version)
        out.append(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks))
    for t in path.masks:
        out += (id(t), t._version)
    return tuple(out)


def _target_key(target: Target, batch: int) -> torch.Tensor:
    t = as_index_tensor(target, "target").cpu()
    return t.expand(batch) if t.numel() == 1 else t


def input_gradient_through(
    model: nn.Module, x: torch.Tensor, path: Pathway, *, target: Target, remember: bool = False
) -> torch.Tensor:
    """d logit[target] / d input of ``model`` in eval mode restricted to ``path`` (``target`` not None).

    With ``remember`` the gradient is kept for ``path`` (until :func:`forget_input_gradients`); without,
    a kept gradient is returned when the model's parameters, buffers and hooks, the masks, ``x`` and
    ``target`` are all unchanged since (an in-place change counts), else it is computed.
    """
    batch = x.shape[0]
    if not remember:
        kept = _REMEMBERED.get(id(path))
        if (
            kept is not None
            and kept.path() is path
            and kept.model() is model
            and kept.x.shape == x.shape
            and kept.x.dtype == x.dtype
            and kept.x.device == x.device
            and kept.x._version == kept.x_version
            and torch.equal(kept.target, _target_key(target, batch))
            and kept.state == _state(model, path)
            and torch.equal(kept.x, x)
        ):
            return kept.grad
    with evaluating(model), path.applied(model):
        grad = input_gradient(model, x, target)
    if remember:
        _REMEMBERED[id(path)] = _Remembered(
            weakref.ref(path), weakref.ref(model), _state(model, path), x, x._version, _target_key(target, batch), grad
        )
        weakref.finalize(path, _REMEMBERED.pop, id(path), None)
    return grad


def forget_input_gradients() -> None:
    """Drop every gradient kept by :func:`input_gradient_through`."""
    _REMEMBERED.clear()


__all__ = [
    "AttributionMethod",
    "Target",
    "explained_class",
    "forget_input_gradients",
    "input_gradient",
    "input_gradient_through",
    "normalize",
    "reduce_channels",
]
