"""Critical-pathway criteria (book/methods.md: pathway criteria), one file per criterion, one entry point.

Every criterion is a function ``(model, x, levels, target, variant, **options) -> list[Pathway]``
that is batched over images, described by the ``SPEC`` at the end of its file
(:class:`~pathlib_pw.criteria.spec.CriterionSpec`); :func:`extract_pathway` validates the arguments
against that description, moves the input to the model's device, optionally splits the images into
chunks, and dispatches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import torch
from torch import nn

from pathlib_pw import _deprecation, decisions
from pathlib_pw.criteria import _progress, _scores, active, dead_first, dgr, greedy, intgrad, mct, random
from pathlib_pw.criteria.checks import check_pathways
from pathlib_pw.criteria.seeds import per_image_seeds
from pathlib_pw.criteria.spec import CriterionSpec, Method, Variant
from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import as_index_tensor, as_model_input, rectifier_modules
from pathlib_pw.thresholds import as_percent
from pathlib_pw.units import warn_if_share

SPECS: dict[str, CriterionSpec] = {
    spec.name: spec
    for spec in (
        mct.SPEC,
        intgrad.SPEC,
        greedy.SPEC,
        random.SPEC,
        dgr.SPEC,
        active.SPEC,
        dead_first.SPEC_RANDOM,
        dead_first.SPEC_ACTIVATION,
    )
}
CRITERIA: dict[str, Callable[..., list[Pathway]]] = {name: spec.function for name, spec in SPECS.items()}
VARIANTS: dict[str, tuple[str, ...]] = {name: spec.variants for name, spec in SPECS.items()}


@_deprecation.renamed(method="criterion")
def spec(criterion: str) -> CriterionSpec:
    """The description of ``criterion`` (one of ``SPECS``)."""
    if criterion not in SPECS:
        raise ValueError(f"criterion must be one of {sorted(SPECS)}, got {criterion!r}")
    return SPECS[criterion]


def table() -> Any:
    """Every criterion's description, one row each (a pandas DataFrame, for the docs)."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "criterion": s.name,
                "what": s.summary,
                "variants": ", ".join(s.variants),
                "takes a sparsity": s.needs_sparsity,
                "seeded": s.seeded,
                "options": ", ".join(s.options),
            }
            for s in SPECS.values()
        ]
    ).set_index("criterion")


@overload
def extract_pathway(
    model: nn.Module,
    x: torch.Tensor,
    criterion: Method,
    sparsity: float | Sequence[float] | torch.Tensor | None = None,
    *,
    target: int | Sequence[int] | torch.Tensor | None = None,
    variant: Variant = "intended",
    batch_size: int | None = None,
    progress: bool = False,
    allow_empty: bool = False,
    return_scores: Literal[False] = False,
    **options: Any,
) -> Pathway: ...


@overload
def extract_pathway(
    model: nn.Module,
    x: torch.Tensor,
    criterion: Method,
    sparsity: float | Sequence[float] | torch.Tensor | None = None,
    *,
    target: int | Sequence[int] | torch.Tensor | None = None,
    variant: Variant = "intended",
    batch_size: int | None = None,
    progress: bool = False,
    allow_empty: bool = False,
    return_scores: Literal[True],
    **options: Any,
) -> tuple[Pathway, list[torch.Tensor]]: ...


