"""Random pathway: per site, remove floor(p/100 * size) uniformly chosen neurons (book/methods.md: pathway criteria)."""

from __future__ import annotations

import math

import torch
from torch import nn

from pathlib_pw.criteria.seeds import per_image_seeds
from pathlib_pw.criteria.spec import CriterionSpec
from pathlib_pw.pathway import Pathway
from pathlib_pw.selection import map_images
from pathlib_pw.sites import record_activations, resolve_target


def random_path(
    model: nn.Module,
    x: torch.Tensor,
    levels: list[torch.Tensor],
    target: torch.Tensor | int | None,
    variant: str,
    seed: torch.Tensor | int = 0,
) -> list[Pathway]:
    """Uniformly random neurons removed per site (not globally), one generator per image.

    ``levels``: sparsities in percent, one (B,) tensor per level; returns one Pathway per level. The
    same permutation serves every level, so the paths of one image are nested.

    ``seed`` is one int per image (``extract_pathway`` derives them from a single int), so a chunked
    call gives the same paths as one call over all images. Randomness is drawn on the model's device.
    """
    logits, acts, names = record_activations(model, x)
    tgt = resolve_target(target, logits)
    batch = x.shape[0]
    seeds = per_image_seeds(seed, batch)
    device = acts[0].device
    flat_sizes = [a[0].numel() for a in acts]
    paths = []
    for level in levels:
        masks = [torch.ones(a.shape, dtype=torch.bool, device=device) for a in acts]
        rows = [m.view(batch, -1) for m in masks]

        def draw(b: int, level: torch.Tensor = level, rows: list[torch.Tensor] = rows) -> None:
            gen = torch.Generator(device=device).manual_seed(int(seeds[b]))
            p = float(level[b])
            for row, size in zip(rows, flat_sizes):
                removed = math.floor(p / 100.0 * size)
                if removed:
                    row[b].index_fill_(0, torch.randperm(size, generator=gen, device=device)[:removed], False)

        if device.type == "cpu":  # randperm is one sequential kernel per call: images side by side
            map_images(draw, batch)
        else:
            for b in range(batch):
                draw(b)
        paths.append(Pathway.from_masks(masks, names, "random", requested_sparsity=level.float(), target=tgt.cpu()))
    return paths


SPEC = CriterionSpec(
    "random",
    random_path,
    "floor(p / 100 x size) uniformly drawn neurons removed per site",
    options=("seed",),
    seeded=True,
)
