"""What :func:`~pathlib_pw.extract_pathways` checks on every pathway it returns, so that no result is silently wrong.

- Realized sparsity above the request: the paper's ``score <= cut`` rule removes every neuron tied
  at the cut (dead neurons all score exactly 0), and the dead-first controls remove every dead
  neuron first. A pathway that removes more than ``OVERSHOOT_TOLERANCE`` percentage points (plus
  one neuron) beyond the request warns with the numbers (:class:`PathwayWarning`).
- A disconnected pathway: when the explained logit no longer depends on the input through the
  path (every site on the way cut, or only neurons with zero gradient kept), PathwayGrad is an
  all-zero map and output changes are meaningless. That raises :class:`EmptyPathwayError`, naming
  the sites that keep no neuron, unless ``allow_empty=True`` (then nothing is checked).
- Activations that are not rectifiers (GELU, SiLU, LeakyReLU, Hardswish, Sigmoid, ...) are no
  pathway site: a warning lists them once per model, and ``path.info["skipped_activations"]`` keeps the list.

The experiments record realized sparsity and empty paths as results: they run inside
:func:`recorded_by_experiment`, where empty paths are allowed and these warnings are not raised.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
import weakref
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import evaluating, resolve_target, skipped_activations
from pathlib_pw.units import outside_stacklevel

__all__ = [
    "OVERSHOOT_TOLERANCE",
    "EmptyPathwayError",
    "PathwayWarning",
    "check_pathways",
    "disconnected",
    "recorded_by_experiment",
]

OVERSHOOT_TOLERANCE = 1.0  # percentage points of neurons beyond the request, plus one neuron

_IN_EXPERIMENT: contextvars.ContextVar[bool] = contextvars.ContextVar("pathlib_pw_in_experiment", default=False)
_WARNED_SKIPPED: weakref.WeakKeyDictionary[nn.Module, tuple[str, ...]] = weakref.WeakKeyDictionary()


class PathwayWarning(UserWarning):
    """A pathway differs from what was asked for (more removed than requested, activations skipped)."""


class EmptyPathwayError(ValueError):
    """A pathway through which the explained logit no longer depends on the input."""


@contextlib.contextmanager
def recorded_by_experiment() -> Iterator[None]:
    """For the block, :func:`check_pathways` neither warns nor raises: the caller records realized
    sparsity and empty paths as results (the book's experiments do)."""
    token = _IN_EXPERIMENT.set(True)
    try:
        yield
    finally:
        _IN_EXPERIMENT.reset(token)


def in_experiment() -> bool:
    return _IN_EXPERIMENT.get()


def disconnected(model: nn.Module, x: torch.Tensor, path: Pathway) -> torch.Tensor:
    """(B,) bool: whether the explained logit's gradient with respect to the input is exactly zero
    everywhere through ``path`` (its PathwayGrad map would be all zero). The explained class is
    ``path.info["target"]`` when present, else the unmasked network's prediction."""
    with evaluating(model), torch.enable_grad():
        target = path.info.get("target")
        if target is None:
            with torch.no_grad():
                target = resolve_target(None, model(x.clone()))
        inp = x.detach().clone().requires_grad_(True)
        with path.applied(model):
            logits = model(inp.clone())
        picked = logits.gather(1, torch.as_tensor(target).to(logits.device).view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(picked, inp, allow_unused=True)
    if grad is None:
        return torch.ones(x.shape[0], dtype=torch.bool)
    return (grad.flatten(1) == 0).all(1).cpu()


def _images(flags: torch.Tensor) -> str:
    index = flags.nonzero().flatten().tolist()
    shown = ", ".join(map(str, index[:8])) + (", ..." if len(index) > 8 else "")
    return f"image{'s' if len(index) > 1 else ''} {shown}"


def check_pathways(
    model: nn.Module,
    x: torch.Tensor,
    paths: Sequence[Pathway],
    requested: Sequence[torch.Tensor] | None,
    criterion: str,
    *,
    allow_empty: bool,
    overshoot_reason: str,
) -> None:
    """Warn or raise as the module docstring says; ``requested`` holds one (B,) percent tensor per path
    (None for a criterion that derives its sparsity). Adds ``info["skipped_activations"]`` to each path."""
    skipped = skipped_activations(model, x)
    for path in paths:
        path.info["skipped_activations"] = list(skipped)
    if in_experiment():
        return
    if skipped and _WARNED_SKIPPED.get(model) != tuple(skipped):
        _WARNED_SKIPPED[model] = tuple(skipped)
        warnings.warn(
            f"{len(skipped)} activation(s) of this model are not rectifiers and are not pathway sites, so "
            f"the pathway does not select neurons there: {', '.join(skipped[:10])}{', ...' if len(skipped) > 10 else ''} "
            "(also in path.info['skipped_activations'])",
            PathwayWarning,
            stacklevel=outside_stacklevel(),
        )
    for j, path in enumerate(paths):
        if requested is not None:
            wanted = requested[j].to(path.sparsity.device, torch.float64)
            excess = path.sparsity.double() - wanted
            over = excess > OVERSHOOT_TOLERANCE + 100.0 / path.num_neurons
            if bool(over.any()):
                worst = int(excess.argmax())
                warnings.warn(
                    f"{criterion} removed more neurons than requested on {_images(over)} of {len(path)}: "
                    f"{float(path.sparsity[worst]):.2f} % realized for {float(wanted[worst]):.2f} % requested "
                    f"(image {worst}; tolerance {OVERSHOOT_TOLERANCE:g} point): {overshoot_reason}. "
                    "path.sparsity holds the realized sparsity per image",
                    PathwayWarning,
                    stacklevel=outside_stacklevel(),
                )
        if allow_empty:
            continue
        cut = disconnected(model, x, path)
        if bool(cut.any()):
            empty_sites = [name for name, m in zip(path.sites, path.masks) if not bool(m[cut].flatten(1).any(1).all())]
            sites = (
                f"; sites that keep no neuron: {', '.join(empty_sites[:6])}{', ...' if len(empty_sites) > 6 else ''}"
                if empty_sites
                else ""
            )
            raise EmptyPathwayError(
                f"the {criterion} pathway at {float(path.sparsity[cut].max()):.2f} % realized sparsity disconnects the "
                f"output from the input on {_images(cut)} of {len(path)} (the explained logit's input gradient through "
                f"the path is exactly 0, so PathwayGrad would be an all-zero map){sites}; use a lower sparsity, or "
                "pass allow_empty=True to get such pathways anyway"
            )
