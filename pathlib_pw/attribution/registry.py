"""The registry of attribution methods and the package's one verb, :func:`attribute`.

``attribute(model, x, method, *, target=None, **options)`` computes the maps (B, H, W) of ``method``,
a registered name or an *attribution method*: a callable ``(model, x, target) -> maps`` that takes a
model, normalized images ``x`` (B, C, H, W) on the model's device and the explained class per image
(a (B,) long tensor) and returns float32 maps (B, H, W), signed as the method produces them (ranking
by magnitude is the pixel-removal code's business). ``target=None`` means the model's prediction.
Every evaluation of the book takes its methods by name from here.

Registered at import (:data:`ATTRIBUTION_METHODS`):

- the baselines of :func:`pathlib_pw.attribution.baselines.saliency` (book/methods.md: PathwayGrad and the baselines):
  ``"gradients"``, ``"guided_backprop"``, ``"gradcam"``, ``"input_mct"``, ``"input_intgrad"``;
- PathwayGrad (Khakzar et al., CVPR 2021, section 4; :mod:`pathlib_pw.attribution.pathway_grad`)
  through the NeuronMCT and NeuronIntGrad pathways at :data:`DEFAULT_PATHWAY_SPARSITY`:
  ``"pathway_grad/neuron_mct"``, ``"pathway_grad/neuron_intgrad"``, and
  ``"pathway_grad/neuron_intgrad_accumulated"`` (the authors' accumulated alphas, our candidate for
  the paper's undefined "NeuronIntGrad*"); :func:`pathway_grad_method` builds others (any criterion,
  sparsity, variant), e.g. to register ``"pathway_grad/neuron_mct@70"``;
- the controls of :mod:`pathlib_pw.attribution.controls` (ROAR, Hooker et al., NeurIPS 2019):
  ``"random"`` (:func:`random_ranking`) and ``"sobel"`` (:func:`sobel`).

Greedy and DGR pathways take seconds to minutes per image and are not registered by default.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from pathlib_pw import _deprecation
from pathlib_pw.attribution.baselines import SALIENCY_METHODS, SaliencyMethod, saliency
from pathlib_pw.attribution.controls import random_ranking, sobel
from pathlib_pw.attribution.maps import AttributionMethod, Target, explained_class
from pathlib_pw.attribution.pathway_grad import pathway_grad
from pathlib_pw.criteria import SPECS, extract_pathway
from pathlib_pw.criteria.spec import Method, Variant
from pathlib_pw.sites import as_model_input
from pathlib_pw.thresholds import as_percent

# The paper's ResNet50 setting in the qualitative comparison (book/methods.md: the paper's experiments); ResNet50 is also
# its ImageNet LeRF model, whose pathway sparsity the authors' artefacts do not record. VGG16 used 90
# (where its output change reaches about 15 %), the sanity checks 70: register others with the factory.
DEFAULT_PATHWAY_SPARSITY = 75.0
# options of saliency() that each baseline reads; the others ignore them
BASELINE_OPTIONS: dict[str, tuple[str, ...]] = {"input_intgrad": ("steps", "variant"), "gradcam": ("layer",)}
# the attribute of a baseline_method function holding (method, options), for attribute(..., **options)
BASELINE_ATTRIBUTE = "pathlib_pw_baseline"

ATTRIBUTION_METHODS: dict[str, AttributionMethod] = {}
PATHWAY_GRAD = "pathway_grad/"  # the prefix of PathwayGrad's names: pathway_grad/<criterion>
ACCUMULATED = "neuron_intgrad_accumulated"  # NeuronIntGrad with the authors' accumulated alphas


def register_attribution(name: str, fn: AttributionMethod, *, replace: bool = False) -> AttributionMethod:
    """Register ``fn`` under ``name`` (a taken name only with ``replace=True``); returns ``fn``.

    Registering the same method again under its name is a no-op, so that a notebook cell can be
    re-run: the same object, or an equal function (same module, qualified name, code, defaults and
    closure values, as a re-created lambda or ``pathway_grad_method(...)`` with the same arguments).
    A different callable under a taken name still needs ``replace=True``.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> def brightness(model, x, target):  # a toy method: each pixel's absolute value, any class
    ...     return x.abs().sum(1)
    >>> _ = pw.register_attribution("brightness", brightness)
    >>> _ = pw.register_attribution("pathway_grad/neuron_mct@90", pw.pathway_grad_method("neuron_mct", 90))
    >>> _ = pw.register_attribution("pathway_grad/neuron_mct@90", pw.pathway_grad_method("neuron_mct", 90))
    >>> model = pw.load_model("mobilenet_v2")  # (the same method again: a re-run cell is a no-op)
    >>> x, names = pw.load_photos(["chelsea"])
    >>> pw.attribute(model, x, "brightness").shape
    torch.Size([1, 224, 224])
    >>> "pathway_grad/neuron_mct@90" in pw.ATTRIBUTION_METHODS
    True
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise ValueError(f"fn must be a callable (model, x, target) -> maps (B, H, W), got {type(fn).__name__}")
    if name in ATTRIBUTION_METHODS and not replace:
        if _same_function(ATTRIBUTION_METHODS[name], fn):
            return fn
        raise ValueError(f"name {name!r} is already registered to a different method; pass replace=True to replace it")
    ATTRIBUTION_METHODS[name] = fn
    return fn


