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
from pathlib_pw.criteria import CRITERIA, extract_pathway
from pathlib_pw.criteria.spec import Method
from pathlib_pw.saliency import SALIENCY_METHODS, SaliencyMethod, Target, explained_class, pathway_grad, saliency
from pathlib_pw.sites import check_input, model_device

INPUT_TIMES = "input_x_"
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
    return {m.removeprefix(INPUT_TIMES) for m in methods if m not in SALIENCY_METHODS}


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
    criteria = pathway_criteria(methods)
    unknown = sorted(c for c in criteria if c not in CRITERIA)
    if unknown:
        accepted = list(SALIENCY_METHODS) + sorted(CRITERIA) + [INPUT_TIMES + "<criterion>"]
        raise ValueError(f"methods must be among {accepted}, got {unknown}")
    if criteria and sparsity is None:
        raise ValueError(f"sparsity is required for the pathway methods {sorted(criteria)}")
    options = dict(options or {})
    unused = sorted(set(options) - set(methods) - criteria)
    if unused:
        raise ValueError(f"options names methods that are not computed: {unused}")
    x = check_input(x).to(model_device(model))
    target = explained_class(model, x, target)
    paths = {}
    for c in sorted(criteria):
        with decisions.scope(c):
            paths[c] = extract_pathway(model, x, cast(Method, c), sparsity, target, **options.get(c, {}))
    maps = {}
    for method in methods:
        if method in SALIENCY_METHODS:
            maps[method] = saliency(model, x, cast(SaliencyMethod, method), target, **options.get(method, {}))
        else:
            criterion = method.removeprefix(INPUT_TIMES)
            maps[method] = pathway_grad(model, x, paths[criterion], target, times_input=method != criterion)
    return maps
