"""The baseline attribution maps of the paper's comparisons (book/methods.md: PathwayGrad and the baselines), backed by Captum:
Gradients, InputMCT (gradient x input), InputIntGrad, Guided Backprop and Grad-CAM.

Reduced and normalized like PathwayGrad (:mod:`pathlib_pw.attribution.maps`): (B, H, W) in [-1, 1].
:func:`saliency` computes one by name; the one verb of the package is
``attribute(model, x, method, *, target=None, **options)`` (:mod:`pathlib_pw.attribution.registry`),
which runs these under the same names.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from captum.attr import InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from torch import nn

from pathlib_pw import _deprecation
from pathlib_pw.architectures import GRADCAM_LAYERS, gradcam_layer_of
from pathlib_pw.attribution.maps import Target, explained_class, input_gradient, normalize, reduce_channels
from pathlib_pw.sites import as_model_input, evaluating, hooked

SaliencyMethod = Literal["gradients", "input_mct", "input_intgrad", "guided_backprop", "gradcam"]
SALIENCY_METHODS: tuple[SaliencyMethod, ...] = ("gradients", "input_mct", "input_intgrad", "guided_backprop", "gradcam")


@_deprecation.keyword_only_from(3, "target")
def saliency(
    model: nn.Module,
    x: torch.Tensor,
    method: SaliencyMethod,
    *,
    target: Target = None,
    steps: int = 50,
    layer: str | None = None,
    variant: Literal["intended", "original_code"] = "intended",
) -> torch.Tensor:
    """A baseline attribution map (B, H, W), reduced and normalized like PathwayGrad.

    ``method`` is one of :data:`SALIENCY_METHODS`: ``"gradients"`` (the plain input gradient =
    PathwayGrad at sparsity 0), ``"input_mct"`` (gradient x input), ``"input_intgrad"`` (integrated
    gradients from the all-zero normalized input, ``steps`` right-Riemann steps: alphas 1/steps .. 1),
    ``"guided_backprop"`` (at every ReLU/ReLU6 site) or ``"gradcam"`` (at ``layer``, default the last
    conv block, upsampled bilinearly). ``target`` is the class explained per image, default the
    prediction. ``variant="original_code"`` changes only ``"input_intgrad"``: the authors' alphas
    ``np.arange(steps + 1) / steps`` (``steps + 1`` points, alpha = 0 included), the input times the
    mean gradient over them.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea", "coffee"])
    >>> cam = pw.saliency(model, x, "gradcam")
    >>> cam.shape
    torch.Size([2, 224, 224])
    >>> bool(cam.abs().max() <= 1)
    True
    >>> tabby = pw.saliency(model, x, "gradients", target=281)  # ImageNet class 281, "tabby"
    >>> authors = pw.saliency(model, x, "input_intgrad", steps=10, variant="original_code")
    """
    if isinstance(model, str) and isinstance(x, nn.Module):
        raise TypeError(f"saliency takes (model, x, method): call saliency(model, x, {model!r})")
    if not isinstance(method, str) or method not in SALIENCY_METHODS:
        shown = method if isinstance(method, str) else type(method).__name__
        raise ValueError(f"method must be one of {list(SALIENCY_METHODS)}, got {shown!r}")
    if variant not in ("intended", "original_code"):
        raise ValueError(f"variant must be 'intended' or 'original_code', got {variant!r}")
    x = as_model_input(x, model).detach().requires_grad_(True)
    with evaluating(model):
        tgt = explained_class(model, x, target=target)
        if method == "gradients":
            attr = Saliency(model).attribute(x, target=tgt, abs=False)
        elif method == "input_mct":
            attr = InputXGradient(model).attribute(x, target=tgt)
        elif method == "input_intgrad":
            if not isinstance(steps, int) or steps < 1:
                raise ValueError(f"steps must be a positive int, got {steps!r}")
            if variant == "original_code":
                return normalize(reduce_channels(_authors_intgrad(model, x.detach(), tgt, steps)))
            attr = IntegratedGradients(model).attribute(
                x,
                baselines=torch.zeros_like(x),
                target=tgt,
                n_steps=steps,
                method="riemann_right",
                internal_batch_size=x.shape[0] * min(steps, 10),
            )
        elif method == "guided_backprop":
            attr = guided_backprop(model, x, target=tgt)
        else:
            module = _gradcam_layer(model, layer)
            cam = LayerGradCam(model, module).attribute(x, target=tgt, relu_attributions=True)
            return normalize(LayerAttribution.interpolate(cam.detach(), tuple(x.shape[2:]), "bilinear").squeeze(1))
    return normalize(reduce_channels(attr.detach()))


def _authors_intgrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int) -> torch.Tensor:
    """The authors' InputIntGrad: x times the mean input gradient at alpha x, alpha in arange(steps + 1) / steps."""
    total = torch.zeros_like(x)
    for k in range(steps + 1):
        total += input_gradient(model, x * (k / steps), target)
    return x * total / (steps + 1)


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward passes only the positive part of the incoming gradient."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clone()

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> torch.Tensor:
        return grads[0].clamp(min=0)


@_deprecation.keyword_only_from(2, "target")
def guided_backprop(model: nn.Module, x: torch.Tensor, *, target: torch.Tensor) -> torch.Tensor:
    """Guided Backprop (Springenberg et al. 2015) at every rectifier site, module or functional, unreduced."""
    with hooked(model, lambda _i, out: _PositiveGradient.apply(out), keep_outputs=False):
        return input_gradient(model, x, target)


def _gradcam_layer(model: nn.Module, layer: str | None) -> nn.Module:
    modules = dict(model.named_modules())
    if layer is None:
        # the first module of a known architecture, the model itself or one it wraps (select_output, ...)
        for name, module in modules.items():
            known = gradcam_layer_of(module)
            if known is not None:
                layer = f"{name}.{known}" if name else known
                break
        else:
            example = _last_conv_block(model) or "<submodule name>"
            raise ValueError(
                f"layer must name the Grad-CAM layer of {type(model).__name__} (no default for this architecture; "
                f"defaults exist for {sorted(GRADCAM_LAYERS)}): pass it, e.g. "
                f'attribute(model, x, "gradcam", layer="{example}") or saliency(model, x, "gradcam", layer="{example}"), '
                f'or make it the default of the architecture: pathlib_pw.architectures.register_architecture("{type(model).__name__}", '
                f'gradcam_layer="{example}")'
            )
    if layer not in modules:
        raise ValueError(f"layer must be the name of a submodule of the model, got {layer!r}")
    return modules[layer]


def _last_conv_block(model: nn.Module) -> str | None:
    """The name of the last child that contains a Conv2d, below any chain of single-child wrappers: a
    reasonable Grad-CAM layer to suggest."""
    prefix, module = "", model
    while len(children := list(module.named_children())) == 1:
        name, module = children[0]
        prefix += name + "."
    with_conv = [name for name, child in module.named_children() if any(isinstance(m, nn.Conv2d) for m in child.modules())]
    return prefix + with_conv[-1] if with_conv else None


__all__ = ["SALIENCY_METHODS", "SaliencyMethod", "guided_backprop", "saliency"]
