"""What :func:`~pathlib_pw.extract_pathways` checks on every pathway it returns, so that no result is silently wrong.

- Realized sparsity above the request: the paper's ``score <= cut`` rule removes every neuron tied
  at the cut (dead neurons all score exactly 0), and the dead-first controls remove every dead
  neuron first. A pathway that removes more than ``OVERSHOOT_TOLERANCE`` percentage points (plus
  one neuron) beyond the request warns with the numbers (:class:`PathwayWarning`).
- A disconnected pathway: when the explained logit no longer depends on the input through the
  path (every site on the way cut, or only neurons with zero gradient kept), PathwayGrad is an
  all-zero map: a warning names the sites that keep no neuron, and ``info["disconnected"]`` marks
  the images. A pathway that keeps no neuron at all raises :class:`EmptyPathwayError` unless
  ``allow_empty=True``.
- A cut inside a block of tied scores (DGR's gates): ``info["tied_share"]`` and
  ``info["tie_removed_share"]`` say how many neurons tie at the cut and how many of them the seeded
  tie order removed; above 1 % of the neurons a warning says that part of the path depends on the seed.
- A DGR run in which no iterate kept the prediction warns (``info["kept_prediction"]``).
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

from pathlib_pw.attribution.maps import forget_input_gradients, input_gradient_through
from pathlib_pw.pathway import Pathway
from pathlib_pw.selection import any_true
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
    """A pathway that keeps no neuron at all."""


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
        grad = input_gradient_through(model, x, path, target=target, remember=True)  # pathway_grad reuses it
    return (grad.flatten(1) == 0).all(1).cpu()


def keeps_nothing(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B,) bool on the CPU: the images whose masks keep no neuron at all. Site by site, stopping as
    soon as every image keeps one (on a usable path, after the first site): not a count of every mask."""
    keeps = torch.zeros(masks[0].shape[0], dtype=torch.bool)
    for m in masks:
        keeps |= any_true(m).cpu()
        if bool(keeps.all()):
            break
    return ~keeps


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
    (None for a criterion that derives its sparsity). Adds ``info["skipped_activations"]`` and, unless
    in an experiment, ``info["disconnected"]`` to each path."""
    skipped = skipped_activations(model, x)
    for path in paths:
        path.info["skipped_activations"] = list(skipped)
    if in_experiment():
        return
    forget_input_gradients()  # those of earlier calls: only this call's pathways keep theirs
    notes: list[str] = []
    if skipped and _WARNED_SKIPPED.get(model) != tuple(skipped):
        _WARNED_SKIPPED[model] = tuple(skipped)
        shown = ", ".join(skipped[:10]) + (", ..." if len(skipped) > 10 else "")
        notes.append(
            f"{len(skipped)} activation(s) of this model are not rectifiers and are not pathway sites, so the "
            f"pathway does not select neurons there: {shown} (also in path.info['skipped_activations'])"
        )
    over, split, cut = [], [], []
    for j, path in enumerate(paths):
        level = "" if len(paths) == 1 or requested is None else f" at {float(requested[j].max()):g} % requested"
        empty = keeps_nothing(path.masks)
        if bool(empty.any()) and not allow_empty:
            raise EmptyPathwayError(
                f"the {criterion} pathway{level} keeps no neuron at all on {_images(empty)} of {len(path)}; "
                "use a lower sparsity, or pass allow_empty=True to get such pathways anyway"
            )
        if requested is not None:
            wanted = requested[j].to(path.sparsity.device, torch.float64)
            excess = path.sparsity.double() - wanted
            beyond = excess > OVERSHOOT_TOLERANCE + 100.0 / path.num_neurons
            if bool(beyond.any()):
                worst = int(excess.argmax())
                over.append(
                    f"{float(path.sparsity[worst]):.2f} % realized for {float(wanted[worst]):.2f} % requested on "
                    f"{_images(beyond)} of {len(path)} (the largest: image {worst})"
                )
        if "tied_share" in path.info:
            tied, removed = path.info["tied_share"].double(), path.info["tie_removed_share"].double()
            chose = (tied > 0.01) & (removed > 0) & (removed < tied)
            if bool(chose.any()):
                worst = int(torch.where(chose, tied, torch.zeros_like(tied)).argmax())
                split.append(
                    f"{100 * float(tied[worst]):.1f} % of the neurons tie at the cut{level} (image {worst}) and the "
                    f"seeded tie order chose the {100 * float(removed[worst]):.1f} % removed from them"
                )
        gone = disconnected(model, x, path)
        path.info["disconnected"] = gone
        if bool(gone.any()):
            sites = [name for name, m in zip(path.sites, path.masks) if not bool(any_true(m[gone]).all())]
            named = f" (sites that keep no neuron: {', '.join(sites[:6])}{', ...' if len(sites) > 6 else ''})" if sites else ""
            cut.append(f"at {float(path.sparsity[gone].max()):.2f} % realized sparsity on {_images(gone)} of {len(path)}{named}")
    if over:
        notes.append(
            f"{criterion} removed more neurons than requested (tolerance {OVERSHOOT_TOLERANCE:g} point): "
            f"{'; '.join(over)}. Why: {overshoot_reason}. path.sparsity holds the realized sparsity per image"
        )
    if split:
        notes.append(
            f"{criterion}: {'; '.join(split)}. That part of the path depends on the seed, not on the scores "
            "(info['tied_share'], info['tie_removed_share'])"
        )
    if cut:
        notes.append(
            f"the {criterion} pathway disconnects the output from the input {'; '.join(cut)}: the explained logit's "
            "input gradient through it is exactly 0, so PathwayGrad is an all-zero map there (info['disconnected'])"
        )
    kept = paths[0].info.get("kept_prediction") if paths else None
    if isinstance(kept, torch.Tensor) and not bool(kept.all()):
        retries = paths[0].info.get("retries")
        after = f" after {int(retries[~kept.cpu()].max())} retries" if isinstance(retries, torch.Tensor) else ""
        notes.append(
            f"{criterion}: no iterate kept the prediction on {_images(~kept)} of {len(kept)}{after}; the path there is "
            "the lowest-loss iterate's (info['kept_prediction'])"
        )
    for note in notes:
        warnings.warn(note, PathwayWarning, stacklevel=outside_stacklevel())
