"""The paper's attribution methods side by side: baselines and PathwayGrad through criteria's pathways,
for the same images and target (the qualitative figures and the sanity checks).

It sits with the experiments because it joins the two lower layers, :mod:`pathlib_pw.saliency`
(attribution) and :mod:`pathlib_pw.criteria` (pathways), which do not import each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from pathlib_pw import decisions
from pathlib_pw.attribution.baselines import SALIENCY_METHODS, SaliencyMethod, saliency
from pathlib_pw.attribution.maps import Target, explained_class, normalize, reduce_channels
from pathlib_pw.attribution.pathway_grad import pathway_grad
from pathlib_pw.criteria import CRITERIA, extract_pathways
from pathlib_pw.criteria.spec import Method
from pathlib_pw.sites import check_input, model_device

INPUT_TIMES = "input_x_"
# the authors' sanity-check script's "InputMCT": the reduced, normalized PathwayGrad map (1 x H x W)
# times the 3-channel input, reduced and normalized again
MAP_TIMES = "map_x_input_"
# label -> method: the seven maps of the paper's qualitative figures and sanity checks
PAPER_METHODS: dict[str, str] = {
    "Gradients": "gradients",
    "GBP": "guided_backprop",
    "GradCAM": "gradcam",
    "InputMCT": "input_mct",
    "InputIntGrad": "input_intgrad",
    "NeuronMCT": "neuron_mct",
    "NeuronIntGrad": "neuron_intgrad",
}


def pathway_criteria(methods: Sequence[str]) -> set[str]:
    """The criteria whose pathways :func:`attribution_maps` extracts for ``methods``."""
    return {_criterion(m) for m in methods if m not in SALIENCY_METHODS}


def _criterion(method: str) -> str:
    return method.removeprefix(INPUT_TIMES).removeprefix(MAP_TIMES)


def map_times_input(maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """What the authors' sanity-check script computed as "InputMCT" from a PathwayGrad map.

    ``maps`` (B, H, W), already channel-reduced and normalized, times the input ``x`` (B, C, H, W),
    then reduced over the channels and normalized again (``pathway_grad(..., times_input=True)``
    instead multiplies the raw 3-channel gradient by the input and reduces once).
    """
    return normalize(reduce_channels(maps.unsqueeze(1) * x))


def attribution_maps(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str],
    sparsity: float | None = None,
    target: Target = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, torch.Tensor]:
    """The maps of several methods for the same images and target, each (B, H, W) in [-1, 1].

    Args:
        methods: baselines (``SALIENCY_METHODS``), criteria (``CRITERIA``: PathwayGrad through that
            criterion's pathway at ``sparsity``) and ``"input_x_<criterion>"`` (input x PathwayGrad).
            Each criterion's pathway is extracted once, whatever number of methods uses it.
        target: class explained per image, for every method; default the model's prediction.
        options: keyword arguments per method or criterion, e.g. ``{"neuron_intgrad": {"steps": 20},
            "input_intgrad": {"steps": 100}}``: a criterion's go to
            :func:`~pathlib_pw.criteria.extract_pathway`, a baseline's to :func:`saliency`.
    """
    return attribution_maps_at(model, x, methods, None if sparsity is None else [sparsity], target, options)[0]


def attribution_maps_at(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str],
    sparsities: Sequence[float] | None = None,
    target: Target = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """:func:`attribution_maps` at each of ``sparsities``, one dict per sparsity: each criterion scores
    the images once (:func:`~pathlib_pw.criteria.extract_pathways`) and the baselines, which do not
    depend on the sparsity, are computed once and shared by every dict."""
    criteria = pathway_criteria(methods)
    unknown = sorted(c for c in criteria if c not in CRITERIA)
    if unknown:
        accepted = list(SALIENCY_METHODS) + sorted(CRITERIA) + [INPUT_TIMES + "<criterion>", MAP_TIMES + "<criterion>"]
        raise ValueError(f"methods must be among {accepted}, got {unknown}")
    if criteria and not sparsities:
        raise ValueError(f"sparsity is required for the pathway methods {sorted(criteria)}")
    levels = list(sparsities) if sparsities else []
    options = dict(options or {})
    unused = sorted(set(options) - set(methods) - criteria)
    if unused:
        raise ValueError(f"options names methods that are not computed: {unused}")
    x = check_input(x).to(model_device(model))
    target = explained_class(model, x, target=target)
    paths = {}
    for c in sorted(criteria):
        with decisions.scope(c):
            paths[c] = extract_pathways(model, x, cast(Method, c), levels, target=target, **options.get(c, {}))
    baselines = {
        m: saliency(model, x, cast(SaliencyMethod, m), target=target, **options.get(m, {}))
        for m in methods
        if m in SALIENCY_METHODS
    }
    out = []
    for j in range(max(1, len(levels))):  # baselines only: one dict
        maps = dict(baselines)
        for method in methods:
            if method in SALIENCY_METHODS:
                continue
            criterion = _criterion(method)
            if method.startswith(MAP_TIMES):
                plain = maps[criterion] if criterion in maps else pathway_grad(model, x, paths[criterion][j], target=target)
                maps[method] = map_times_input(plain, x)
            else:
                maps[method] = pathway_grad(model, x, paths[criterion][j], target=target, times_input=method != criterion)
        out.append({m: maps[m] for m in methods})
    return out
