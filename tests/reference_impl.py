"""Slow, literal, batch-1 reference implementations of the pathway criteria (book/methods.md: neurons, paths and sparsity; pathway criteria).

Written from the specification only: nothing from ``pathlib_pw`` is imported. Every function takes
ONE image ``x1`` of shape (1, C, H, W), hooks the rectifier modules itself (one site per call, in
forward order; a test net with functional rectifiers runs its hand-written forward instead), loops
in plain Python and thresholds with ``numpy.percentile``. Masks are returned as lists of boolean
tensors of the site shape (no batch dimension).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

RECTIFIERS = (nn.ReLU, nn.ReLU6)

# edit(site index, module name, rectifier output) -> the tensor the rest of the network sees
Edit = Callable[[int, str, torch.Tensor], torch.Tensor]


def rectifier_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, RECTIFIERS)]


def forward_sites(model: nn.Module, x1: torch.Tensor, edit: Edit | None = None):
    """One forward pass of one image. Returns (logits (1, K), site tensors as seen downstream, site names).

    Every site tensor is a fresh non-leaf tensor (a copy or the edit's result), so gradients can be
    taken with respect to it. A test net with functional rectifiers (``tests.nets.MixedNet``) runs its
    hand-written ``literal_forward`` instead of hooks.
    """
    assert x1.shape[0] == 1, "reference implementations are batch-1"
    outputs: list[torch.Tensor] = []
    calls: list[str] = []

    def site(name: str, out: torch.Tensor) -> torch.Tensor:
        k = len(outputs)
        calls.append(name)
        new = out * 1.0 if edit is None else edit(k, name, out)
        outputs.append(new)
        return new

    literal = getattr(model, "literal_forward", None)
    handles = [] if literal is not None else [
        m.register_forward_hook(lambda _m, _inp, out, n=n: site(n, out)) for n, m in rectifier_modules(model)
    ]
    was_training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        leaf = x1.detach().clone().requires_grad_(True)
        # a non-leaf copy: an in-place first rectifier may overwrite it
        logits = model(leaf * 1.0) if literal is None else literal(leaf * 1.0, site)
    finally:
        for h in handles:
            h.remove()
        for m, t in was_training:
            m.training = t
    counts = Counter(calls)
    seen: Counter[str] = Counter()
    names = []
    for c in calls:
        names.append(c if counts[c] == 1 else f"{c}#{seen[c]}")
        seen[c] += 1
    return logits, outputs, names


def site_names(model: nn.Module, x1: torch.Tensor) -> list[str]:
    return forward_sites(model, x1)[2]


def predicted(model: nn.Module, x1: torch.Tensor) -> int:
    logits, _, _ = forward_sites(model, x1)
    return int(logits[0].argmax())


def percentile_masks(scores: Sequence[torch.Tensor], p: float) -> tuple[list[torch.Tensor], float]:
    """book/methods.md: neurons, paths and sparsity: pool all sites' scores, thr = numpy p-th percentile, remove score <= thr."""
    arrays = [s.detach().double().cpu().numpy() for s in scores]
    flat = np.concatenate([a.ravel() for a in arrays])
    thr = float(np.percentile(flat, p))
    return [torch.from_numpy(a > thr) for a in arrays], thr


def tie_broken_masks(scores: Sequence[torch.Tensor], p: float, seed: int, whole_channels: bool = False) -> list[torch.Tensor]:
    """The percentile rule with ties in a seeded random order, literally: sort all neurons by (score,
    tie rank, position) and remove the first floor(p / 100 x (N - 1)) + 1. Tie ranks are
    ``torch.randperm`` of the neurons (of the channels, each neuron taking its channel's rank, when
    ``whole_channels``; a channel cut at the count is then removed whole) from a generator seeded with
    splitmix64 of ``seed`` in the tie stream 0x74696573."""
    arrays = [s.detach().double().cpu() for s in scores]
    n = sum(a.numel() for a in arrays)
    z = (seed + 0x74696573 * 0x9E3779B97F4A7C15) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    generator = torch.Generator().manual_seed(z ^ (z >> 31))
    if whole_channels:
        ranks = torch.randperm(sum(a.shape[0] for a in arrays), generator=generator).tolist()
        keys, channel_of, first = [], [], 0
        for a in arrays:
            per = a[0].numel()
            for c in range(a.shape[0]):
                keys += [ranks[first + c]] * per
                channel_of += [(first + c)] * per
            first += a.shape[0]
    else:
        keys = torch.randperm(n, generator=generator).tolist()
    flat = torch.cat([a.flatten() for a in arrays]).tolist()
    order = sorted(range(n), key=lambda i: (flat[i], keys[i], i))
    removed = set(order[: int(np.floor(p / 100 * (n - 1))) + 1])
    if whole_channels:
        cut_channels = {channel_of[i] for i in removed}
        removed = {i for i in range(n) if channel_of[i] in cut_channels}
    kept = torch.tensor([i not in removed for i in range(n)])
    out, start = [], 0
    for a in arrays:
        out.append(kept[start : start + a.numel()].view(a.shape))
        start += a.numel()
    return out


def _grad(logit: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(logit, list(tensors), allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


# ----------------------------------------------------------------------------------------- NeuronMCT


def mct_scores(model: nn.Module, x1: torch.Tensor, target: int | None = None, masks=None) -> tuple[list[torch.Tensor], int]:
    """|a * d logit_target / d a| per site (site shape). ``masks`` (optional) multiply the rectifier
    outputs; a is then the masked output and g the gradient w.r.t. it."""
    edit = None
    if masks is not None:
        def edit(k, _name, out):
            return out * masks[k].to(out.dtype)
    logits, outs, _ = forward_sites(model, x1, edit)
    t = int(logits[0].argmax()) if target is None else int(target)
    grads = _grad(logits[0, t], outs)
    return [(o * g).abs().detach()[0] for o, g in zip(outs, grads)], t


def mct_masks(model, x1, p, target=None):
    scores, _ = mct_scores(model, x1, target)
    return percentile_masks(scores, p)


# ------------------------------------------------------------------------------------- NeuronIntGrad


def intended_alphas(steps: int = 10) -> list[float]:
    return [i / steps for i in range(steps + 1)]


def accumulated_alphas(steps: int = 10) -> list[float]:
    """The authors' loop: ``alpha += i / steps`` before each of the steps + 1 evaluations."""
    out, alpha = [], 0.0
    for i in range(steps + 1):
        alpha += i / steps
        out.append(alpha)
    return out


def intgrad_scores(model, x1, target=None, alphas: Sequence[float] | None = None) -> tuple[list[torch.Tensor], int]:
    """For each site l separately: scale its activation by alpha (full network recomputed), read
    d logit / d(scaled activation), average over the alphas, times the unscaled activation, abs."""
    alphas = intended_alphas() if alphas is None else list(alphas)
    logits, acts, _ = forward_sites(model, x1)
    t = int(logits[0].argmax()) if target is None else int(target)
    scores = []
    for l in range(len(acts)):
        total = torch.zeros_like(acts[l])
        for a in alphas:
            def edit(k, _name, out, l=l, a=a):
                return out * a if k == l else out * 1.0
            lg, outs, _ = forward_sites(model, x1, edit)
            (g,) = _grad(lg[0, t], [outs[l]])
            total = total + g
        scores.append((acts[l].detach() * total / len(alphas)).abs()[0])
    return scores, t


def intgrad_masks(model, x1, p, target=None, alphas=None):
    scores, _ = intgrad_scores(model, x1, target, alphas)
    return percentile_masks(scores, p)


def intgrad_original_scores(model, x1, target=None, steps: int = 10) -> tuple[list[torch.Tensor], int]:
    """The authors' code (book/methods.md: pathway criteria): loop k over rectifier MODULES (registration order); a
    hook on module k scales every call of it by the accumulated alpha; the gradient and activation
    are read at CALL site k. Returns one score tensor per module (for the first n_modules sites).
    For a net with functional rectifiers a "module" is a site name without ``#k``, in call order."""
    alphas = accumulated_alphas(steps)
    logits, acts, names = forward_sites(model, x1)
    t = int(logits[0].argmax()) if target is None else int(target)
    if hasattr(model, "literal_forward"):
        modules = list(dict.fromkeys(n.split("#")[0] for n in names))
    else:
        modules = [n for n, _ in rectifier_modules(model)]
    scores = []
    for k, module_name in enumerate(modules):
        total = torch.zeros_like(acts[k])
        for a in alphas:
            def edit(_i, name, out, module_name=module_name, a=a):
                return out * a if name == module_name else out * 1.0
            lg, outs, _ = forward_sites(model, x1, edit)
            (g,) = _grad(lg[0, t], [outs[k]])
            total = total + g
        scores.append((acts[k].detach() * total / len(alphas)).abs()[0])
    return scores, t


def intgrad_original_masks(model, x1, p, target=None, steps: int = 10):
    """Only the first n_modules call sites are thresholded; the other sites are kept entirely."""
    scores, _ = intgrad_original_scores(model, x1, target, steps)
    masks, thr = percentile_masks(scores, p)
    _, acts, _ = forward_sites(model, x1)
    masks += [torch.ones(a.shape[1:], dtype=torch.bool) for a in acts[len(scores):]]
    return masks, thr


# ------------------------------------------------------------------------------------------ Greedy


def greedy_original_history(model, x1, rounds: int, step: float = 1.0, target=None) -> list[list[torch.Tensor]]:
    """The authors' greedy loop, literally; returns the masks after every round."""
    _, acts, _ = forward_sites(model, x1)
    shapes = [a.shape[1:] for a in acts]
    sizes = [int(np.prod(s)) for s in shapes]
    scores, t = mct_scores(model, x1, target)
    history = []
    for i in range(rounds):
        flat = np.concatenate([s.double().cpu().numpy().ravel() for s in scores])
        replaced = flat.copy()
        replaced[flat <= 0] = flat.max()
        thr = np.percentile(replaced, i * step)
        mask = np.ones_like(flat)
        mask[replaced <= thr] = 0
        mask[flat <= 0] = 1
        masks, start = [], 0
        for shape, size in zip(shapes, sizes):
            masks.append(torch.from_numpy(mask[start:start + size].reshape(tuple(shape)) > 0.5))
            start += size
        history.append(masks)
        scores, _ = mct_scores(model, x1, t, masks)  # forward and backward through the masked net
    return history


# -------------------------------------------------------------------------------------------- DGR


def dgr_reference(
    model: nn.Module,
    x1: torch.Tensor,
    p: float,
    init: str = "1",
    lam: float = 0.01,
    lr: float = 0.01,
    momentum: float = 0.9,
    iterations: int = 1000,
    clamp_max: float = 100.0,
    gates: str = "neuron",
    max_retries: int = 100,
    seed: int = 0,
    ties: str = "random",
) -> dict:
    """DGR for one image, literally (book/methods.md: pathway criteria). Where no iterate keeps the prediction the
    lowest-loss iterate is used (the authors' code crashes there) and ``kept_prediction`` is False.
    ``ties="all"``: the paper's ``gate <= percentile`` rule; ``"random"``: :func:`tie_broken_masks`."""
    with torch.no_grad():
        logits, acts, _ = forward_sites(model, x1)
    p_orig = logits.softmax(1).detach()
    top1 = int(logits[0].argmax())
    dtype = x1.dtype
    shapes = [tuple(a.shape[1:]) if gates == "neuron" else (a.shape[1],) + (1,) * (a.dim() - 2) for a in acts]
    gen = torch.Generator().manual_seed(int(seed))

    def run(lam_now: float):
        if init == "1":
            g = [torch.ones(s, dtype=dtype) for s in shapes]
        else:
            g = [torch.rand(s, generator=gen, dtype=dtype) for s in shapes]
        g = [t.requires_grad_(True) for t in g]
        opt = torch.optim.SGD(g, lr=lr, momentum=momentum)
        best_kept, best_kept_loss = None, math.inf
        best_any, best_any_loss = [t.detach().clone() for t in g], math.inf
        for _ in range(iterations):
            def edit(k, _name, out):
                return out * g[k]
            out, _, _ = forward_sites(model, x1, edit)
            ce = -(p_orig * torch.log(out.softmax(1) + 1e-20)).sum()
            l1 = sum(t.abs().sum() for t in g)
            loss = ce + lam_now * l1
            value = float(loss.detach())
            if int(out[0].argmax()) == top1 and value < best_kept_loss:
                best_kept, best_kept_loss = [t.detach().clone() for t in g], value
            if value < best_any_loss:
                best_any, best_any_loss = [t.detach().clone() for t in g], value
            grads = torch.autograd.grad(loss, g)
            for t, gr in zip(g, grads):
                t.grad = gr
            opt.step()
            with torch.no_grad():
                for t in g:
                    t.clamp_(0.0, clamp_max)
        if best_kept is not None:
            return best_kept, best_kept_loss, True
        return best_any, best_any_loss, False

    lam_now, retries = lam, 0
    best, loss, kept = run(lam_now)
    while init == "r" and not kept and retries < max_retries:
        lam_now /= 10
        retries += 1
        best, loss, kept = run(lam_now)
    scores = [gt.expand(a.shape[1:]) for gt, a in zip(best, acts)]
    if ties == "all":
        masks, thr = percentile_masks(scores, p)
    else:
        masks, thr = tie_broken_masks(scores, p, seed, whole_channels=gates == "channel"), None
    return {"masks": masks, "threshold": thr, "gates": best, "loss": loss, "kept": kept,
            "final_lambda": lam_now, "retries": retries}


# --------------------------------------------------------------------------------- Active subnet


def base_sparsity(model, x1) -> float:
    with torch.no_grad():
        _, acts, _ = forward_sites(model, x1)
    dead = sum(int((a <= 0).sum()) for a in acts)
    total = sum(a[0].numel() for a in acts)
    return dead / total


def active_subnet_masks(model, x1, target=None):
    p = int(100 * base_sparsity(model, x1)) + 1
    masks, thr = mct_masks(model, x1, p, target)
    return masks, thr, p


# ------------------------------------------------------------------------------ test helpers


def batch_masks(path, b: int) -> list[torch.Tensor]:
    """Image ``b``'s masks from a Pathway, site shape, on the CPU."""
    return [m[b].cpu() for m in path.masks]


def assert_masks_equal(got: Sequence[torch.Tensor], want: Sequence[torch.Tensor], what: str = "") -> None:
    assert len(got) == len(want), f"{what}: {len(got)} sites, expected {len(want)}"
    for s, (g, w) in enumerate(zip(got, want)):
        assert tuple(g.shape) == tuple(w.shape), f"{what}: site {s} shape {tuple(g.shape)} != {tuple(w.shape)}"
        diff = int((g.bool() != w.bool()).sum())
        assert diff == 0, f"{what}: site {s}: {diff} of {g.numel()} mask entries differ from the reference"


def assert_masks_match_scores(
    got: Sequence[torch.Tensor], scores: Sequence[torch.Tensor], thr: float, rtol: float = 1e-4, what: str = ""
) -> None:
    """For float32 models: the mask must be ``score > thr`` at every neuron whose reference score is
    not within ``rtol * |thr|`` of the threshold (exact ties, e.g. zeros, are never ambiguous)."""
    band = rtol * abs(thr)
    ambiguous = 0
    for s, (g, sc) in enumerate(zip(got, scores)):
        sc = sc.detach().double().cpu()
        near = (sc - thr).abs() <= band
        if band == 0:
            near = torch.zeros_like(near)
        want = sc > thr
        bad = int(((g.bool() != want) & ~near).sum())
        assert bad == 0, f"{what}: site {s}: {bad} mask entries disagree with reference score > {thr}"
        ambiguous += int(near.sum())
    total = sum(sc.numel() for sc in scores)
    assert ambiguous <= max(3, total // 1000), f"{what}: {ambiguous} scores within {rtol} of the threshold"


# ------------------------------------------------------------------------------ pixel removal (LeRF/MoRF, ROAD)


def removal_count_literal(fraction: float, pixels: int) -> int:
    """Half up on the decimal the fraction is written as: 0.005 of 100 pixels is 1."""
    from decimal import ROUND_HALF_UP, Decimal

    return int((Decimal(str(fraction)) * pixels).to_integral_value(rounding=ROUND_HALF_UP))


def tie_keys_literal(pixels: int, ties: str = "first", tie_seed: int = 0) -> list[int]:
    """The pixel order among equal scores: row-major, reversed, or the seeded permutation (torch.randperm)."""
    if ties == "first":
        return list(range(pixels))
    if ties == "last":
        return list(range(pixels - 1, -1, -1))
    return torch.randperm(pixels, generator=torch.Generator().manual_seed(tie_seed)).tolist()


def removal_order_literal(map1: torch.Tensor, order: str, ranking: str = "magnitude", keys: Sequence[int] | None = None) -> list[int]:
    """Row-major pixel indices of one (H, W) map in removal order; among equal scores, the pixel that
    comes first in ``keys`` (default: the smaller index) goes first."""
    height, width = map1.shape
    position = {pixel: i for i, pixel in enumerate(keys if keys is not None else range(height * width))}
    cells = []
    for h in range(height):
        for w in range(width):
            value = float(map1[h, w])
            cells.append((abs(value) if ranking == "magnitude" else value, h * width + w))
    if order == "most":
        ranked = sorted(cells, key=lambda cell: (-cell[0], position[cell[1]]))
    else:
        ranked = sorted(cells, key=lambda cell: (cell[0], position[cell[1]]))
    return [index for _, index in ranked]


def remove_pixels_literal(x1: torch.Tensor, map1: torch.Tensor, fraction: float, order: str, fill: Sequence[float],
                          ranking: str = "magnitude", keys: Sequence[int] | None = None) -> torch.Tensor:
    """One (C, H, W) image with the first k pixels of the removal order set to ``fill[c]``, pixel by pixel."""
    out = x1.clone()
    channels, height, width = x1.shape
    k = removal_count_literal(fraction, height * width)
    for index in removal_order_literal(map1, order, ranking, keys)[:k]:
        h, w = divmod(index, width)
        for c in range(channels):
            out[c, h, w] = fill[c]
    return out


def road_imputation_literal(x1: torch.Tensor, removed1: torch.Tensor) -> torch.Tensor:
    """ROAD's linear imputation without noise of one (C, H, W) image: a dense system built pixel by pixel.

    Every removed pixel equals the weighted mean (1/6 direct, 1/12 diagonal neighbours, renormalized over
    the neighbours inside the image) of its neighbours' final values.
    """
    channels, height, width = x1.shape
    unknowns = [(h, w) for h in range(height) for w in range(width) if bool(removed1[h, w])]
    number = {p: i for i, p in enumerate(unknowns)}
    a = np.zeros((len(unknowns), len(unknowns)))
    b = np.zeros((len(unknowns), channels))
    for i, (h, w) in enumerate(unknowns):
        for dh in (-1, 0, 1):
            for dw in (-1, 0, 1):
                hh, ww = h + dh, w + dw
                if (dh, dw) == (0, 0) or not (0 <= hh < height and 0 <= ww < width):
                    continue
                weight = 1 / 6 if dh == 0 or dw == 0 else 1 / 12
                a[i, i] += weight
                if (hh, ww) in number:
                    a[i, number[(hh, ww)]] -= weight
                else:
                    b[i] += weight * x1[:, hh, ww].double().numpy()
    solution = np.linalg.solve(a, b)
    out = x1.clone()
    for i, (h, w) in enumerate(unknowns):
        for c in range(channels):
            out[c, h, w] = float(solution[i, c])
    return out


def removal_curve_literal(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, fractions: Sequence[float], order: str,
                          fill: Sequence[float], target=None, keys: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """|p(x') - p(x)| / p(x) per image and fraction: one forward pass per image and per removed copy,
    averaged over the tie orders ``keys`` (default: one, the smaller index first)."""
    orders = keys if keys is not None else [None]
    rows = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            p = model(x[i : i + 1].clone()).softmax(1)[0]
            t = int(p.argmax()) if target is None else int(target[i])
            row = []
            for f in fractions:
                total = 0.0
                for tie_order in orders:
                    changed = remove_pixels_literal(x[i], maps[i], f, order, fill, keys=tie_order)
                    q = model(changed.unsqueeze(0)).softmax(1)[0]
                    total += abs(float(q[t]) - float(p[t])) / float(p[t])
                row.append(total / len(orders))
            rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# local linearity (pathlib_pw.linearity): rectifier states from outputs, a searched radius,
# flip shares and the masked logit's gradient, one image and one direction at a time
# ----------------------------------------------------------------------------------------------


def _run_rectifiers(model: nn.Module, points: torch.Tensor, site: Callable[[bool, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Forward ``points``; every rectifier call's output goes through ``site(is ReLU6, output)``, whose
    result is what the network sees. A net with ``literal_forward`` (functional rectifiers) runs that."""
    literal = getattr(model, "literal_forward", None)
    if literal is not None:
        return literal(points, lambda name, out: site(name.endswith("relu6"), out))
    handles = [
        m.register_forward_hook(lambda module, _inp, out: site(isinstance(module, nn.ReLU6), out))
        for _, m in rectifier_modules(model)
    ]
    try:
        return model(points * 1.0)
    finally:
        for h in handles:
            h.remove()


def rectifier_states(model: nn.Module, points: torch.Tensor, masks=None, top: float = 6.0) -> list[torch.Tensor]:
    """Per rectifier call, the state of each neuron at each point, shape (N, *site shape): 0 off (output 0),
    2 saturated (a ReLU6 output >= ``top``; 6 is the real boundary), 1 linear otherwise.

    ``masks`` (one bool tensor per site, site shape, one image) multiply the outputs.
    """
    states: list[torch.Tensor] = []

    def site(relu6: bool, out: torch.Tensor) -> torch.Tensor:
        s = torch.ones(out.shape, dtype=torch.int64)
        s[out == 0] = 0
        if relu6:
            s[out >= top] = 2
        k = len(states)
        states.append(s)
        return out if masks is None else out * masks[k]

    with torch.no_grad():
        _run_rectifiers(model, points, site)
    return states


def kept_state_changed(states0: list[torch.Tensor], states: list[torch.Tensor], masks=None) -> torch.Tensor:
    """Per point: whether a kept neuron's state differs from ``states0`` (states at one point)."""
    changed = torch.zeros(states[0].shape[0], dtype=torch.bool)
    for k, (s0, s) in enumerate(zip(states0, states)):
        diff = s != s0
        if masks is not None:
            diff = diff & masks[k]
        changed |= diff.flatten(1).any(1)
    return changed


def radius_by_search(model: nn.Module, x1: torch.Tensor, direction: torch.Tensor, masks=None, t_max: float = 3.0,
                     steps: int = 6000, tol: float = 1e-9, top: float = 6.0) -> float:
    """The first t at which a kept neuron's state changes along x1 + t d / |d|: the states on a grid of
    ``steps`` points in (0, t_max], then bisection to ``tol`` between the last unchanged and first changed
    grid point. inf when no grid point has a changed state."""
    d = direction / direction.norm()
    s0 = rectifier_states(model, x1, masks, top)

    def changed(ts: torch.Tensor) -> torch.Tensor:
        return kept_state_changed(s0, rectifier_states(model, x1 + ts.view(-1, 1, 1, 1) * d, masks, top), masks)

    ts = torch.linspace(0.0, t_max, steps + 1, dtype=x1.dtype)
    hit = changed(ts[1:])
    if not hit.any():
        return math.inf
    i = int(hit.nonzero()[0]) + 1
    lo, hi = float(ts[i - 1]), float(ts[i])
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if changed(torch.tensor([mid], dtype=x1.dtype))[0]:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def flip_share_literal(model: nn.Module, x1: torch.Tensor, direction: torch.Tensor, radius: float, masks=None) -> float:
    """Flipped kept neurons / kept neurons between x1 and x1 + radius d / |d|, counted site by site; 0 if none kept."""
    d = direction / direction.norm()
    before = rectifier_states(model, x1, masks)
    after = rectifier_states(model, x1 + radius * d, masks)
    flipped = kept = 0
    for k, (s0, s1) in enumerate(zip(before, after)):
        keep = torch.ones_like(s0[0], dtype=torch.bool) if masks is None else masks[k]
        flipped += int(((s0[0] != s1[0]) & keep).sum())
        kept += int(keep.sum())
    return flipped / kept if kept else 0.0


def masked_logit_and_grad(model: nn.Module, x1: torch.Tensor, target: int, masks=None) -> tuple[float, torch.Tensor]:
    """The target logit of the masked network at one image and its input gradient, by torch.autograd.grad."""
    leaf = x1.detach().clone().requires_grad_(True)
    calls: list[int] = []

    def site(_relu6: bool, out: torch.Tensor) -> torch.Tensor:
        k = len(calls)
        calls.append(k)
        return out if masks is None else out * masks[k]

    logits = _run_rectifiers(model, leaf * 1.0, site)
    (grad,) = torch.autograd.grad(logits[0, target], leaf)
    return float(logits[0, target].detach()), grad[0]
