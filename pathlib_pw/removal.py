"""Pixel removal for the LeRF/MoRF, ROAD and ROAR evaluations (book/methods.md: the paper's experiments).

Khakzar et al. (CVPR 2021) evaluate a map by removing the 1..10 % least relevant pixels of each image
(LeRF; MoRF: the most relevant), filling them with the dataset mean, without retraining, and report
the mean absolute fractional change of the target class's softmax probability; ROAR removes the top
10..90 % from training and test images and retrains. ROAD (Rong et al., "A Consistent and Efficient
Evaluation Strategy for Attribution Methods", ICML 2022) fills the removed pixels by noisy linear
imputation instead, so that the fill does not reveal the removal mask.

Shared rules. Maps are (B, H, W), one per image, larger magnitude = more relevant. A pixel is removed
with all its channels. Pixels are ranked by ``|map|`` (``ranking="magnitude"``) or by the signed map
value (``ranking="signed"``); ``order="most"`` removes the highest scores first, ``"least"`` the
lowest. Amounts removed are in percent (0-100): removing ``percent`` % of the H * W pixels removes
``removal_count(percent, H * W)`` of them. (``fraction=`` / ``fractions=``, shares in [0, 1], are the
old spellings: converted x 100, with a FutureWarning.)

Ties never favour a position. A map that is exactly 0 on a quarter of the image (PathwayGrad through
a sparse path, Grad-CAM cut by its ReLU, an 8-bit map) ranks those pixels only by the tie rule, and
the old rule (smaller row-major index first) removed a band from the top of the image. ``ties``:

- ``"random"`` (default): equal scores go in the order of a seeded random permutation of the pixels
  (``tie_seed``; the same permutation for every image of a batch, so a result does not depend on the
  batch split); :func:`pixel_removal_curve` averages ``tie_seeds`` such orders;
- ``"first"``: the smaller row-major index ``h * W + w`` first, in both orders (the book's rule before
  tie handling; what a stable sort leaves);
- ``"last"``: the larger index first (ties at the bottom of the image).

:func:`tie_share` says how many removed pixels a tie rule decided. ROAD's own code breaks ties with
1e-4 random jitter and truncates the count; only its imputation is taken over here. Every model here receives inputs standardized with the dataset's per-channel mean and std, so
the dataset mean is 0.0 in every channel: the default fill.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

from pathlib_pw import decisions
from pathlib_pw._deprecation import keyword_only_from, percent_from_fraction, renamed
from pathlib_pw.sites import as_model_input, check_input, check_logits, evaluating, resolve_target
from pathlib_pw.units import warn_if_share

Order = Literal["most", "least"]
Ranking = Literal["magnitude", "signed"]
Ties = Literal["random", "first", "last"]
Fill = float | Sequence[float] | torch.Tensor | Literal["road"] | None
Seed = int | Sequence[int] | torch.Generator | None
Target = int | Sequence[int] | torch.Tensor | None

ORDERS: tuple[Order, ...] = ("most", "least")
RANKINGS: tuple[Ranking, ...] = ("magnitude", "signed")
TIES: tuple[Ties, ...] = ("random", "first", "last")
# tie orders a removal curve averages by default (each a seeded permutation; their spread is reported)
TIE_SEEDS = 5
# ROAD's weights: 1/6 per direct, 1/12 per diagonal neighbour (they sum to 1), as (row, column) offsets
ROAD_NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
)
# a product this close below a half still rounds up (binary rounding of e.g. 0.005 * 100)
_HALF_TOLERANCE = 1e-9
# How far rounding may move a removal decision between machines (pathlib_pw.decisions). A map differs
# from machine to machine where a ReLU inside the network flips: measured up to 0.7 % of its pixels, by
# up to 0.08 of the map's peak, i.e. up to about 2 x the mean |score| that sets the band's unit.
MAP_RANKING = decisions.Rounding("threshold", capacity=5e-3, band=2.0)


def _check_order(order: object) -> None:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")


def _check_ranking(ranking: object) -> None:
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {list(RANKINGS)}, got {ranking!r}")


def _check_ties(ties: object, tie_seed: object = 0) -> None:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {list(TIES)}, got {ties!r}")
    if isinstance(tie_seed, bool) or not isinstance(tie_seed, numbers.Integral) or tie_seed < 0:
        raise ValueError(f"tie_seed must be an int >= 0, got {tie_seed!r}")


def _check_tie_seeds(tie_seeds: object) -> int:
    if isinstance(tie_seeds, bool) or not isinstance(tie_seeds, numbers.Integral) or tie_seeds < 1:
        raise ValueError(f"tie_seeds must be an int >= 1 (how many random tie orders to average), got {tie_seeds!r}")
    return int(tie_seeds)


def _check_fraction(fraction: object, name: str = "fraction") -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= float(fraction) <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {fraction!r}")
    return float(fraction)


def fraction_of(percent: object, name: str = "percent", was_share: bool = True) -> float:
    """``percent`` (a number in [0, 100]) as a fraction of the pixels, ``percent / 100``; a share-looking
    value (in (0, 1)) warns through :func:`pathlib_pw.units.warn_if_share` (``was_share``: the argument
    took a share in earlier versions)."""
    if isinstance(percent, bool) or not isinstance(percent, numbers.Real) or not 0 <= float(percent) <= 100:
        raise ValueError(f"{name} must be a number in [0, 100] (percent of the pixels), got {percent!r}")
    warn_if_share(name, float(percent), was_share=was_share)
    return float(percent) / 100


def _check_maps(maps: object, x: torch.Tensor | None = None) -> torch.Tensor:
    """``maps`` as a real (B, H, W) tensor without NaN, matching ``x``'s (B, H, W) when given."""
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a torch.Tensor of shape (B, H, W), got {type(maps).__name__}")
    if maps.dtype == torch.bool or maps.is_complex():
        raise TypeError(f"maps must hold real numbers, got dtype {maps.dtype}")
    if x is not None and tuple(maps.shape) != (x.shape[0], *x.shape[2:]):
        raise ValueError(
            f"maps must have shape (B, H, W) = {(x.shape[0], *x.shape[2:])} to match x of shape {tuple(x.shape)}, "
            f"got {tuple(maps.shape)}"
        )
    if maps.dim() != 3 or maps.shape[0] == 0:
        raise ValueError(f"maps must have shape (B, H, W) with B >= 1, got {tuple(maps.shape)}")
    if maps.is_floating_point() and maps.isnan().any():
        raise ValueError("maps contains NaN: a NaN pixel has no place in the removal order")
    return maps