def _same_function(a: Any, b: Any) -> bool:
    """``a is b``, or two functions that compute the same: equal module, qualified name, code, defaults and closure values."""
    if a is b:
        return True
    if not (inspect.isfunction(a) and inspect.isfunction(b)):
        return False
    if (a.__module__, a.__qualname__, a.__code__, a.__defaults__, a.__kwdefaults__) != (
        b.__module__,
        b.__qualname__,
        b.__code__,
        b.__defaults__,
        b.__kwdefaults__,
    ):
        return False
    cells_a, cells_b = a.__closure__ or (), b.__closure__ or ()
    if len(cells_a) != len(cells_b):
        return False
    for u, v in zip(cells_a, cells_b):
        try:
            x, y = u.cell_contents, v.cell_contents
        except ValueError:  # an empty cell
            return False
        if x is y:
            continue
        if inspect.isfunction(x) or inspect.isfunction(y):
            if not _same_function(x, y):
                return False
            continue
        try:
            if type(x) is not type(y) or not bool(x == y):
                return False
        except (TypeError, ValueError, RuntimeError):  # tensors, arrays: no single truth value
            return False
    return True


def attribution_method(name: str) -> AttributionMethod:
    """The attribution method registered under ``name``: a callable ``(model, x, target) -> maps (B, H, W)``.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> method = pw.attribution_method("pathway_grad/neuron_mct")  # NeuronMCT's pathway at 75 %
    >>> pw.attribute(model, x, method).shape
    torch.Size([1, 224, 224])
    >>> pw.attribution_method("gradient")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: name must be one of the registered attribution methods [...], got 'gradient'
    """
    if name not in ATTRIBUTION_METHODS:
        raise ValueError(f"name must be one of the registered attribution methods {sorted(ATTRIBUTION_METHODS)}, got {name!r}")
    return ATTRIBUTION_METHODS[name]


def _old_argument_order(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Accept ``attribute(method, model, x, ...)``, the order before the convention, with a FutureWarning."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        if (
            len(args) >= 2
            and (isinstance(args[0], str) or (callable(args[0]) and not isinstance(args[0], nn.Module)))
            and isinstance(args[1], nn.Module)
        ):
            _deprecation.warn("attribute(method, model, x) is deprecated: call attribute(model, x, method)")
            given: list[Any] = list(args)
            if len(given) > 4 or (len(given) == 4 and "target" in kwargs):
                raise TypeError("attribute(method, model, x, target) takes at most 4 positional arguments")
            if len(given) == 4:  # the old positional target too: one warning for the old call
                kwargs = {**kwargs, "target": given.pop()}
            if len(given) == 3:
                given = [given[1], given[2], given[0]]
            else:  # attribute(method, model, x=x)
                given, kwargs = [given[1]], {**kwargs, "method": given[0]}
            args = tuple(given)
        return fn(*args, **kwargs)

    return wrapper