@_deprecation.keyword_only_from(4, "target", "variant")
@_deprecation.renamed(method="criterion")
def extract_pathway(
    model: nn.Module,
    x: torch.Tensor,
    criterion: Method,
    sparsity: float | Sequence[float] | torch.Tensor | None = None,
    *,
    target: int | Sequence[int] | torch.Tensor | None = None,
    variant: Variant = "intended",
    batch_size: int | None = None,
    progress: bool = False,
    allow_empty: bool = False,
    return_scores: bool = False,
    **options: Any,
) -> Pathway | tuple[Pathway, list[torch.Tensor]]:
    """Find the critical pathway of each image in ``x`` with ``criterion``.

    Args:
        model: a CNN with rectifiers: ``nn.ReLU``/``nn.ReLU6`` modules and the functional calls
            ``torch.relu``, ``torch.relu_``, ``F.relu``, ``F.relu_``, ``F.relu6``, ``Tensor.relu`` and
            ``Tensor.relu_`` (see :mod:`pathlib_pw.sites`). Other activations (GELU, SiLU, LeakyReLU,
            Hardswish, ...) are not sites: they are skipped, with a warning. Its weights and mode are
            unchanged afterwards (it is run in eval mode). Put it on the GPU to compute there.
        x: normalized images (B, C, H, W); moved to the model's device.
        criterion: one of ``CRITERIA`` (``neuron_mct``, ``neuron_intgrad``, ``greedy``, ``random``, ``dgr``,
            ``active_subnet``, and the controls ``dead_first_random`` and ``dead_first_activation``, which
            remove every dead neuron first, then living ones at random or by lowest activation).
        sparsity: percent of neurons to remove, in [0, 100), scalar or one per image (not used by
            ``active_subnet``, which derives it from the image).
        target: class explained per image (keyword-only); default the model's prediction.
        variant: ``"intended"`` (the criterion as described) or ``"original_code"`` (the authors' code,
            defects included) where the two differ; see ``VARIANTS``.
        batch_size: process the images in chunks of this size (bounds memory); default all at once.
        progress: show a tqdm progress bar on stderr over the criterion's outer loop (Greedy's rounds,
            DGR's iterations with the retry pass in the postfix, NeuronIntGrad's sites), and one over
            the chunks when ``batch_size`` splits the images. Off by default; never changes the result.
        allow_empty: return pathways that keep no neuron at all instead of raising
            :class:`~pathlib_pw.criteria.checks.EmptyPathwayError`. Each returned pathway costs one
            more forward and backward pass: the check whether it still connects the output to the
            input (a warning and ``info["disconnected"]`` where it does not).
        return_scores: also return the per-neuron scores the criterion thresholded, one (B, ...)
            tensor per site (detached, on the model's device), for the criteria that threshold one
            set of scores (``SPECS[name].scores``): NeuronMCT's ``|a x d logit / d a|`` and
            NeuronIntGrad's integrated contributions (neuron attributions, like Captum's layer
            methods), DGR's trained gates, the active subnet's and the dead-first controls' scores.
            NeuronIntGrad's ``original_code`` variant scores only the first ``info["scored_sites"]``
            sites: that many tensors. Greedy (new scores every round) and Random (no scores) raise
            ValueError.
        options: criterion-specific keyword arguments (for example ``steps`` for ``neuron_intgrad``,
            ``rounds`` for ``greedy``, ``init`` and ``iterations`` for ``dgr``, ``seed``).

    Returns:
        A :class:`~pathlib_pw.pathway.Pathway` with one mask per site and image, the realized
        sparsity, and in ``info`` the requested sparsity, the explained ``target``, the
        ``skipped_activations`` (non-rectifier activations, no site) and criterion extras. With
        ``return_scores=True``: ``(pathway, scores)``.

    Warns (:class:`~pathlib_pw.criteria.checks.PathwayWarning`, one warning per kind and call) when a
    pathway removes more than requested (by more than one percentage point), disconnects the output
    from the input, has its cut inside a block of tied scores (DGR), when DGR kept no prediction, and,
    once per model, when the model has activations that are not rectifiers; a sparsity in (0, 1)
    warns "did you mean ... %?" (:mod:`pathlib_pw.criteria.checks`).

    Old spellings, for one release with a FutureWarning: ``method=`` for ``criterion``, and ``target``
    and ``variant`` by position.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> path = pw.extract_pathway(model, x, "neuron_mct", 90)  # 90 % of the neurons removed
    >>> round(float(path.sparsity[0]), 1)
    90.0
    >>> path, scores = pw.extract_pathway(model, x, "neuron_mct", 90, return_scores=True)
    >>> len(scores) == len(path.sites), scores[0].shape == path.masks[0].shape
    (True, True)
    """
    method = criterion
    description = spec(method)
    if description.needs_sparsity and sparsity is None:
        raise ValueError(f"sparsity (percent of neurons removed, in [0, 100)) is required for criterion {method!r}")
    if not description.needs_sparsity and sparsity is not None:
        raise ValueError(f"sparsity must be None for criterion {method!r} (it is derived from each image)")
    levels = None if sparsity is None else [sparsity]
    paths, scores = _extract(model, x, method, levels, target, variant, batch_size, progress, allow_empty, return_scores, options)
    return (paths[0], scores) if return_scores else paths[0]