def _check_removed(removed: object, x: torch.Tensor) -> torch.Tensor:
    expected = (x.shape[0], *x.shape[2:])
    if not isinstance(removed, torch.Tensor) or removed.dtype != torch.bool or tuple(removed.shape) != expected:
        got = tuple(removed.shape) if isinstance(removed, torch.Tensor) else type(removed).__name__
        raise ValueError(f"removed must be a boolean tensor of shape (B, H, W) = {expected} to match x, got {got}")
    return removed.to(x.device)


def _channel_values(value: object, channels: int, name: str) -> torch.Tensor:
    """A number or ``channels`` per-channel numbers as a finite float64 (C,) tensor."""
    message = f"{name} must be a number or a sequence of {channels} per-channel numbers, got {value!r}"
    if isinstance(value, (str, bytes, bool)):
        raise ValueError(message)
    try:
        t = torch.as_tensor(value, dtype=torch.float64).flatten().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(message) from None
    if t.numel() == 1 and (isinstance(value, numbers.Real) or (isinstance(value, torch.Tensor) and value.dim() == 0)):
        t = t.expand(channels)
    if t.numel() != channels or not torch.isfinite(t).all():
        raise ValueError(message)
    return t


@renamed(fraction=("percent", percent_from_fraction))
def removal_count(percent: float, pixels: int) -> int:
    """How many of ``pixels`` pixels removing ``percent`` % of them removes: floor(percent / 100 * pixels + 1/2).

    Halves round up (0.5 % of 100 pixels is 1, 1.5 % of 100 is 2), and a product within 1e-9 below a
    half-integer counts as that half, so binary rounding of the fraction cannot change the count.
    """
    return _count(fraction_of(percent), pixels)


