"""Activation sites: every rectifier call, in forward order, however it is written.

A *neuron* (book/methods.md: neurons, paths and sparsity) is one element of one rectifier output at one call. Rectifiers are
``nn.ReLU``/``nn.ReLU6`` modules and the functional calls ``torch.relu``, ``torch.relu_``, ``F.relu``,
``F.relu_``, ``F.relu6`` (in place or not), ``Tensor.relu`` and ``Tensor.relu_`` (torchvision's
Inception v3 and many research models have no rectifier module at all). A module or function called
several times per forward pass (torchvision ResNet's ``relu``) gives one site per call.

Names: a module site is the module's qualified name (``features.0.2``); a functional site is the
qualified name of the innermost module whose forward made the call, ``/`` and ``relu`` or ``relu6``
(``Mixed_5b.branch1x1/relu``; ``/relu`` for a call in the model's own forward; in-place and
out-of-place calls are named alike). A name used by several calls gets ``#k`` for its k-th call
(``relu#1``, ``block/relu#0``). A functional call inside a rectifier module's forward is that module's site.

Everything that changes a model goes through :func:`hooked`, a context manager that removes its
hooks (and its function mode) on exit, also when the body raises. Module sites are forward hooks;
functional calls are intercepted by a ``TorchFunctionMode`` only for models that make them: the first
forward pass of a model under :func:`hooked` also watches for them, and the answer is kept per model
(:func:`makes_functional_calls`), so a model whose rectifiers are all modules runs with its module
hooks alone afterwards. An edited in-place functional call is edited in place, so code that ignores
its result (``x.relu_()``) sees the edit too; such a model is handed a copy of its input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import _global_forward_hooks
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

RECTIFIER_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
# functional rectifier -> its out-of-place form; F.relu_ is torch.relu_
RECTIFIER_FUNCTIONS: dict[Callable[..., Any], Callable[..., torch.Tensor]] = {
    torch.relu: torch.relu,
    torch.relu_: torch.relu,
    F.relu: torch.relu,
    F.relu6: F.relu6,
    torch.Tensor.relu: torch.relu,
    torch.Tensor.relu_: torch.relu,
}
IN_PLACE_FUNCTIONS = (torch.relu_, torch.Tensor.relu_)
# Activations that are not rectifiers: no pathway site, so a model built on them is explained only
# through its rectifiers; extract_pathway warns with the list (:func:`skipped_activations`)
OTHER_ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.GELU, nn.SiLU, nn.Mish, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.Hardswish,
    nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.LogSigmoid, nn.Threshold,
)  # fmt: skip
OTHER_ACTIVATION_FUNCTIONS: dict[Callable[..., Any], str] = {
    F.gelu: "gelu", F.silu: "silu", F.mish: "mish", F.leaky_relu: "leaky_relu", F.leaky_relu_: "leaky_relu",
    F.prelu: "prelu", F.rrelu: "rrelu", F.elu: "elu", F.elu_: "elu", F.celu: "celu", F.selu: "selu",
    F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.sigmoid: "sigmoid", torch.sigmoid: "sigmoid",
    torch.Tensor.sigmoid: "sigmoid", F.tanh: "tanh", torch.tanh: "tanh", torch.Tensor.tanh: "tanh",
    F.softplus: "softplus", F.softsign: "softsign", F.hardtanh: "hardtanh", F.logsigmoid: "logsigmoid",
}  # fmt: skip

Edit = Callable[[int, torch.Tensor], torch.Tensor]
# edits the input of an in-place rectifier module in place before the module runs; True if it did
InputEdit = Callable[[int, torch.Tensor], bool]

# model -> (its submodules' ids, whether its forward pass made a functional rectifier call)
# and the functional non-rectifier activations it called outside activation modules (:func:`skipped_activations`)
_PROBED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], bool, tuple[str, ...]]] = weakref.WeakKeyDictionary()


def _torch_layer(module: nn.Module) -> bool:
    """One of ``torch.nn``'s own layers other than the Transformer ones (their activation may be ``F.relu``)."""
    where = type(module).__module__
    return where.startswith("torch.nn.modules.") and where != "torch.nn.modules.transformer"