@overload
def extract_pathways(
    model: nn.Module,
    x: torch.Tensor,
    criterion: Method,
    sparsities: Sequence[float | Sequence[float] | torch.Tensor] | None,
    *,
    target: int | Sequence[int] | torch.Tensor | None = None,
    variant: Variant = "intended",
    batch_size: int | None = None,
    progress: bool = False,
    allow_empty: bool = False,
    return_scores: Literal[False] = False,
    **options: Any,
) -> list[Pathway]: ...


@overload
def extract_pathways(
    model: nn.Module,
    x: torch.Tensor,
    criterion: Method,
    sparsities: Sequence[float | Sequence[float] | torch.Tensor] | None,
    *,
    target: int | Sequence[int] | torch.Tensor | None = None,
    variant: Variant = "intended",
    batch_size: int | None = None,
    progress: bool = False,
    allow_empty: bool = False,
    return_scores: Literal[True],
    **options: Any,
) -> tuple[list[Pathway], list[torch.Tensor]]: ...


@_deprecation.keyword_only_from(4, "target", "variant")
@_deprecation.renamed(method="criterion")
def extract_pathways(
    model: nn.Module,
    x: torch.Tensor,
    criterion: Method,
    sparsities: Sequence[float | Sequence[float] | torch.Tensor] | None,
    *,
    target: int | Sequence[int] | torch.Tensor | None = None,
    variant: Variant = "intended",
    batch_size: int | None = None,
    progress: bool = False,
    allow_empty: bool = False,
    return_scores: bool = False,
    **options: Any,
) -> list[Pathway] | tuple[list[Pathway], list[torch.Tensor]]:
    """:func:`extract_pathway` at several sparsities, scoring each image once.

    Scores (NeuronMCT, NeuronIntGrad), gates (DGR) and the authors' Greedy loop do not depend on the
    sparsity, and an intended Greedy run passes through every multiple of its step: one call here
    costs about as much as the largest sparsity alone. Returns one Pathway per entry of ``sparsities``.

    Args:
        sparsities: a list of sparsities, each a scalar or one per image (see ``sparsity`` of
            :func:`extract_pathway`); None for ``active_subnet``.
        progress: show tqdm progress bars on stderr (see :func:`extract_pathway`); default off.
        return_scores: also return the scores every path was thresholded from (one set: the
            criterion scores once), as ``(paths, scores)``; see :func:`extract_pathway`.
        model, x, criterion, target, variant, batch_size, options: as for :func:`extract_pathway`
            (``target`` and ``variant`` keyword-only; ``method=`` is the deprecated spelling of
            ``criterion``).

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> paths = pw.extract_pathways(model, x, "random", [50, 90], seed=0)
    >>> [round(float(p.sparsity[0]), 1) for p in paths]
    [50.0, 90.0]
    """
    paths, scores = _extract(
        model, x, criterion, sparsities, target, variant, batch_size, progress, allow_empty, return_scores, options
    )
    return (paths, scores) if return_scores else paths


