"""One seed per image, so that a chunked call gives the same random paths as one big call."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pathlib_pw.selection import map_images
from pathlib_pw.sites import as_index_tensor


def per_image_seeds(seed: int | Sequence[int] | torch.Tensor, batch: int, first: int = 0) -> torch.Tensor:
    """An int ``s`` becomes ``s * 1_000_003 + image index`` (images ``first`` .. ``first + batch - 1``
    of a larger run); a sequence must hold one seed per image."""
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed * 1_000_003 + torch.arange(first, first + batch, dtype=torch.long)
    seeds = as_index_tensor(seed, "seed")
    if seeds.numel() != batch:
        raise ValueError(f"seed must be an int or one int per image ({batch}), got {seed!r}")
    return seeds


# Tie orders (Greedy's, DGR's) draw from a stream of their own: Random and DGR(init=r) seed their generators
# with the same per-image seeds, and two permutations drawn from one Mersenne Twister stream are
# correlated (torch's randperm draws each swap as the same random number modulo a different size).
TIE_STREAM = 0x7469_6573
_M64 = (1 << 64) - 1


def tie_seed(seed: int) -> int:
    """The generator seed of an image's tie order: splitmix64's finalizer of ``seed + TIE_STREAM x
    0x9E3779B97F4A7C15`` (modulo 2**64), a plain function of the image's seed."""
    z = (seed + TIE_STREAM * 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def tie_keys(seeds: torch.Tensor, neurons: int) -> torch.Tensor:
    """(B, neurons) int32: image b's tie rank of each neuron (sites pooled in order), ``torch.randperm``
    from a CPU generator seeded with ``tie_seed(seeds[b])``: the same on every device and batch split."""

    def draw(b: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(tie_seed(int(seeds[b])))
        return torch.randperm(neurons, generator=generator).to(torch.int32)  # int32: half the memory

    return torch.stack(map_images(draw, len(seeds)))
