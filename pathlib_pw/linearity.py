"""Local linearity of a pathway: the exact linear region along a ray, state flips, first-order error.

Khakzar et al., CVPR 2021, argue that the network restricted to a critical pathway behaves linearly
around the input: with the pathway's masks held fixed while the input moves, the masked network is
affine in the input until a kept rectifier neuron changes state. A neuron (one element of one
rectifier call) is *off* when its pre-activation z <= 0, *linear* when 0 < z (and z < 6 for ReLU6),
*saturated* when z >= 6 (ReLU6 only). Everything else in the supported networks is affine in eval
mode (convolutions, BatchNorm, average pooling, additions, linear layers); removed neurons (mask 0)
output 0 whatever their state and never matter.

MaxPool switches are not rectifier states and are not counted: in a network with max pooling the
radius bounds the rectifier pattern only, and the function may bend earlier where a pooling window
changes its maximum.

Every direction is scaled to unit L2 norm first, so radii are L2 distances from the input.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.utils.hooks import RemovableHandle

from pathlib_pw._deprecation import keyword_only_from
from pathlib_pw.attribution.maps import Target, explained_class
from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import (
    check_input,
    evaluating,
    hooked,
    makes_functional_calls,
    model_device,
    record_activations,
    rectifier_modules,
)

RELU6_TOP = 6.0
OFF, LINEAR, SATURATED = 0, 1, 2

Radii = Sequence[float] | torch.Tensor


def random_directions(shape: tuple[int, ...], n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` seeded directions of shape ``shape``, each of L2 norm 1: a tensor ``(n, *shape)``.

    Standard-normal draws, normalized, so uniform on the unit sphere. A private generator leaves the
    global RNG untouched.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1 (the number of directions), got {n!r}")
    shape = tuple(shape)
    if not shape or math.prod(shape) == 0:
        raise ValueError(f"shape must be a non-empty shape with no zero dimension, such as (3, 224, 224), got {shape}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype (torch.float32, torch.float64, ...), got {dtype}")
    g = torch.Generator().manual_seed(seed)
    d = torch.randn((n, *shape), generator=g, dtype=dtype)
    return d / d.flatten(1).norm(dim=1).view(-1, *([1] * len(shape)))


@contextlib.contextmanager
def in_dtype(model: nn.Module, dtype: torch.dtype) -> Iterator[nn.Module]:
    """Convert ``model``'s floating-point parameters and buffers to ``dtype`` for the block.

    Yields the model (as Zennit's ``composite.context(model)`` does). On exit, also when the body
    raises, every parameter, gradient and buffer is converted back to its own original dtype; a
    round trip through a wider dtype (float32 -> float64 -> float32) gives back the same values.
    Parameters keep their identity; shared buffers stay shared. Integer buffers (BatchNorm's
    ``num_batches_tracked``) are left alone.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype (torch.float32, torch.float64, ...), got {dtype!r}")
    params = [p for p in model.parameters() if p.is_floating_point()]
    buffers = [
        (module, name)
        for module in model.modules()
        for name, buf in module._buffers.items()
        if buf is not None and buf.is_floating_point()
    ]
    param_dtypes = [p.dtype for p in params]
    buffer_dtypes = [_buffer(module, name).dtype for module, name in buffers]
    try:
        _convert(params, [dtype] * len(params), buffers, [dtype] * len(buffers))
        yield model
    finally:
        _convert(params, param_dtypes, buffers, buffer_dtypes)


def _buffer(module: nn.Module, name: str) -> torch.Tensor:
    buf = module._buffers[name]
    assert buf is not None
    return buf


def _convert(
    params: Sequence[nn.Parameter],
    param_dtypes: Sequence[torch.dtype],
    buffers: Sequence[tuple[nn.Module, str]],
    buffer_dtypes: Sequence[torch.dtype],
) -> None:
    with torch.no_grad():
        for p, dtype in zip(params, param_dtypes):
            if p.dtype != dtype:
                p.data = p.data.to(dtype)  # .data keeps the Parameter object, as Module.to does
            if p.grad is not None and p.grad.dtype != dtype:
                p.grad.data = p.grad.data.to(dtype)
        # one converted tensor per original: a buffer registered in two modules stays shared
        converted: dict[tuple[int, torch.dtype], torch.Tensor] = {}
        for (module, name), dtype in zip(buffers, buffer_dtypes):
            buf = _buffer(module, name)
            key = (id(buf), dtype)
            if key not in converted:
                converted[key] = buf.to(dtype)
            module._buffers[name] = converted[key]


def linear_region_radius(
    model: nn.Module, x: torch.Tensor, directions: torch.Tensor, path: Pathway | None = None, *, chunk_size: int = 16
) -> torch.Tensor:
    """The exact distance to the first state change of a kept rectifier neuron, per image and direction.

    For image b and unit direction d_k, the smallest t > 0 at which a neuron kept by ``path`` (every
    neuron when None) changes state along x_b + t d_k, with the masks held fixed: the radius of the
    region of a fixed activation pattern of the kept neurons along that ray (Khakzar et al., CVPR
    2021). Every kept neuron counts, also one that no longer reaches the output, so the radius bounds
    the linear region of the function from below (a path that cuts the network is constant, yet its
    radius is finite). Returns (B, K)
    in x's dtype; inf where no kept neuron ever changes state along the ray (a path that keeps no
    neuron gives inf everywhere).

    One forward pass with forward-mode AD (``torch.autograd.forward_ad``) per chunk of ``chunk_size``
    (image, direction) rows gives every pre-activation z and its derivative dz along the ray; until
    the first change the network is affine in t, so z(t) = z + t dz and each neuron's crossing of
    its boundaries (0; 6 for ReLU6) is (boundary - z) / dz where positive. A neuron sitting exactly
    on a boundary at t = 0 and moving across it (z == 0 with dz > 0; z == 6 at a ReLU6 with dz < 0)
    changes state at once: the radius is 0. A neuron at z == 0 moving down stays off and never counts.

    Pre-activations come from forward pre-hooks on the rectifier modules, each reduced to its
    per-row minimum crossing time inside the hook, before an in-place rectifier (MobileNetV2's ReLU6)
    overwrites its input. A model whose rectifiers are functional calls (``F.relu``) has no such
    hook: ValueError (use :func:`state_flip_share` on sampled radii instead). ``path`` holds one image
    (broadcast) or B; its masks are applied as :meth:`Pathway.applied` applies them.

    Examples
    --------
    >>> import torch
    >>> import pathlib_pw as pw
    >>> from pathlib_pw.linearity import in_dtype, random_directions
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> path = pw.extract_pathway(model, x, "neuron_mct", 50)
    >>> directions = random_directions(tuple(x.shape[1:]), 3)  # float64, each of L2 norm 1
    >>> with in_dtype(model, torch.float64):  # exact crossings: float64 model and input
    ...     radius = pw.linear_region_radius(model, x.double(), directions, path)
    >>> radius.shape, radius.dtype  # (images, directions)
    (torch.Size([1, 3]), torch.float64)
    >>> bool((radius > 0).all())
    True
    """
    x = _check_x(model, x)
    d = _unit_directions(directions, x)
    _check_path(path, x.shape[0])
    _check_chunk_size(chunk_size)
    modules = _no_functional_calls(model, x)
    batch, count = x.shape[0], d.shape[0]
    radius = torch.empty(batch * count, dtype=x.dtype, device=x.device)
    minima: list[torch.Tensor] = []
    kept: list[torch.Tensor] | None = None

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        z, dz = fwAD.unpack_dual(args[0])
        if dz is None:  # a pre-activation that does not depend on the input never moves
            dz = torch.zeros_like(z)
        times = _crossing_times(z, dz, RELU6_TOP if isinstance(module, nn.ReLU6) else None)
        if kept is not None:
            index = len(minima)
            if index >= len(kept) or kept[index].shape[1:] != z.shape[1:]:
                return  # not this path's model: the masking hook raises right after this module
            times = times.masked_fill(~kept[index], math.inf)
        minima.append(times.flatten(1).amin(1))

    with evaluating(model), torch.no_grad(), _pre_hooks([m for _, m in modules], record), fwAD.dual_level():
        for rows in _chunks(batch * count, chunk_size, x.device):
            images = rows // count
            row_path = _rows_of(path, images)
            kept = None if row_path is None else [m.to(x.device) for m in row_path.masks]
            minima.clear()
            with _applied(row_path, model):
                model(fwAD.make_dual(x[images], d[rows % count]))
            radius[rows] = torch.stack(minima, 1).amin(1) if minima else math.inf
    return radius.view(batch, count)


def _crossing_times(z: torch.Tensor, dz: torch.Tensor, top: float | None) -> torch.Tensor:
    """Per neuron, the first t >= 0 at which z + t dz changes the rectifier state, inf if never."""
    times = _boundary_time(z, dz, 0.0, linear_above=True)
    if top is not None:
        times = torch.minimum(times, _boundary_time(z, dz, top, linear_above=False))
    return times


def _boundary_time(z: torch.Tensor, dz: torch.Tensor, level: float, linear_above: bool) -> torch.Tensor:
    t = (level - z) / dz  # +-inf or nan where dz == 0: never a crossing, dropped below
    # on the boundary and moving into the linear side: off (z == 0) or saturated (z == 6) only at t = 0
    leaves = (z == level) & ((dz > 0) if linear_above else (dz < 0))
    return torch.where(t > 0, t, math.inf).masked_fill_(leaves, 0.0)


def state_flip_share(
    model: nn.Module,
    x: torch.Tensor,
    directions: torch.Tensor,
    radii: Radii,
    path: Pathway | None = None,
    *,
    chunk_size: int = 16,
) -> torch.Tensor:
    """Share of kept neurons whose state at x_b + r d_k differs from their state at x_b: (B, R, K).

    States come from the rectifier outputs a, with the masks held fixed: a == 0 is off, a == 6 at a
    ReLU6 site (module or ``F.relu6``) is saturated, anything else is linear. This works for
    functional rectifier sites too, where :func:`linear_region_radius` does not. The share is the
    number of flipped kept neurons over the number of kept neurons of that image; a path that keeps
    no neuron gives 0, not NaN. Khakzar et al., CVPR 2021 (local linearity of pathways).

    Examples
    --------
    >>> import torch
    >>> import pathlib_pw as pw
    >>> from pathlib_pw.linearity import in_dtype, random_directions
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> path = pw.extract_pathway(model, x, "neuron_mct", 50)
    >>> directions = random_directions(tuple(x.shape[1:]), 3)  # float64, each of L2 norm 1
    >>> with in_dtype(model, torch.float64):
    ...     flips = pw.state_flip_share(model, x.double(), directions, [1e-6, 1.0, 10.0], path)
    >>> flips.shape  # (images, radii, directions)
    torch.Size([1, 3, 3])
    >>> flips[0, 0].tolist()  # well inside the linear region, no kept neuron changes state
    [0.0, 0.0, 0.0]
    >>> bool((flips[0, 2] > 0).all())
    True
    """
    x = _check_x(model, x)
    d = _unit_directions(directions, x)
    r = _check_radii(radii, x)
    _check_path(path, x.shape[0])
    _check_chunk_size(chunk_size)
    relu6 = {name for name, m in rectifier_modules(model) if isinstance(m, nn.ReLU6)}
    batch, n_radii, count = x.shape[0], r.numel(), d.shape[0]

    def states_and_kept(points: torch.Tensor, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        row_path = _rows_of(path, images)
        with _applied(row_path, model), hooked(model, keep_outputs=True) as trace:
            model(points.clone())  # a model may start with an in-place rectifier
            states = [_states(a, _is_relu6(name, relu6)) for (name, _), a in zip(trace.calls, trace.outputs)]
        kept = None if row_path is None else [m.to(x.device).expand_as(s) for m, s in zip(row_path.masks, states)]
        return states, kept

    with evaluating(model), torch.no_grad():
        base, base_kept = states_and_kept(x, torch.arange(batch, device=x.device))
        if base_kept is None:
            kept_count = torch.full((batch,), float(sum(s[0].numel() for s in base)), dtype=torch.float64, device=x.device)
        else:
            kept_count = torch.stack([m.flatten(1).sum(1, dtype=torch.float64) for m in base_kept], 1).sum(1)
        flipped = torch.empty(batch * n_radii * count, dtype=torch.float64, device=x.device)
        for rows in _chunks(batch * n_radii * count, chunk_size, x.device):
            images = rows // (n_radii * count)
            points = x[images] + _per_row(r[(rows // count) % n_radii], x) * d[rows % count]
            states, kept = states_and_kept(points, images)
            changed = [(s != s0[images]).flatten(1) for s, s0 in zip(states, base)]
            if kept is not None:
                changed = [c & m.flatten(1) for c, m in zip(changed, kept)]
            flipped[rows] = torch.stack([c.sum(1, dtype=torch.float64) for c in changed], 1).sum(1)
    share = flipped.view(batch, n_radii, count) / kept_count.clamp(min=1).view(-1, 1, 1)
    return share.to(x.dtype)


def _is_relu6(call_name: str, relu6_modules: set[str]) -> bool:
    return call_name in relu6_modules or call_name.endswith("/relu6")


def _states(a: torch.Tensor, relu6: bool) -> torch.Tensor:
    """OFF, LINEAR or SATURATED per neuron, from the rectifier output."""
    states = torch.full(a.shape, LINEAR, dtype=torch.int8, device=a.device)
    states[a == 0] = OFF
    if relu6:
        states[a == RELU6_TOP] = SATURATED
    return states


@keyword_only_from(5, "target")
def first_order_error(
    model: nn.Module,
    x: torch.Tensor,
    directions: torch.Tensor,
    radii: Radii,
    path: Pathway | None = None,
    *,
    target: Target = None,
    chunk_size: int = 16,
) -> dict[str, torch.Tensor]:
    """How far the masked network is from its first-order expansion at x, along each ray.

    f is the target logit of the network restricted to ``path`` (the full network when None), g its
    input gradient at x; for unit directions d_k and radii r (Khakzar et al., CVPR 2021, local
    linearity of pathways):

    - ``"error"``: ``|f(x + r d) - f(x) - r g.d|``, (B, R, K);
    - ``"change"``: ``|f(x + r d) - f(x)|``, (B, R, K);
    - ``"relative"``: error / change, NaN where change == 0, (B, R, K);
    - ``"gradient_cosine"``: cos(g(x), g(x + r d)), NaN where a gradient is zero, (B, R, K);
    - ``"gradient_norm"``: ``|g(x)|``, (B,);
    - ``"logit"``: f(x), (B,).

    ``target`` defaults, as in :func:`~pathlib_pw.saliency.pathway_grad`, to the pathway's explained
    class (``path.info["target"]``, a path with one entry per image) and else to the unmasked
    network's prediction. Everything is computed in x's dtype (pass float64 with a float64 model,
    see :func:`in_dtype`), the R * K points in chunks of ``chunk_size`` rows.

    Examples
    --------
    >>> import torch
    >>> import pathlib_pw as pw
    >>> from pathlib_pw.linearity import in_dtype, random_directions
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> path = pw.extract_pathway(model, x, "neuron_mct", 50)
    >>> directions = random_directions(tuple(x.shape[1:]), 3)  # float64, each of L2 norm 1
    >>> with in_dtype(model, torch.float64):
    ...     out = pw.first_order_error(model, x.double(), directions, [0.1, 1.0, 10.0], path)
    >>> sorted(out)
    ['change', 'error', 'gradient_cosine', 'gradient_norm', 'logit', 'relative']
    >>> out["relative"].shape  # (images, radii, directions)
    torch.Size([1, 3, 3])
    """
    x = _check_x(model, x)
    d = _unit_directions(directions, x)
    r = _check_radii(radii, x)
    _check_path(path, x.shape[0])
    _check_chunk_size(chunk_size)
    batch, n_radii, count = x.shape[0], r.numel(), d.shape[0]
    if target is None and path is not None and "target" in path.info and len(path) == batch:
        target = path.info["target"]
    with evaluating(model):
        tgt = explained_class(model, x, target=target)
        logit, grad = _logit_and_gradient(model, x, tgt, path)
        total = batch * n_radii * count
        moved = torch.empty(total, dtype=x.dtype, device=x.device)
        cosine = torch.empty(total, dtype=x.dtype, device=x.device)
        slope = torch.empty(total, dtype=x.dtype, device=x.device)
        g_norm = grad.flatten(1).norm(dim=1)
        for rows in _chunks(total, chunk_size, x.device):
            images, dirs = rows // (n_radii * count), rows % count
            step = r[(rows // count) % n_radii]
            points = x[images] + _per_row(step, x) * d[dirs]
            f, g = _logit_and_gradient(model, points, tgt[images], _rows_of(path, images))
            moved[rows] = f - logit[images]
            slope[rows] = step * (grad[images] * d[dirs]).flatten(1).sum(1)
            norms = g_norm[images] * g.flatten(1).norm(dim=1)
            dot = (grad[images] * g).flatten(1).sum(1)
            cosine[rows] = torch.where(norms > 0, dot / norms, torch.full_like(dot, math.nan))
    shape = (batch, n_radii, count)
    error = (moved - slope).abs().view(shape)
    change = moved.abs().view(shape)
    return {
        "error": error,
        "change": change,
        "relative": torch.where(change > 0, error / change, torch.full_like(error, math.nan)),
        "gradient_cosine": cosine.view(shape),
        "gradient_norm": g_norm,
        "logit": logit,
    }


def _logit_and_gradient(
    model: nn.Module, points: torch.Tensor, target: torch.Tensor, path: Pathway | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The target logit per row and its input gradient; rows are independent in eval mode."""
    inp = points.detach().requires_grad_(True)
    with _applied(path, model):
        logits = model(inp.clone())  # never an in-place op on the leaf
    picked = logits.gather(1, target.view(-1, 1)).squeeze(1)
    (grad,) = torch.autograd.grad(picked.sum(), inp)
    return picked.detach(), grad


def _check_x(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = check_input(x).to(model_device(model)).detach()
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if dtypes and dtypes != {x.dtype}:
        raise ValueError(
            f"x must have the model's parameter dtype ({', '.join(sorted(map(str, dtypes)))}), got {x.dtype}: "
            "convert one of them (in_dtype(model, x.dtype) converts the model for a block)"
        )
    return x


def _unit_directions(directions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``directions`` validated against x and scaled to unit L2 norm, in x's dtype and on its device."""
    if not isinstance(directions, torch.Tensor) or not directions.is_floating_point():
        raise TypeError(f"directions must be a floating-point torch.Tensor, got {type(directions).__name__}")
    expected = tuple(x.shape[1:])
    if directions.dim() != 1 + len(expected) or tuple(directions.shape[1:]) != expected or directions.shape[0] == 0:
        raise ValueError(
            f"directions must have shape (K, {', '.join(map(str, expected))}) with K >= 1, got {tuple(directions.shape)}"
        )
    d = directions.detach().to(device=x.device, dtype=x.dtype)
    norms = d.flatten(1).norm(dim=1)
    if not torch.isfinite(norms).all() or (norms == 0).any():
        raise ValueError("directions must have a finite, non-zero L2 norm in every row; got a zero, NaN or infinite row")
    return d / _per_row(norms, d)


def _check_radii(radii: Radii, x: torch.Tensor) -> torch.Tensor:
    try:
        r = torch.as_tensor(radii, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"radii must be a non-empty sequence of finite numbers > 0, got {radii!r}") from None
    if r.numel() == 0 or not torch.isfinite(r).all() or (r <= 0).any():
        raise ValueError(f"radii must be a non-empty sequence of finite numbers > 0, got {r.tolist()}")
    return r.to(device=x.device, dtype=x.dtype)


def _check_path(path: Pathway | None, batch: int) -> None:
    if path is None:
        return
    if not isinstance(path, Pathway):
        raise TypeError(f"path must be a Pathway or None, got {type(path).__name__}")
    if len(path) not in (1, batch):
        raise ValueError(f"path must hold 1 image (broadcast) or one per image of x ({batch}), got {len(path)}")


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1 (rows per forward pass), got {chunk_size!r}")


def _no_functional_calls(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The rectifier modules; ValueError for a model that also calls functional rectifiers."""
    modules = rectifier_modules(model)
    calls = makes_functional_calls(model)
    if calls is None:  # known only after one hooked forward pass
        record_activations(model, x[:1])
        calls = makes_functional_calls(model)
    if calls:
        raise ValueError(
            f"model {type(model).__name__} calls functional rectifiers (F.relu, torch.relu, F.relu6, Tensor.relu ...): "
            "the exact radius needs rectifier modules (nn.ReLU/nn.ReLU6), whose pre-activations are hooked; "
            "use state_flip_share on sampled radii instead"
        )
    return modules


def _rows_of(path: Pathway | None, images: torch.Tensor) -> Pathway | None:
    """The pathway for rows that show ``images``: itself when it holds one image (it broadcasts)."""
    if path is None or len(path) == 1:
        return path
    return path[images.to(path.masks[0].device)]


def _applied(path: Pathway | None, model: nn.Module) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if path is None else path.applied(model)


@contextlib.contextmanager
def _pre_hooks(modules: Sequence[nn.Module], hook: Callable[[nn.Module, tuple[torch.Tensor, ...]], None]) -> Iterator[None]:
    handles: list[RemovableHandle] = []
    try:
        handles.extend(m.register_forward_pre_hook(hook) for m in modules)
        yield
    finally:
        for handle in handles:
            handle.remove()


def _chunks(total: int, size: int, device: torch.device) -> Iterator[torch.Tensor]:
    for start in range(0, total, size):
        yield torch.arange(start, min(start + size, total), device=device)


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))