@_old_argument_order
@_deprecation.keyword_only_from(3, "target")
def attribute(
    model: nn.Module, x: torch.Tensor, method: str | AttributionMethod, *, target: Target = None, **options: Any
) -> torch.Tensor:
    """The maps (B, H, W), float32, of ``method`` (a registered name or an attribution method itself).

    The package's one verb for attribution maps: PathwayGrad through any criterion's pathway, the
    baselines, the controls and your own registered methods are all computed as
    ``attribute(model, x, method, *, target=None)``, the argument order of every function that runs the
    model (``saliency`` and ``pathway_grad`` are the building blocks it calls).

    ``x`` is moved to the model's device and dtype; ``target`` (an int, one per image, or None for the
    model's prediction) is resolved to a (B,) long tensor there before the method sees it. A method's
    float32 result comes back as it is (the same tensor); another floating dtype is converted to float32.

    ``options`` go to a baseline of :func:`baseline_method` (registered or not): ``layer`` for
    ``"gradcam"`` (e.g. ``attribute(model, x, "gradcam", layer="layer4")`` on a model without a default
    Grad-CAM layer), ``steps`` and ``variant`` for ``"input_intgrad"``; other methods take none (bind
    their options with their factory, e.g. ``pathway_grad_method``). The old order
    ``attribute(method, model, x)`` still works for one release, with a FutureWarning.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea", "coffee"])
    >>> grads = pw.attribute(model, x, "gradients")
    >>> grads.shape, grads.dtype
    (torch.Size([2, 224, 224]), torch.float32)
    >>> maps = pw.attribute(model, x, "pathway_grad/neuron_mct", target=[285, 967])  # a class per image
    >>> cam = pw.attribute(model, x, "gradcam", layer="features.18")  # a baseline's option
    >>> own = pw.attribute(model, x, lambda model, x, target: x.abs().sum(1))  # any callable
    """
    fn = attribution_method(method) if isinstance(method, str) else method
    if not callable(fn):
        raise ValueError(f"method must be a registered name or a callable (model, x, target) -> maps, got {method!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if options:
        baseline = getattr(fn, BASELINE_ATTRIBUTE, None)
        if baseline is None:
            raise TypeError(
                f"attribution method {method!r} takes no options (got {sorted(options)}): only the baselines of "
                f"baseline_method do ({dict(BASELINE_OPTIONS)}); bind other methods' options with their factory"
            )
        fn = baseline_method(baseline[0], **{**baseline[1], **options})
    x = as_model_input(x, model)
    maps = fn(model, x, explained_class(model, x, target=target))
    expected = (x.shape[0], *x.shape[2:])
    if not isinstance(maps, torch.Tensor) or tuple(maps.shape) != expected or not maps.is_floating_point():
        got = f"shape {tuple(maps.shape)}, dtype {maps.dtype}" if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"attribution method {method!r} must return floating maps of shape (B, H, W) = {expected}, got {got}")
    return maps.float()


