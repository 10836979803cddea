"""PathwayGrad and the baseline attribution maps (PAPER.md section 4).

Every map has shape (B, H, W) with values in [-1, 1]: RGB reduced to the signed value of largest
magnitude, then divided by the image's largest absolute value (an all-zero map stays zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from captum.attr import InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from torch import nn

from pathlib_pw import _deprecation
from pathlib_pw.pathway import Pathway
from pathlib_pw.selection import per_image
from pathlib_pw.sites import as_model_input, evaluating, hooked, resolve_target

SaliencyMethod = Literal["gradients", "input_mct", "input_intgrad", "guided_backprop", "gradcam"]
SALIENCY_METHODS: tuple[SaliencyMethod, ...] = ("gradients", "input_mct", "input_intgrad", "guided_backprop", "gradcam")
GRADCAM_LAYERS = {
    "VGG": "features",
    "AlexNet": "features",
    "ResNet": "layer4",
    "MobileNetV2": "features",
    "EfficientNetLite0": "net._blocks.15",  # the last MBConv block (its head rectifier module is shared with the stem)
}


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


def _input_gradient(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """d logit[target] / d input; ``target`` is resolved against this forward pass's logits."""
    inp = x.detach().requires_grad_(True)
    logits = model(inp.clone())  # a model may start with an in-place rectifier
    tgt = resolve_target(target, logits)
    (grad,) = torch.autograd.grad(logits.gather(1, tgt.view(-1, 1)).sum(), inp)
    return grad


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
        with path.applied(model):
            grad = _input_gradient(model, x, target)
    return normalize(reduce_channels(grad * x if times_input else grad))


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
    """A baseline attribution map, reduced and normalized like PathwayGrad.

    Args:
        method: ``"gradients"`` (plain input gradient = PathwayGrad at sparsity 0), ``"input_mct"``
            (gradient x input), ``"input_intgrad"`` (integrated gradients from the all-zero normalized
            input, ``steps`` right-Riemann steps: alphas 1/steps .. 1), ``"guided_backprop"`` (at every ReLU/ReLU6 site)
            or ``"gradcam"`` (at ``layer``, default the last conv block, upsampled bilinearly).
        target: class explained per image; default the prediction.
        variant: ``"original_code"`` changes only ``"input_intgrad"``: the authors' alphas
            ``np.arange(steps + 1) / steps`` (``steps + 1`` points, alpha = 0 included), the input
            times the mean gradient over them.
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
        total += _input_gradient(model, x * (k / steps), target)
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
        return _input_gradient(model, x, target)


def _gradcam_layer(model: nn.Module, layer: str | None) -> nn.Module:
    modules = dict(model.named_modules())
    if layer is None:
        # the first module of a known architecture, the model itself or one it wraps (select_output, ...)
        for name, module in modules.items():
            known = next((GRADCAM_LAYERS[c.__name__] for c in type(module).__mro__ if c.__name__ in GRADCAM_LAYERS), None)
            if known is not None:
                layer = f"{name}.{known}" if name else known
                break
        else:
            example = _last_conv_block(model) or "<submodule name>"
            raise ValueError(
                f"layer must name the Grad-CAM layer of {type(model).__name__} (no default for this architecture; "
                f"defaults exist for {sorted(GRADCAM_LAYERS)}): pass it, e.g. "
                f'attribute(model, x, "gradcam", layer="{example}") or saliency(model, x, "gradcam", layer="{example}"), '
                f'or register it once: register_attribution("gradcam@{example}", '
                f'pathlib_pw.attribution_methods.baseline_method("gradcam", layer="{example}"))'
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