def _extract(
    model: nn.Module,
    x: torch.Tensor,
    method: Method,
    sparsities: Sequence[float | Sequence[float] | torch.Tensor] | None,
    target: int | Sequence[int] | torch.Tensor | None,
    variant: Variant,
    batch_size: int | None,
    progress: bool,
    allow_empty: bool,
    return_scores: bool,
    options: dict[str, Any],
) -> tuple[list[Pathway], list[torch.Tensor]]:
    """:func:`extract_pathways`: the paths, and the scores they were thresholded from when
    ``return_scores`` (else an empty list)."""
    description = spec(method)
    if variant not in description.variants:
        raise ValueError(f"variant for criterion {method!r} must be one of {list(description.variants)}, got {variant!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rectifier_modules(model)
    x = as_model_input(x, model)  # validated once: the copy below is made from it
    unknown = sorted(set(options) - set(description.options))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for criterion {method!r}; accepted options: {list(description.options)}")
    batch = x.shape[0]
    if not description.needs_sparsity:
        if sparsities is not None:
            raise ValueError(f"sparsities must be None for criterion {method!r} (it is derived from each image)")
        percents = None
    else:
        if sparsities is None or isinstance(sparsities, (int, float, torch.Tensor)) or len(sparsities) == 0:
            raise ValueError(f"sparsities must be a non-empty list of sparsities in percent for criterion {method!r}")
        percents = [as_percent(level, batch) for level in sparsities]
        asked = sorted(set(torch.cat(percents).tolist()))
        warn_if_share("sparsity" if len(percents) == 1 else "sparsities", asked[0] if len(asked) == 1 else asked)
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    _progress.check(progress)
    if not isinstance(allow_empty, bool):
        raise TypeError(f"allow_empty must be a bool, got {allow_empty!r}")
    if not isinstance(return_scores, bool):
        raise TypeError(f"return_scores must be a bool, got {return_scores!r}")
    if return_scores and not description.scores:
        scored = [name for name, s in SPECS.items() if s.scores]
        raise ValueError(
            f"return_scores=True needs a criterion that thresholds one set of scores, one of {scored}; got {method!r}"
        )
    if description.seeded:
        options["seed"] = per_image_seeds(options.get("seed", 0), batch)
    if target is not None and not (isinstance(target, int) and not isinstance(target, bool)):
        target = as_index_tensor(target, "target")
        if target.numel() not in (1, batch):
            raise ValueError(f"target must be one class index or one per image ({batch}), got {target.numel()}")
        if target.numel() == 1:
            target = target.expand(batch)

    # criteria run many forward passes on x; a copy keeps the caller's tensor safe from in-place rectifiers
    x = x.detach().clone()
    step = batch if batch_size is None else batch_size
    starts = range(0, batch, step)
    parts = []
    handed: list[list[list[torch.Tensor]]] = []
    with (
        _progress.showing(progress),
        _progress.bar(len(starts), f"{method} chunks of {step} images", "chunk", show=len(starts) > 1) as chunks,
    ):
        for start in starts:
            chunk = slice(start, start + step)
            with (
                decisions.criterion(description.rounding_for(options)),
                decisions.rows(chunk),
                _scores.collecting(return_scores) as chunk_scores,
            ):
                parts.append(
                    description.function(
                        model,
                        x[chunk],
                        None if percents is None else [p[chunk] for p in percents],
                        target if target is None or isinstance(target, int) else target[chunk],
                        variant,
                        **{k: (v[chunk] if k == "seed" else v) for k, v in options.items()},
                    )
                )
            handed.append(chunk_scores)
            chunks.update()
    paths = [parts[0][j] if len(parts) == 1 else Pathway.cat([part[j] for part in parts]) for j in range(len(parts[0]))]
    check_pathways(model, x, paths, percents, method, allow_empty=allow_empty, overshoot_reason=description.overshoot)
    return paths, _joined(handed, method) if return_scores else []


def _joined(handed: list[list[list[torch.Tensor]]], method: str) -> list[torch.Tensor]:
    """One set of per-site scores from each chunk's single hand-back, the chunks concatenated."""
    if any(len(chunk) != 1 for chunk in handed):
        raise RuntimeError(f"criterion {method!r} handed back {[len(c) for c in handed]} sets of scores per chunk, not 1")
    if len(handed) == 1:
        return handed[0][0]
    return [torch.cat([chunk[0][s] for chunk in handed]) for s in range(len(handed[0][0]))]


__all__ = [
    "CRITERIA",
    "SPECS",
    "VARIANTS",
    "CriterionSpec",
    "Method",
    "Variant",
    "extract_pathway",
    "extract_pathways",
    "spec",
    "table",
]