def baseline_method(method: SaliencyMethod, **options: Any) -> AttributionMethod:
    """A baseline of :func:`pathlib_pw.attribution.baselines.saliency` as an attribution method.

    ``options``: ``steps`` and ``variant`` for ``"input_intgrad"`` (default 50 right-Riemann steps;
    ``variant="original_code"``: the authors' ``steps + 1`` alphas from 0), ``layer`` for
    ``"gradcam"`` (the submodule's name; default the last conv block of the architectures in
    ``pathlib_pw.architectures``, an error naming ``layer`` for others). E.g.
    ``register_attribution("gradcam@layer3", baseline_method("gradcam", layer="layer3"))``.
    """
    if method not in SALIENCY_METHODS:
        raise ValueError(f"method must be one of {list(SALIENCY_METHODS)}, got {method!r}")
    accepted = BASELINE_OPTIONS.get(method, ())
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for method {method!r}; accepted options: {list(accepted)}")

    def baseline(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return saliency(model, x, method, target=target, **options).float()

    baseline.__doc__ = f"saliency(model, x, {method!r}, target=target, **{options!r}) as float32 (book/methods.md: PathwayGrad and the baselines)."
    setattr(baseline, BASELINE_ATTRIBUTE, (method, dict(options)))  # attribute(..., **options) rebuilds it
    return baseline


def pathway_grad_method(
    criterion: str,
    sparsity: float | None,
    variant: Variant = "intended",
    *,
    times_input: bool = False,
    batch_size: int | None = None,
    **options: Any,
) -> AttributionMethod:
    """PathwayGrad through the pathway that ``criterion`` extracts for each batch and target.

    Khakzar et al., CVPR 2021, section 4: :func:`~pathlib_pw.criteria.extract_pathway` for the images
    and their explained classes, then :func:`~pathlib_pw.attribution.pathway_grad.pathway_grad` through that pathway.

    ``criterion`` is any criterion of ``criteria.SPECS`` (``neuron_mct``, ``neuron_intgrad``,
    ``greedy``, ``random``, ``dgr``, ``active_subnet``, ``dead_first_random``,
    ``dead_first_activation``); ``sparsity`` the percent of neurons removed, in [0, 100), or ``None``
    for ``active_subnet``, which derives it from each image; ``variant`` ``"intended"`` or, where the
    criterion has it, ``"original_code"``. ``times_input=True`` multiplies the gradient by the input
    before the channel reduction (what the authors' sanity-check script called InputMCT).
    ``batch_size`` extracts the pathways in chunks of this many images (bounds memory).

    ``options`` are the criterion's options (``criteria.SPECS[criterion].options``, e.g. ``steps`` for
    ``neuron_intgrad``). Seeded criteria (``random``, ``dgr``, ``dead_first_random``) take ``seed``, an
    int (default 0); image ``i`` of a batch draws with ``seed * 1_000_003 + i``, so their pathways
    depend on the image's position in the batch.

    Pathways are thresholded per image, but float sums over a batch can round differently from those
    of a single image, so a neuron at the threshold may flip with the batch composition (rarely).

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea", "coffee"])
    >>> at_90 = pw.pathway_grad_method("neuron_mct", 90)  # NeuronMCT's pathway, 90 % removed
    >>> maps = pw.attribute(model, x, at_90)
    >>> maps.shape
    torch.Size([2, 224, 224])
    >>> active = pw.pathway_grad_method("active_subnet", None)  # the sparsity comes from each image
    >>> quick = pw.pathway_grad_method("neuron_intgrad", 50, steps=4)  # a criterion's option
    """
    if criterion not in SPECS:
        raise ValueError(f"criterion must be one of {sorted(SPECS)}, got {criterion!r}")
    spec = SPECS[criterion]
    if variant not in spec.variants:
        raise ValueError(f"variant for criterion {criterion!r} must be one of {list(spec.variants)}, got {variant!r}")
    if spec.needs_sparsity:
        if not isinstance(sparsity, (int, float)) or isinstance(sparsity, bool):
            raise ValueError(f"sparsity must be a number in [0, 100) for criterion {criterion!r}, got {sparsity!r}")
        as_percent(sparsity, 1)
        sparsity = float(sparsity)
    elif sparsity is not None:
        raise ValueError(f"sparsity must be None for criterion {criterion!r} (it is derived from each image)")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for criterion {criterion!r}; accepted options: {list(spec.options)}")
    if spec.seeded:
        seed = options.setdefault("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an int for criterion {criterion!r} (one per method, not per image), got {seed!r}")

    def pathway_grad_map(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        path = extract_pathway(
            model, x, cast(Method, criterion), sparsity, target=target, variant=variant, batch_size=batch_size, **options
        )
        return pathway_grad(model, x, path, target=target, times_input=times_input).float()

    pathway_grad_map.__doc__ = (
        f"PathwayGrad through the {criterion!r} pathway (sparsity {sparsity}, variant {variant!r}, options "
        f"{options!r}{', times input' if times_input else ''}); Khakzar et al., CVPR 2021, section 4."
    )
    return pathway_grad_map


def _register_defaults() -> None:
    for method in SALIENCY_METHODS:
        register_attribution(method, baseline_method(method))
    for criterion in ("neuron_mct", "neuron_intgrad"):
        register_attribution(PATHWAY_GRAD + criterion, pathway_grad_method(criterion, DEFAULT_PATHWAY_SPARSITY))
    accumulated = pathway_grad_method("neuron_intgrad", DEFAULT_PATHWAY_SPARSITY, "original_code")
    accumulated.__doc__ = (
        "PathwayGrad through NeuronIntGrad with the authors' accumulated alphas 0, 0.1, 0.3, ..., 5.5 "
        "(variant='original_code', book/methods.md: pathway criteria): our candidate for the paper's undefined "
        "'NeuronIntGrad*' of its ROAR and LeRF tables. On a model that calls one rectifier module several "
        "times (ResNet) the variant also keeps the code's module/call mix-up: only the first n_modules "
        "call sites are scored and masked."
    )
    register_attribution(PATHWAY_GRAD + ACCUMULATED, accumulated)
    register_attribution("random", random_ranking(0))
    register_attribution("sobel", sobel)


_register_defaults()
# the stable names registered at import, in registration order
DEFAULT_NAMES: tuple[str, ...] = tuple(ATTRIBUTION_METHODS)

__all__ = [
    "ACCUMULATED",
    "ATTRIBUTION_METHODS",
    "DEFAULT_NAMES",
    "DEFAULT_PATHWAY_SPARSITY",
    "PATHWAY_GRAD",
    "AttributionMethod",
    "attribute",
    "attribution_method",
    "baseline_method",
    "pathway_grad_method",
    "random_ranking",
    "register_attribution",
    "sobel",
]