def _fingerprint(model: nn.Module) -> tuple[int, ...]:
    return tuple(id(m) for m in model.modules())


def makes_functional_calls(model: nn.Module) -> bool | None:
    """Whether ``model``'s forward pass calls a functional rectifier outside rectifier modules.

    False for a model built only from ``torch.nn``'s own layers, which make no such call (the
    Transformer layers excepted: their activation may be ``F.relu``). For any other model, known after
    its first forward pass under :func:`hooked` (and kept until its submodules change), None before.
    """
    if all(map(_torch_layer, model.modules())):
        return False
    probed = _PROBED.get(model)
    return probed[1] if probed is not None and probed[0] == _fingerprint(model) else None


def functional_site_name(module: str, function: object) -> str:
    """The name of a functional rectifier call made in the forward of the module named ``module``."""
    return f"{module}/{'relu6' if function is F.relu6 else 'relu'}"


def _no_rectifier(model: nn.Module) -> ValueError:
    return ValueError(
        f"model {type(model).__name__} has no rectifier: pathways need nn.ReLU or nn.ReLU6 modules, or "
        "torch.relu, torch.relu_, F.relu, F.relu6, Tensor.relu or Tensor.relu_ calls in its forward pass"
    )


def rectifier_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """All ``nn.ReLU``/``nn.ReLU6`` submodules as ``(qualified name, module)``, in registration order.

    Empty for a model whose rectifiers are all functional calls; ValueError when the model has no
    rectifier module and a forward pass has shown that it makes no functional rectifier call either.
    """
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, RECTIFIER_TYPES)]
    if not found and makes_functional_calls(model) is False:
        raise _no_rectifier(model)
    return found


def site_names(calls: Sequence[tuple[str, int]]) -> list[str]:
    """Names for ``(module or functional name, call index)`` pairs; the ``#k`` suffix only for reused names."""
    counts = Counter(name for name, _ in calls)
    return [name if counts[name] == 1 else f"{name}#{k}" for name, k in calls]


