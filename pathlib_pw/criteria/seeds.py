"""One seed per image, so that a chunked call gives the same random paths as one big call."""

from __future__ import annotations

from collections.abc import Sequence

import torch

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
