"""PathwayGrad, the paper's attribution (Khakzar et al., CVPR 2021, section 4): the input gradient
through the network restricted to a critical pathway. ``pathway_grad_method`` in
:mod:`pathlib_pw.attribution.registry` extracts the pathway and calls it as an attribution method.
"""

from __future__ import annotations

import torch
from torch import nn

from pathlib_pw import _deprecation
from pathlib_pw.attribution.maps import Target, explained_class, input_gradient_through, normalize, reduce_channels
from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import as_model_input, evaluating


@_deprecation.keyword_only_from(3, "target", "times_input")
@_deprecation.renamed(pathway="path")
def pathway_grad(
    model: nn.Module, x: torch.Tensor, path: Pathway, *, target: Target = None, times_input: bool = False
) -> torch.Tensor:
    """PathwayGrad: the input gradient of the target logit through the network restricted to ``path``.

    Khakzar et al., CVPR 2021, section 4. Not multiplied by the input (``times_input=True`` multiplies
    it, before the channel reduction: what the authors' sanity-check script computed as "InputMCT"
    from the NeuronIntGrad path). ``target`` defaults to the pathway's explained class
    (``path.info["target"]``), else the unmasked network's prediction.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea", "coffee"])
    >>> path = pw.extract_pathway(model, x, "neuron_mct", 50)  # 50 % of the neurons removed
    >>> maps = pw.pathway_grad(model, x, path)
    >>> maps.shape
    torch.Size([2, 224, 224])
    >>> bool(maps.abs().max() <= 1)
    True
    """
    x = as_model_input(x, model)
    if not isinstance(path, Pathway):
        raise TypeError(f"path must be a Pathway, got {type(path).__name__}")
    if len(path) not in (1, x.shape[0]):
        raise ValueError(f"path holds {len(path)} images but x holds {x.shape[0]}: they must match (or path holds 1)")
    if target is None and "target" in path.info and len(path) == x.shape[0]:
        target = path.info["target"]
    with evaluating(model):
        if target is None:  # explain the unmasked network's prediction, not the masked one's
            target = explained_class(model, x)
        grad = input_gradient_through(model, x, path, target=target)
    return normalize(reduce_channels(grad * x if times_input else grad))


__all__ = ["pathway_grad"]
