"""Our attribution methods as Quantus explanation functions (Quantus 0.6, an optional extra).

Quantus (Hedström et al., JMLR 2023) evaluates maps with metrics such as PixelFlipping and ROAD,
calling ``explain_func(model=..., inputs=..., targets=..., **explain_func_kwargs)`` with numpy arrays
and expecting a numpy array back. This module does not import Quantus: install it with
``pip install ".[quantus]"`` (or ``pip install quantus==0.6.0``) to run its metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from pathlib_pw.attribution.maps import AttributionMethod
from pathlib_pw.attribution.registry import attribute, attribution_method
from pathlib_pw.sites import model_device

# what Quantus 0.6 itself passes: ``device`` (a metric's device argument), ``method`` (quantus.evaluate's key)
QUANTUS_KWARGS = ("device", "method")

ExplainFunc = Callable[..., np.ndarray]


def quantus_explain_func(method: str | AttributionMethod) -> ExplainFunc:
    """A Quantus 0.6 ``explain_func`` computing ``attribute(model, inputs, method, target=targets)``.

    ``method`` is a registered name (checked now) or an attribution method. The function returned
    takes ``(model, inputs, targets, **kwargs)``: ``inputs`` (B, C, H, W) and ``targets`` (B,) as numpy
    arrays (or tensors), and returns the maps as a float32 numpy array (B, 1, H, W), Quantus's own
    layout (its captum explanations keep the summed channel axis). The model is not moved: the images
    go to the model's device, and a ``device`` keyword (what a metric's ``device=`` passes on) must name
    that device, where Quantus also runs the model on the perturbed images. ``method`` keywords
    (``quantus.evaluate`` passes its key) are ignored; other keywords are refused: bind a method's
    options with its factory (e.g. ``pathway_grad_method(..., steps=20)``) instead.

    Examples
    --------
    >>> import numpy as np
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> explain = pw.quantus_explain_func("pathway_grad/neuron_mct")
    >>> a = explain(model, x.numpy(), np.array([285]))  # as Quantus calls it
    >>> a.shape, a.dtype
    ((1, 1, 224, 224), dtype('float32'))
    >>> import quantus  # the optional extra
    >>> quantus.Sparseness(disable_warnings=True)(
    ...     model=model, x_batch=x.numpy(), y_batch=np.array([285]), explain_func=explain, device="cpu"
    ... )  # doctest: +ELLIPSIS
    [...]
    """
    if isinstance(method, str):
        attribution_method(method)
    elif not callable(method):
        raise ValueError(f"method must be a registered name or a callable (model, x, target) -> maps, got {method!r}")

    def explain(model: nn.Module, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
        unknown = sorted(set(kwargs) - set(QUANTUS_KWARGS))
        if unknown:
            raise TypeError(f"unknown keyword(s) {unknown}; accepted: {list(QUANTUS_KWARGS)} (bind options with the factory)")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        device = model_device(model)
        if kwargs.get("device") is not None and not _same_device(torch.device(kwargs["device"]), device):
            raise ValueError(f"device must be the model's device {device} (move the model there first), got {kwargs['device']!r}")
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        maps = attribute(model, _copy(inputs).to(device, dtype), method, target=None if targets is None else _copy(targets))
        return maps.detach().cpu().numpy()[:, None]

    explain.__doc__ = f"Quantus explain_func: attribute(model, inputs, {method!r}, target=targets) as (B, 1, H, W) float32 numpy."
    return explain


def _copy(array: Any) -> torch.Tensor:
    """A tensor of its own: Quantus's arrays may be read-only views, which torch would share."""
    return array.detach().clone() if isinstance(array, torch.Tensor) else torch.tensor(np.asarray(array))


def _same_device(requested: torch.device, actual: torch.device) -> bool:
    """``cuda`` matches any CUDA device, ``cuda:1`` only that one."""
    return requested.type == actual.type and (requested.index is None or requested.index == actual.index)


__all__ = ["QUANTUS_KWARGS", "quantus_explain_func"]