@dataclasses.dataclass
class Trace:
    """What one forward pass under :func:`hooked` saw: site names, shapes and (edited) outputs."""

    calls: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    outputs: list[torch.Tensor] = dataclasses.field(default_factory=list)

    @property
    def sites(self) -> list[str]:
        return site_names(self.calls)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Per-site activation shape without the batch dimension."""
        return [tuple(o.shape[1:]) for o in self.outputs]

    def _reset(self) -> None:
        self.calls.clear()
        self.outputs.clear()


class _FunctionalSites(TorchFunctionMode):
    """Sends every functional rectifier call made inside ``model``'s modules, but not inside a rectifier
    module, to ``record(name, output)``; the other torch calls pass through unchanged.

    The enclosing module comes from a stack kept by a pre-hook and an always-called forward hook on
    every submodule. An in-place call that is edited is computed out of place, edited, and copied
    back into its input, so code that ignores the return value (``x.relu_()``) sees the edit too
    (:func:`hooked` hands such a model a copy of its input, which is never written to).
    """

    def __init__(self, model: nn.Module, record: Callable[[str, torch.Tensor], torch.Tensor], editing: bool) -> None:
        super().__init__()
        self.model = model
        self.record = record
        self.editing = editing
        # (qualified name, is a rectifier module, is any activation module) per running module
        self.stack: list[tuple[str, bool, bool]] = []
        self.other: list[str] = []  # functional non-rectifier activations called outside activation modules
        self.seen = False  # a functional rectifier call in this forward pass

    def start(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A forward pass of the model begins: an empty stack, and copies of its tensor arguments (an
        edited in-place call writes into its input, never into the caller's tensor)."""
        self.stack.clear()
        self.seen = False

        def copy(value: Any) -> Any:
            return value.clone() if isinstance(value, torch.Tensor) else value

        return tuple(map(copy, args)), {k: copy(v) for k, v in kwargs.items()}

    def add_hooks(self, handles: list[RemovableHandle]) -> None:
        """Hooks that start each forward pass and keep the stack of running modules, appended to ``handles``."""

        def pop(_module: nn.Module, _args: object, _output: object) -> None:
            if self.stack:
                self.stack.pop()

        handles.append(self.model.register_forward_pre_hook(self.start, with_kwargs=True))
        for name, module in self.model.named_modules():
            entry = (name, isinstance(module, RECTIFIER_TYPES), isinstance(module, RECTIFIER_TYPES + OTHER_ACTIVATION_TYPES))
            handles.append(module.register_forward_pre_hook(lambda _m, _a, entry=entry: self.stack.append(entry)))
            handles.append(module.register_forward_hook(pop, always_call=True))

    def __torch_function__(
        self, func: Callable[..., Any], types: object, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in OTHER_ACTIVATION_FUNCTIONS and self.stack and not any(entry[2] for entry in self.stack):
            self.other.append(f"{self.stack[-1][0]}/{OTHER_ACTIVATION_FUNCTIONS[func]}")
        if func not in RECTIFIER_FUNCTIONS or not self.stack or self.stack[-1][1]:
            return func(*args, **kwargs)
        self.seen = True
        name = functional_site_name(self.stack[-1][0], func)
        if not self.editing or not (func in IN_PLACE_FUNCTIONS or kwargs.get("inplace", False)):
            return self.record(name, func(*args, **kwargs))
        target = args[0] if args else kwargs["input"]
        return target.copy_(self.record(name, RECTIFIER_FUNCTIONS[func](target)))


@contextlib.contextmanager
def hooked(
    model: nn.Module,
    edit: Edit | None = None,
    *,
    keep_outputs: bool = True,
    on_end: Callable[[Trace], None] | None = None,
    before: InputEdit | None = None,
) -> Iterator[Trace]:
    """Hook every rectifier call of ``model`` (modules and functional calls) for the duration of the block.

    ``edit(site_index, output)`` may return a replacement for the rectifier output (a mask product, a
    gate, a scaled copy); the returned tensor is what the rest of the network sees and what is
    recorded in ``trace.outputs``. The site counter restarts at every forward call of ``model``, and
    ``on_end(trace)`` runs after each one. Rectifier calls outside ``model``'s forward pass are not sites.

    ``before(site_index, input)`` may instead edit the input of an in-place ``nn.ReLU``/``nn.ReLU6``
    module in place, just before the module overwrites it (returning True; ``edit`` is then not called
    for that call): only where that changes nothing any other hook sees, that is where no hook is
    registered after this block's pre-hook and none before its forward hook (else ``edit`` runs).
    """
    modules = rectifier_modules(model)
    probed = makes_functional_calls(model)
    trace = Trace()
    calls_per_name: Counter[str] = Counter()

    edited_before: set[int] = set()  # this forward pass's sites whose input ``before`` edited

    def record(name: str, output: torch.Tensor) -> torch.Tensor:
        index = len(trace.calls)
        trace.calls.append((name, calls_per_name[name]))
        calls_per_name[name] += 1
        new = edit(index, output) if edit is not None and index not in edited_before else output
        if keep_outputs:
            trace.outputs.append(new)
        return new

    functional = None if probed is False else _FunctionalSites(model, record, edit is not None)

    def reset(_module: nn.Module, _args: object) -> None:
        trace._reset()
        calls_per_name.clear()
        edited_before.clear()

    def input_editor(module: nn.Module, forward_hook: int) -> RemovableHandle:
        assert before is not None
        own: list[int] = []

        def edit_input(_module: nn.Module, args: tuple[Any, ...]) -> None:
            alone = (
                not _global_forward_hooks
                and next(reversed(module._forward_pre_hooks)) == own[0]
                and next(iter(module._forward_hooks)) == forward_hook
            )
            index = len(trace.calls)
            if alone and args and isinstance(args[0], torch.Tensor) and before(index, args[0]):
                edited_before.add(index)

        handle = module.register_forward_pre_hook(edit_input)
        own.append(handle.id)
        return handle

    def make_hook(name: str) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor | None]:
        def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor | None:
            new = record(name, output)
            return new if edit is not None else None

        return hook

    def finish(_module: nn.Module, _args: object, _output: object) -> None:
        nonlocal probed
        assert functional is not None
        if probed is None:
            probed = functional.seen
            _PROBED[model] = (_fingerprint(model), probed, tuple(dict.fromkeys(functional.other)))
        if not trace.calls and not modules:
            raise _no_rectifier(model)

    handles = [model.register_forward_pre_hook(reset)]
    try:
        if functional is not None:
            handles.append(model.register_forward_hook(finish))
        if on_end is not None:
            handles.append(model.register_forward_hook(lambda _m, _a, _o: on_end(trace)))
        forward_hooks = [module.register_forward_hook(make_hook(name)) for name, module in modules]
        handles += forward_hooks
        if functional is not None:
            functional.add_hooks(handles)
        if before is not None:  # last, so that each input editor is its module's last pre-hook
            for (_, module), forward_hook in zip(modules, forward_hooks):
                if type(module) in RECTIFIER_TYPES and module.inplace:
                    handles.append(input_editor(module, forward_hook.id))
        with functional if functional is not None else contextlib.nullcontext():
            yield trace
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore every submodule's mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        if any(training for _, training in modes):  # eval() walks every module: only when one trains
            model.eval()
        yield model
    finally:
        for m, training in modes:
            if m.training != training:
                m.training = training


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def check_input(x: object, name: str = "x") -> torch.Tensor:
    """Validate an image batch: a floating tensor of shape (B, C, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32/float64/...), got dtype {x.dtype}")
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B, C, H, W) with B >= 1, got {tuple(x.shape)}")
    # a NaN or an infinity makes the sum NaN or infinite; finite values whose sum overflows are told apart
    # by the element-wise test (the sum alone reads x once and allocates nothing)
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def record_activations(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[str]]:
    """One forward pass without gradients: ``(logits, per-site activations, site names)``.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> logits, activations, sites = pw.record_activations(model, x)
    >>> logits.shape, len(activations) == len(sites) == 35, sites[0]
    (torch.Size([1, 1000]), True, 'features.0.2')
    """
    x = as_model_input(x, model)
    with evaluating(model), torch.no_grad(), hooked(model) as trace:
        # a copy: a model may start with an in-place rectifier on its input
        logits = model(x.clone())
        outputs = [o.detach() for o in trace.outputs]
        names = trace.sites
    return logits, outputs, names


def as_index_tensor(value: object, name: str) -> torch.Tensor:
    """An int or a sequence of ints as a flat long tensor; TypeError naming ``name`` otherwise."""
    message = f"{name} must be an int or a sequence of ints, got {value!r}"
    if isinstance(value, (str, bytes)):
        raise TypeError(message)
    try:
        t = torch.as_tensor(value).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(message) from None
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(message)
    return t.long()


def resolve_target(target: int | Sequence[int] | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """The explained class per image: the prediction when ``target`` is None, else validated (B,) long."""
    batch, classes = check_logits(logits).shape
    if target is None:
        return logits.detach().argmax(1)
    t = as_index_tensor(target, "target").to(logits.device)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"target must be one class index or one per image ({batch}), got {t.numel()}")
    if (t < 0).any() or (t >= classes).any():
        raise ValueError(f"target must be a class index in [0, {classes}), got {target!r}")
    return t.contiguous()


def activations_and_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    edit: Edit | None = None,
    before: InputEdit | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[str], torch.Tensor]:
    """Forward and backward of the target logits.

    Returns ``(logits, activations, d logit / d activation, site names, target)``; ``target=None``
    explains the prediction of this (possibly edited) forward pass (``edit`` and ``before`` as for
    :func:`hooked`). Images are independent in eval mode, so one backward of the summed target logits
    gives every image its own gradient. Parameter ``.grad`` fields are left untouched.
    """
    with evaluating(model), hooked(model, edit, before=before) as trace:
        inp = as_model_input(x, model).detach().requires_grad_(True)
        logits = model(inp.clone())  # never an in-place op on the leaf or the caller's tensor
        tgt = resolve_target(target, logits)
        picked = logits.gather(1, tgt.view(-1, 1)).sum()
        grads = torch.autograd.grad(picked, trace.outputs, allow_unused=True)
        acts = [o.detach() for o in trace.outputs]
        names = trace.sites
    grads_out = [torch.zeros_like(a) if g is None else g.detach() for a, g in zip(acts, grads)]
    return logits.detach(), acts, grads_out, names, tgt


def as_model_input(x: object, model: nn.Module, name: str = "x") -> torch.Tensor:
    """``x`` validated by :func:`check_input` and moved to the model's device and floating dtype.

    A float32 image batch given to a float64 (or half) model would otherwise fail deep inside the
    first layer with a dtype mismatch.
    """
    x = check_input(x, name)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), x.dtype)
    return x.to(device=model_device(model), dtype=dtype)


def skipped_activations(model: nn.Module, x: torch.Tensor | None = None) -> list[str]:
    """The activations of ``model`` that are not rectifiers and so are no pathway site, as names.

    Modules (``nn.GELU``, ``nn.SiLU``, ``nn.LeakyReLU``, ``nn.Hardswish``, ``nn.Sigmoid``, ...) by
    qualified name and type (``blocks.0.act (GELU)``); functional calls (``F.gelu``, ``torch.sigmoid``,
    ...) made outside those modules as ``module/function``, seen by the first forward pass of a model
    that is not built only from ``torch.nn`` layers under :func:`hooked` (the pass that looks for
    functional rectifiers; with ``x`` given and no such pass yet, one of ``x[:1]`` is run).
    """
    found = [
        f"{name} ({type(m).__name__})"
        for name, m in model.named_modules()
        if isinstance(m, OTHER_ACTIVATION_TYPES) and not isinstance(m, RECTIFIER_TYPES)
    ]
    if makes_functional_calls(model) is None and x is not None:
        record_activations(model, x[:1])
    probed = _PROBED.get(model)
    if probed is not None and probed[0] == _fingerprint(model):
        found += list(probed[2])
    return found


def check_logits(output: object, name: str = "model") -> torch.Tensor:
    """``output`` if it is a (B, classes) tensor of logits; else a TypeError/ValueError that says how to wrap the model."""
    how = (
        "wrap the model so that it returns the logits, e.g. pathlib_pw.models.select_output(model, 0) "
        "for a tuple whose first entry is the logits or select_output(model, 'out') for a dict"
    )
    if isinstance(output, torch.Tensor):
        if output.dim() == 2:
            return output
        raise ValueError(f"{name} must return logits of shape (B, classes), got a tensor of shape {tuple(output.shape)}: {how}")
    if isinstance(output, (tuple, list)):
        kinds = ", ".join(type(o).__name__ if not isinstance(o, torch.Tensor) else f"Tensor{tuple(o.shape)}" for o in output)
        raise TypeError(f"{name} must return logits of shape (B, classes), got a {type(output).__name__} ({kinds}): {how}")
    if isinstance(output, dict):
        raise TypeError(f"{name} must return logits of shape (B, classes), got a dict with keys {sorted(output)}: {how}")
    raise TypeError(f"{name} must return logits of shape (B, classes), got {type(output).__name__}: {how}")