def _count(fraction: float, pixels: int) -> int:
    """:func:`removal_count` of a fraction in [0, 1]."""
    f = _check_fraction(fraction)
    return min(pixels, math.floor(f * pixels + 0.5 + _HALF_TOLERANCE))


def quantize_maps(maps: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """The authors' stored maps: ``|map|`` divided by its image's peak and rounded to ``levels`` steps.

    Their ROAR/LeRF code read maps from 8-bit PNGs, so pixels ranked on 256 values and the many ties
    were broken by whatever order their sort left; here ties follow the ``ties`` rule of the removal. Returns
    float maps in [0, 1] on ``levels`` values (an all-zero map stays zero).
    """
    maps = _check_maps(maps)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    magnitude = maps.abs()
    peak = magnitude.flatten(1).amax(1).view(-1, 1, 1)
    unit = torch.where(peak > 0, peak, torch.ones_like(peak))
    return torch.floor(magnitude / unit * (levels - 1) + 0.5) / (levels - 1)


def tie_keys(pixels: int, ties: Ties = "random", tie_seed: int = 0) -> torch.Tensor:
    """(pixels,) long: the order in which equal scores are taken, as a permutation of the row-major
    indices (``"first"``: 0, 1, ...; ``"last"``: reversed; ``"random"``: ``torch.randperm`` from a CPU
    generator seeded with ``tie_seed``)."""
    _check_ties(ties, tie_seed)
    if ties == "first":
        return torch.arange(pixels)
    if ties == "last":
        return torch.arange(pixels - 1, -1, -1)
    return torch.randperm(pixels, generator=torch.Generator().manual_seed(int(tie_seed)))


def removal_order(
    maps: torch.Tensor, order: Order, *, ranking: Ranking = "magnitude", ties: Ties = "random", tie_seed: int = 0
) -> torch.Tensor:
    """Row-major pixel indices of each map in removal order, (B, H * W) long.

    ``order="most"`` puts the highest scores first, ``"least"`` the lowest; the score is ``|map|``
    (``ranking="magnitude"``) or the map value (``"signed"``). Equal scores follow :func:`tie_keys`
    (``ties``, ``tie_seed``): a stable sort of the map read in that pixel order.
    """
    maps = _check_maps(maps)
    _check_order(order)
    _check_ranking(ranking)
    _check_ties(ties, tie_seed)
    scores = maps.flatten(1)
    if ranking == "magnitude":
        scores = scores.abs()
    keys = tie_keys(scores.shape[1], ties, tie_seed).to(scores.device)
    sorted_keys = torch.sort(scores[:, keys], dim=1, descending=order == "most", stable=True).indices
    return keys[sorted_keys]


@keyword_only_from(2, "order")
@renamed(fraction=("percent", percent_from_fraction))
def tie_share(maps: torch.Tensor, percent: float, *, order: Order = "most", ranking: Ranking = "magnitude") -> torch.Tensor:
    """(B,) float64: the share of the pixels removed at ``percent`` % that the tie rule chose, per image.

    With k pixels removed and s the score of the last one, the pixels scored s straddle the cut when
    more of them exist than the k removed pixels leave room for; then every removed pixel scored s was
    chosen among equals. 0 when nothing is removed or the tied block lies wholly on one side.
    """
    maps = _check_maps(maps)
    _check_order(order)
    _check_ranking(ranking)
    scores = maps.flatten(1).double()
    if ranking == "magnitude":
        scores = scores.abs()
    k = _count(fraction_of(percent), scores.shape[1])
    if k == 0:
        return torch.zeros(scores.shape[0], dtype=torch.float64)
    ordered = torch.sort(scores, dim=1, descending=order == "most").values
    cut = ordered[:, k - 1 : k]
    before = (scores > cut if order == "most" else scores < cut).sum(1)
    tied = (scores == cut).sum(1)
    decided = torch.where(before + tied > k, k - before, torch.zeros_like(before))
    return (decided.double() / k).cpu()


def _removal_ranks(maps: torch.Tensor, order: Order, ranking: Ranking, ties: Ties = "random", tie_seed: int = 0) -> torch.Tensor:
    """Each pixel's position in the removal order, (B, H * W): removing k pixels removes ranks < k."""
    indices = removal_order(maps, order, ranking=ranking, ties=ties, tie_seed=tie_seed)
    positions = torch.arange(indices.shape[1], device=indices.device).expand_as(indices)
    return torch.empty_like(indices).scatter_(1, indices, positions)


@keyword_only_from(2, "order")
@renamed(fraction=("percent", percent_from_fraction))
def removal_masks(
    maps: torch.Tensor,
    percent: float,
    *,
    order: Order = "most",
    ranking: Ranking = "magnitude",
    ties: Ties = "random",
    tie_seed: int = 0,
) -> torch.Tensor:
    """(B, H, W) bool, True where a pixel is removed: the first ``removal_count(percent, H * W)``
    pixels of each map's :func:`removal_order` (ties by ``ties`` and ``tie_seed``).

    The choice is a threshold decision like a pathway's: an experiment that records decisions
    (:mod:`pathlib_pw.decisions`) records it, and replays it on another machine within ``MAP_RANKING``.
    """
    return _removal_masks(maps, fraction_of(percent), order, ranking=ranking, ties=ties, tie_seed=tie_seed)


def _removal_masks(
    maps: torch.Tensor, fraction: float, order: Order, *, ranking: Ranking = "magnitude", ties: Ties = "random", tie_seed: int = 0
) -> torch.Tensor:
    """:func:`removal_masks` of a fraction in [0, 1]."""
    maps = _check_maps(maps)
    k = _count(fraction, maps.shape[1] * maps.shape[2])
    return _decided(maps, _removal_ranks(maps, order, ranking, ties, tie_seed), k, ranking)


def _decided(maps: torch.Tensor, ranks: torch.Tensor, k: int, ranking: Ranking) -> torch.Tensor:
    """The removal masks ``ranks < k``, through :func:`pathlib_pw.decisions.checkpoint`."""
    removed = (ranks < k).view(maps.shape)
    if k == 0 or k == ranks.shape[1]:
        return removed
    scores = maps.abs() if ranking == "magnitude" else maps
    cut = scores.flatten(1).gather(1, (ranks == k - 1).nonzero()[:, 1:]).squeeze(1)  # the last pixel removed
    with decisions.criterion(MAP_RANKING):
        (kept,) = decisions.checkpoint([scores], [~removed], cut)
    return ~kept


def _noise_fields(shape: tuple[int, ...], seed: Seed) -> list[torch.Generator | None]:
    """One generator per image (None: the global RNG), per the ``seed`` rules of noisy_linear_imputation."""
    batch = shape[0]
    if seed is None or isinstance(seed, torch.Generator):
        return [seed] * batch
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return [torch.Generator().manual_seed(int(seed)) for _ in range(batch)]
    seeds = list(seed) if isinstance(seed, Sequence) and not isinstance(seed, str) else None
    if (
        seeds is None
        or len(seeds) != batch
        or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seeds)
    ):
        raise ValueError(f"seed must be None, an int, {batch} ints (one per image) or a torch.Generator, got {seed!r}")
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def _impute_images(values: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """ROAD's linear imputation of a batch: the (N, C) values of its N removed pixels, image by image, row-major.

    Unknown u_i of removed pixel i: S_i u_i - sum_{removed nb j} w_ij u_j = sum_{kept nb j} w_ij v_j,
    where the sums run over the neighbours inside the image and S_i is the sum of their weights. The
    images' systems are independent: they are solved together as one block-diagonal sparse system. An
    image with every pixel removed has a singular system: its pixels get 0.0.
    """
    batch, channels, height, width = values.shape
    full = np.asarray(removed.reshape(batch, -1).all(1))
    solvable = removed & ~full[:, None, None]
    images, rows, cols = np.nonzero(solvable)
    n = images.size
    out = np.zeros((int(removed.sum()), channels))
    if n == 0:
        return out
    unknown = np.full(removed.shape, -1)
    unknown[images, rows, cols] = np.arange(n)
    diagonal = np.zeros(n)
    rhs = np.zeros((n, channels))
    a_rows, a_cols, a_values = [], [], []
    for dr, dc, weight in ROAD_NEIGHBOURS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        eq, b, r, c = np.nonzero(inside)[0], images[inside], r[inside], c[inside]
        diagonal[eq] += weight
        j = unknown[b, r, c]
        is_unknown = j >= 0
        a_rows.append(eq[is_unknown])
        a_cols.append(j[is_unknown])
        a_values.append(np.full(int(is_unknown.sum()), -weight))
        kept = ~is_unknown
        rhs[eq[kept]] += weight * values[b[kept], :, r[kept], c[kept]]  # eq has no repeats within one offset
    system = coo_matrix(
        (
            np.concatenate([*a_values, diagonal]),
            (np.concatenate([*a_rows, np.arange(n)]), np.concatenate([*a_cols, np.arange(n)])),
        ),
        shape=(n, n),
    ).tocsc()
    # natural column order: each image's block is factored alone, as if solved by itself, so an image's
    # result does not depend on the others in the batch
    solved = np.asarray(spsolve(system, rhs, permc_spec="NATURAL")).reshape(n, channels)
    out[solvable[removed]] = solved  # removed pixels in (image, row, column) order, as np.nonzero lists them
    return out


def noisy_linear_imputation(
    x: torch.Tensor,
    removed: torch.Tensor,
    noise: float | Sequence[float] | torch.Tensor = 0.01,
    seed: Seed = None,
) -> torch.Tensor:
    """ROAD's noisy linear imputation (Rong et al., ICML 2022): a copy of ``x`` with its removed pixels filled.

    Each removed pixel's value, per channel, is the weighted mean of its 8 neighbours (1/6 for the 4
    direct, 1/12 for the 4 diagonal ones, renormalized over the neighbours inside the image), where
    removed neighbours are unknowns too: one sparse linear system per image over all its removed pixels
    (the batch's systems solved together, block-diagonal), for all channels at once in float64 (``scipy.sparse.linalg.spsolve``). Then Gaussian noise of
    standard deviation ``noise`` (a number, or one per channel) is added to the imputed values only.
    With noise 0 a linear ramp is reproduced exactly where no removed pixel touches the image border;
    at the border the renormalized mean is one-sided and reproduces only a ramp along that border.

    Noise, per image, is a (C, H, W) float64 standard-normal field of which the removed pixels are used,
    so a pixel's noise does not depend on which other pixels are removed. ``seed``: None draws each
    image's field from the global torch RNG, in batch order (also the unused field of an image with no
    pixel removed, so that the later images' fields do not depend on it); a CPU ``torch.Generator``
    likewise from that generator; an int gives every image the field of a generator seeded with it; a
    sequence of B ints gives image i the field of ``seeds[i]``. With ints, image i's result depends only on image i,
    its mask and its seed, so computing images one at a time or batched gives identical results.

    Differences from the reference implementation (github.com/tleemann/road_evaluation,
    ``road/imputations.py``, ``NoisyLinearImputer``): same weights and equations; its noise comes from
    ``torch.randn_like`` (the global RNG) for the removed values only; it solves on float32 images and
    returns float32, ours keeps ``x``'s dtype and device; an image with every pixel removed makes its
    system singular, where ours fills 0.0 (the dataset mean of standardized inputs) plus noise. ROAD
    imputes [0, 1] images before standardizing them: the imputation commutes with per-channel
    standardization, the noise does not, so ROAD's ``noise=0.01`` is ``0.01 / std`` per channel here.
    """
    x = check_input(x)
    removed = _check_removed(removed, x)
    channels = x.shape[1]
    scale = _channel_values(noise, channels, "noise")
    if (scale < 0).any():
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    generators = _noise_fields(tuple(x.shape), seed)
    masks = removed.cpu().numpy()
    filled_all = torch.from_numpy(_impute_images(x.detach().cpu().double().numpy(), masks))  # (N, C)
    counts = masks.reshape(len(masks), -1).sum(1)
    out = x.detach().clone()
    start = 0
    for b, generator in enumerate(generators):
        field = None
        if (scale > 0).any():
            field = torch.randn(tuple(x.shape[1:]), generator=generator, dtype=torch.float64)
        if not counts[b]:
            continue
        filled = filled_all[start : start + counts[b]].T  # (C, N_b)
        start += int(counts[b])
        where = torch.from_numpy(masks[b])
        if field is not None:
            filled = filled + scale.view(-1, 1) * field[:, where]
        out[b][:, where.to(x.device)] = filled.to(dtype=x.dtype, device=x.device)
    return out


def fill_pixels(
    x: torch.Tensor, removed: torch.Tensor, fill: Fill = None, *, seed: Seed = None, noise: float | Sequence[float] = 0.01
) -> torch.Tensor:
    """A detached copy of ``x`` (B, C, H, W) whose pixels marked in ``removed`` (B, H, W) are replaced, all channels together.

    ``fill``: None -> 0.0 in every channel (the dataset mean, since every model here receives inputs
    standardized by the dataset's mean and std); a number; C per-channel numbers (sequence or tensor);
    ``"road"`` -> :func:`noisy_linear_imputation` with ``noise`` and ``seed`` (used only there).
    """
    x = check_input(x)
    removed = _check_removed(removed, x)
    if isinstance(fill, str):
        if fill != "road":
            raise ValueError(f"fill must be None, a number, {x.shape[1]} per-channel numbers or 'road', got {fill!r}")
        return noisy_linear_imputation(x, removed, noise=noise, seed=seed)
    values = _channel_values(0.0 if fill is None else fill, x.shape[1], "fill").to(dtype=x.dtype, device=x.device)
    return torch.where(removed.unsqueeze(1), values.view(1, -1, 1, 1), x.detach())


@keyword_only_from(3, "order", "fill")
@renamed(fraction=("percent", percent_from_fraction))
def remove_pixels(
    x: torch.Tensor,
    maps: torch.Tensor,
    percent: float,
    *,
    order: Order = "most",
    fill: Fill = None,
    ranking: Ranking = "magnitude",
    ties: Ties = "random",
    tie_seed: int = 0,
    seed: Seed = None,
    noise: float | Sequence[float] = 0.01,
) -> torch.Tensor:
    """``x`` with ``percent`` % of each image's pixels removed in ``maps``' ``order`` and filled with ``fill``.

    Khakzar et al.'s LeRF is ``order="least"`` with the default mean fill; MoRF and ROAR use
    ``order="most"``. The pixels are :func:`removal_masks` (ranking, ties and count in the module
    docstring); filling is :func:`fill_pixels`. Returns a new tensor; ``x`` is never modified.

    Examples
    --------
    >>> import torch
    >>> import pathlib_pw as pw
    >>> x = torch.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    >>> maps = torch.tensor([[[0.1, 0.4], [0.3, 0.2]]])
    >>> pw.remove_pixels(x, maps, 25)  # the most relevant 25 %: one pixel, filled with the mean (0)
    tensor([[[[1., 0.],
              [3., 4.]]]])
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea"])
    >>> maps = pw.saliency(model, x, "gradients")
    >>> lerf = pw.remove_pixels(x, maps, 10, order="least")  # LeRF's input at 10 %
    >>> round((lerf != x).any(1).float().mean().item(), 3)  # share of the pixels changed
    0.1
    """
    return _remove_pixels(
        x,
        maps,
        fraction_of(percent),
        order,
        fill,
        ranking=ranking,
        ties=ties,
        tie_seed=tie_seed,
        seed=seed,
        noise=noise,
    )


def _remove_pixels(
    x: torch.Tensor,
    maps: torch.Tensor,
    fraction: float,
    order: Order,
    fill: Fill,
    *,
    ranking: Ranking = "magnitude",
    ties: Ties = "random",
    tie_seed: int = 0,
    seed: Seed = None,
    noise: float | Sequence[float] = 0.01,
) -> torch.Tensor:
    """:func:`remove_pixels` of a fraction in [0, 1]."""
    x = check_input(x)
    maps = _check_maps(maps, x)
    _check_fraction(fraction)
    _check_order(order)
    _check_ranking(ranking)
    removed = _removal_masks(maps, fraction, order, ranking=ranking, ties=ties, tie_seed=tie_seed).to(x.device)
    return fill_pixels(x, removed, fill, seed=seed, noise=noise)


def _fractions_of(percents: object) -> list[float]:
    """``percents`` (a non-empty sequence of numbers in [0, 100]) as fractions; share-looking ones warn."""
    if isinstance(percents, (torch.Tensor, np.ndarray)):
        percents = percents.tolist()
    if isinstance(percents, numbers.Real) or not isinstance(percents, Sequence) or len(percents) == 0:
        raise ValueError(
            f"percents must be a non-empty sequence of numbers in [0, 100] (percent of the pixels), got {percents!r}"
        )
    for p in percents:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= float(p) <= 100:
            raise ValueError(f"percents must be numbers in [0, 100] (percent of the pixels), got {percents!r}")
    warn_if_share("percents", [float(p) for p in percents], was_share=True)
    return [float(p) / 100 for p in percents]


def _pair_seeds(seed: Seed, images: torch.Tensor, batch: int) -> Seed:
    """The ``seed`` argument for a chunk of (image, fraction) pairs showing ``images``: per-image seeds follow their image."""
    if seed is None or isinstance(seed, (torch.Generator, int)) or isinstance(seed, numbers.Integral):
        return seed
    _noise_fields((batch,), seed)  # validates: one int per image
    per_image = list(seed)
    return [int(per_image[i]) for i in images.tolist()]


@keyword_only_from(4, "order", "fill", "target")
@renamed(fractions=("percents", percent_from_fraction))
def pixel_removal_curve(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    percents: Sequence[float],
    *,
    order: Order = "least",
    fill: Fill = None,
    target: Target = None,
    ranking: Ranking = "magnitude",
    ties: Ties = "random",
    tie_seeds: int = TIE_SEEDS,
    per_tie_order: bool = False,
    batch_size: int | None = None,
    seed: Seed = None,
    noise: float | Sequence[float] = 0.01,
) -> torch.Tensor:
    """``|p(x') - p(x)| / p(x)`` of the target class's softmax probability per image and percent, (B, F) on the CPU.

    x' is :func:`remove_pixels` of ``x`` at each of the F ``percents`` (each in [0, 100]); Khakzar et
    al.'s LeRF curve is the default ``order="least"`` with percents 1..10, averaged over images.
    Ties: with ``ties="random"`` the curve is the mean over ``tie_seeds`` tie orders (tie seeds 0, 1,
    ...); ``per_tie_order=True`` returns each order's curve instead, (B, S, F) (S = 1 for ``"first"``
    and ``"last"``). A removal that no tie order changes is evaluated once. ``target``: None -> the
    model's prediction on x; else one class or one per image. Runs without gradients, in eval mode
    (every module's mode restored afterwards), on the model's device, in chunks of ``batch_size``
    images (None: all at once), so memory is bounded and the result does not depend on ``batch_size``
    beyond float rounding. With ``fill="road"``, ``seed`` and ``noise`` are noisy_linear_imputation's
    (B ints: per image), and each evaluated removal draws its noise field in image-major order from a
    generator or the global RNG. The removal masks are decided first, tie order by tie order and
    percent by percent (one :func:`removal_masks` decision each). ``x`` is moved to the model's
    device and dtype.

    Examples
    --------
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea", "coffee"])
    >>> maps = pw.attribute(model, x, "pathway_grad/neuron_mct")
    >>> percents = [1, 2, 5, 10]
    >>> lerf = pw.pixel_removal_curve(model, x, maps, percents)  # the least relevant pixels first
    >>> morf = pw.pixel_removal_curve(model, x, maps, percents, order="most")
    >>> lerf.shape  # (images, percents): the change of each image's target probability
    torch.Size([2, 4])
    >>> bool((lerf >= 0).all())
    True
    """
    x = as_model_input(x, model).detach()
    maps = _check_maps(maps, x)
    levels = _fractions_of(percents)
    _check_order(order)
    _check_ranking(ranking)
    _check_ties(ties)
    orders = _check_tie_seeds(tie_seeds) if ties == "random" else 1
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    device = x.device
    batch, height, width = maps.shape
    n_levels = len(levels)
    masks = torch.stack(
        [
            torch.stack([_decided(maps, ranks, _count(f, height * width), ranking) for f in levels], 1)
            for ranks in (_removal_ranks(maps, order, ranking, ties, s) for s in range(orders))
        ],
        1,
    )  # (B, S, F, H, W)
    # evaluate each distinct (image, fraction) removal once: tie orders agree wherever no tie straddles the cut
    source = torch.arange(orders).view(1, -1, 1).repeat(batch, 1, n_levels)  # the tie order whose result is used
    for s in range(1, orders):
        for t in range(s):
            same = (masks[:, s] == masks[:, t]).flatten(2).all(2) & (source[:, s] == s)
            source[:, s][same] = t
    pairs = [(b, s, f) for b in range(batch) for s in range(orders) for f in range(n_levels) if source[b, s, f] == s]
    size = batch_size or max(1, len(pairs))
    with torch.no_grad(), evaluating(model):
        logits = torch.cat([check_logits(model(x[i : i + size].clone())) for i in range(0, batch, size)])
        tgt = resolve_target(target, logits)
        p0 = logits.softmax(1).gather(1, tgt.view(-1, 1)).squeeze(1)
        p = torch.full((batch, orders, n_levels), float("nan"), dtype=p0.dtype, device=device)
        for start in range(0, len(pairs), size):
            chunk = pairs[start : start + size]
            img = torch.tensor([b for b, _, _ in chunk], device=device)
            removed = torch.stack([masks[b, s, f] for b, s, f in chunk]).to(device)
            changed = fill_pixels(x[img], removed, fill, seed=_pair_seeds(seed, img, batch), noise=noise)
            probs = model(changed).softmax(1).gather(1, tgt[img].view(-1, 1)).squeeze(1)
            for (b, s, f), value in zip(chunk, probs):
                p[b, s, f] = value
    index = source.to(device)
    p = p.gather(1, index)  # every tie order's value, copied from the order evaluated for it
    change = ((p - p0.view(-1, 1, 1)).abs() / p0.view(-1, 1, 1)).cpu()
    return change if per_tie_order else change.mean(1)


@renamed(fractions_percent="percents")
def area_under_curve(percents: Sequence[float] | np.ndarray | torch.Tensor, values: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The authors' area under a removal curve: trapezoids over (0, 0) followed by the F points.

    ``percents`` (F,) are the curve's x values, percent of the pixels removed, >= 0 and strictly
    increasing (x values all below 1 look like shares and warn); ``values`` (..., F) the curve(s),
    y(0) taken as 0. Returns (...).

    Examples
    --------
    >>> import torch
    >>> import pathlib_pw as pw
    >>> pw.area_under_curve([1, 2, 5, 10], torch.tensor([0.0, 0.1, 0.1, 0.4]))  # 0 + 0.05 + 0.3 + 1.25
    tensor(1.6000)
    >>> pw.area_under_curve([1, 2, 5, 10], torch.rand(3, 4)).shape  # one area per curve
    torch.Size([3])
    """
    y = (
        torch.from_numpy(np.array(values)) if isinstance(values, np.ndarray) else torch.as_tensor(values)
    )  # a copy: read-only arrays welcome
    if not y.is_floating_point():
        y = y.double()
    xs = torch.as_tensor(percents, dtype=torch.float64).cpu()
    if xs.dim() != 1 or xs.numel() == 0 or y.dim() == 0 or y.shape[-1] != xs.numel():
        raise ValueError(
            f"percents must be (F,) and values (..., F) with the same F >= 1, got {tuple(xs.shape)} and {tuple(y.shape)}"
        )
    if not torch.isfinite(xs).all() or (xs < 0).any() or (xs.diff() <= 0).any():
        raise ValueError(f"percents must be finite, >= 0 and strictly increasing, got {xs.tolist()}")
    warn_if_share("percents", xs.tolist())
    grid = torch.cat([xs.new_zeros(1), xs]).to(dtype=y.dtype, device=y.device)
    curve = torch.cat([y.new_zeros((*y.shape[:-1], 1)), y], dim=-1)
    return torch.trapezoid(curve, grid, dim=-1)
