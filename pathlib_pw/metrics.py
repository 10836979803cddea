"""Path metrics (book/methods.md: neurons, paths and sparsity; the paper's experiments): overlap, base sparsity and dead-neuron share, output change."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pathlib_pw import _deprecation
from pathlib_pw.pathway import Pathway
from pathlib_pw.selection import add_all
from pathlib_pw.sites import as_model_input, evaluating, record_activations, resolve_target


def _check_same_sites(a: Pathway, b: Pathway) -> None:
    if a.sites != b.sites or len(a) != len(b):
        raise ValueError("pathways must have the same sites and the same number of images")


def jaccard(a: Pathway, b: Pathway, per_site: bool = False) -> torch.Tensor:
    """``|A n B| / |A u B|`` of the kept sets, per image (B,) or per image and site (B, n_sites).

    An empty union (both paths keep nothing) gives NaN: the overlap is undefined there.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> mct = pw.extract_pathway(model, x, "neuron_mct", 90)
    >>> rnd = pw.extract_pathway(model, x, "random", 90, seed=0)
    >>> pw.jaccard(mct, mct).tolist(), round(float(pw.jaccard(mct, rnd)[0]), 2)
    ([1.0], 0.05)
    """
    _check_same_sites(a, b)
    if per_site:
        inter = torch.stack([(m & n).flatten(1).sum(1) for m, n in zip(a.masks, b.masks)], 1).double()
        union = torch.stack([(m | n).flatten(1).sum(1) for m, n in zip(a.masks, b.masks)], 1).double()
    else:
        inter = add_all((m & n).flatten(1).sum(1, dtype=torch.float64) for m, n in zip(a.masks, b.masks))
        union = add_all((m | n).flatten(1).sum(1, dtype=torch.float64) for m, n in zip(a.masks, b.masks))
    return (inter / union).float()


def chance_jaccard(
    a: Pathway,
    b: Pathway,
    available_a: Sequence[torch.Tensor] | None = None,
    available_b: Sequence[torch.Tensor] | None = None,
    per_site: bool = False,
) -> torch.Tensor:
    """The Jaccard overlap two paths of these sizes would have by chance, per image (B,) or per image
    and site (B, n_sites).

    The null: each path is replaced by a uniform draw, independent of the other, of as many neurons
    per site as it keeps there, among the neurons it could keep (``available_*``: one bool mask per
    site, shaped like the path's masks; None: every neuron). With available sets that leave out what a
    criterion removes for free (a contribution criterion's zero-score neurons), the null gets those
    for free too. Neuron n is then kept with probability pi(n) = kept / available in its site, and
    ``E|A n B| = sum of pi_A(n) pi_B(n)``; the value is ``E|A n B| / (|A| + |B| - E|A n B|)``, the ratio of
    the expectations (within 1e-3 of the expected ratio for sites of a few hundred neurons). NaN where
    both paths keep nothing. Every kept neuron must be available.
    """
    _check_same_sites(a, b)
    terms = []
    for path, available, name in ((a, available_a, "available_a"), (b, available_b, "available_b")):
        if available is None:
            available = [torch.ones_like(m) for m in path.masks]
        if len(available) != len(path.masks) or any(
            v.shape != m.shape or v.dtype != torch.bool for v, m in zip(available, path.masks)
        ):
            raise ValueError(f"{name} must hold one bool mask per site, shaped like the pathway's masks")
        if any(bool((m & ~v.to(m.device)).any()) for m, v in zip(path.masks, available)):
            raise ValueError(f"{name} must contain every neuron its pathway keeps")
        kept = torch.stack([m.flatten(1).sum(1, dtype=torch.float64) for m in path.masks], 1)
        size = torch.stack([v.flatten(1).sum(1, dtype=torch.float64) for v in available], 1)
        terms.append((kept, torch.where(size > 0, kept / size.clamp(min=1), torch.zeros_like(size)), available))
    (kept_a, pi_a, avail_a), (kept_b, pi_b, avail_b) = terms
    both = torch.stack([(u.to(v.device) & v).flatten(1).sum(1, dtype=torch.float64) for u, v in zip(avail_a, avail_b)], 1).to(
        pi_a.device
    )
    inter = pi_a * pi_b.to(pi_a.device) * both
    if not per_site:
        inter, kept_a, kept_b = inter.sum(1), kept_a.sum(1), kept_b.sum(1)
    union = kept_a + kept_b.to(kept_a.device) - inter
    return (inter / union).float().cpu()


def base_sparsity(activations: Sequence[torch.Tensor]) -> torch.Tensor:
    """Share (0..1) of neurons with activation <= 0 in the unpruned network, per image (B,)."""
    dead = add_all((a <= 0).flatten(1).sum(1, dtype=torch.float64) for a in activations)
    total = sum(a[0].numel() for a in activations)
    return (dead / total).cpu()


def dead_share_of(path: Pathway, activations: Sequence[torch.Tensor], *, per_site: bool = False) -> torch.Tensor:
    """Share of the path's kept neurons whose unpruned activation is <= 0, per image (or per site).

    The pure measure behind :func:`dead_share`, for callers that hold the activations already:
    ``activations`` are the rectifier outputs of the unpruned network (``record_activations``).
    NaN where the path keeps nothing.

    Examples
    --------
    >>> import torch
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> path = pw.extract_pathway(model, x, "random", 90, seed=0)
    >>> logits, activations, sites = pw.record_activations(model, x)
    >>> torch.equal(pw.dead_share_of(path, activations), pw.dead_share(model, x, path))
    True
    """
    if not isinstance(path, Pathway):
        raise TypeError(f"path must be a Pathway, got {type(path).__name__}")
    if len(activations) != len(path.masks) or any(a.shape != m.shape for a, m in zip(activations, path.masks)):
        raise ValueError("activations must have one tensor per site, shaped like the pathway's masks")
    dead = [(m & (a.to(m.device) <= 0)).flatten(1).sum(1, dtype=torch.float64) for m, a in zip(path.masks, activations)]
    kept = [m.flatten(1).sum(1, dtype=torch.float64) for m in path.masks]
    if per_site:
        return (torch.stack(dead, 1) / torch.stack(kept, 1)).float()
    return (add_all(dead) / add_all(kept)).float()


def dead_share(model: nn.Module | Pathway, x: Any, path: Any = None, *, per_site: bool = False) -> torch.Tensor:
    """Share of the path's kept neurons that are dead (activation <= 0) in the unpruned ``model`` on
    ``x``, per image (B,) or per image and site (B, n_sites); NaN where the path keeps nothing.

    Runs the model once (:func:`~pathlib_pw.sites.record_activations`); with the activations at hand
    use :func:`dead_share_of`. The old form ``dead_share(path, activations)`` still works for one
    release, with a FutureWarning.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> path = pw.extract_pathway(model, x, "neuron_mct", 90)
    >>> pw.dead_share(model, x, path).tolist()  # NeuronMCT scores a dead neuron 0: it goes first
    [0.0]
    """
    if isinstance(model, Pathway):
        if path is not None:  # the old third positional argument was per_site
            per_site = bool(path)
        _deprecation.warn(
            "dead_share(path, activations) is deprecated: use dead_share(model, x, path) or dead_share_of(path, activations)"
        )
        return dead_share_of(model, x, per_site=per_site)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(path, Pathway):
        raise TypeError(f"path must be a Pathway, got {type(path).__name__}")
    _, activations, _ = record_activations(model, x)  # validated and moved to the model there
    return dead_share_of(path, activations, per_site=per_site)


@dataclasses.dataclass(frozen=True)
class PathResponse:
    """The explained class's softmax probability without (``p_orig``) and through (``p_path``) the
    path, and whether the path keeps the unmasked network's predicted class (``class_kept``); (B,)
    each, on the CPU."""

    p_orig: torch.Tensor
    p_path: torch.Tensor
    class_kept: torch.Tensor

    @property
    def change(self) -> torch.Tensor:
        """``|p_path - p_orig| / p_orig``: the paper's output change."""
        return (self.p_path - self.p_orig).abs() / self.p_orig

    @property
    def signed_change(self) -> torch.Tensor:
        """(p_path - p_orig) / p_orig: negative where the path lowers the probability."""
        return (self.p_path - self.p_orig) / self.p_orig


@_deprecation.keyword_only_from(3, "target")
def path_response(
    model: nn.Module, x: torch.Tensor, path: Pathway, *, target: int | Sequence[int] | torch.Tensor | None = None
) -> PathResponse:
    """How the path changes the network's response, per image (see :class:`PathResponse`).

    ``target`` defaults to the pathway's explained class, else the unmasked prediction.
    """
    x = as_model_input(x, model)
    if target is None and "target" in path.info and len(path) == x.shape[0]:
        target = path.info["target"]
    with torch.no_grad(), evaluating(model):
        logits = model(x.clone())
        tgt = resolve_target(target, logits).view(-1, 1)
        with path.applied(model):
            masked = model(x.clone())
    p_orig = logits.softmax(1).gather(1, tgt).squeeze(1)
    p_path = masked.softmax(1).gather(1, tgt).squeeze(1)
    return PathResponse(p_orig.cpu(), p_path.cpu(), (masked.argmax(1) == logits.argmax(1)).cpu())


@_deprecation.keyword_only_from(3, "target")
def output_change(
    model: nn.Module, x: torch.Tensor, path: Pathway, *, target: int | Sequence[int] | torch.Tensor | None = None
) -> torch.Tensor:
    """``|p_masked - p_orig| / p_orig`` of the target's softmax probability, per image (B,).

    ``target`` defaults to the pathway's explained class, else the unmasked prediction.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> path = pw.extract_pathway(model, x, "neuron_mct", 90)
    >>> change = pw.output_change(model, x, path)  # the predicted class's probability, relative
    >>> change.shape, round(float(change[0]), 2)
    (torch.Size([1]), 0.98)
    """
    return path_response(model, x, path, target=target).change


def map_concentration(maps: torch.Tensor | np.ndarray, share: float = 0.05) -> np.ndarray:
    """Share of each map's total ``|value|`` held by its top ``share`` of pixels, per map.

    1 means all attribution sits in those pixels; ``share`` is the value of a uniform map. An
    all-zero map (a path that disconnects the input) has no attribution to distribute: NaN.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    values = np.abs(np.asarray(maps, dtype=np.float64))
    if values.ndim < 2:
        raise ValueError(f"maps must have shape (..., H, W), got {values.shape}")
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1])
    top = np.sort(flat, axis=1)[:, ::-1][:, : max(1, int(share * flat.shape[1]))].sum(1)
    total = flat.sum(1)
    out = np.full(total.shape, np.nan)
    np.divide(top, total, out=out, where=total > 0)
    return out.reshape(values.shape[:-2])
