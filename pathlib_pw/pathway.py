"""A pathway: one boolean keep-mask per rectifier site, per image (PAPER.md section 2)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from pathlib_pw.selection import add_all, count_true, pooled
from pathlib_pw.sites import Edit, Trace, hooked


@dataclasses.dataclass
class Pathway:
    """Binary masks (1 = kept) for B images.

    ``masks[s]`` has shape ``(B, *site_shape)`` and dtype bool, ``sites[s]`` is the site's name (see
    :mod:`pathlib_pw.sites`), ``sparsity`` is the realized share of removed neurons in percent,
    shape ``(B,)``. ``info`` carries per-criterion extras (requested sparsity, thresholds, DGR
    convergence flags ...), each a tensor with a leading batch dimension or a plain value.
    """

    masks: list[torch.Tensor]
    sites: list[str]
    sparsity: torch.Tensor
    method: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.masks) != len(self.sites):
            raise ValueError(f"masks has {len(self.masks)} entries but sites has {len(self.sites)}")
        if self.masks and any(m.dtype != torch.bool for m in self.masks):
            raise TypeError("masks must be boolean tensors")

    @classmethod
    def from_masks(cls, masks: Sequence[torch.Tensor], sites: Sequence[str], method: str = "", **info: Any) -> Pathway:
        masks = [m.bool() for m in masks]
        return cls(list(masks), list(sites), realized_sparsity(masks), method, dict(info))

    @property
    def batch_size(self) -> int:
        return self.masks[0].shape[0]

    def __len__(self) -> int:
        return self.batch_size

    @property
    def num_neurons(self) -> int:
        """Neurons per image, all sites together."""
        return sum(m[0].numel() for m in self.masks)

    def kept_per_site(self) -> torch.Tensor:
        """Share of kept neurons, shape (B, n_sites)."""
        return torch.stack([m.flatten(1).float().mean(1) for m in self.masks], dim=1)

    def flat(self) -> torch.Tensor:
        """All masks of each image concatenated: (B, num_neurons)."""
        return pooled(self.masks)

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> Pathway:
        if isinstance(index, int):
            index = [index]
        return Pathway(
            [m[index] for m in self.masks],
            list(self.sites),
            self.sparsity[index],
            self.method,
            {k: (v[index] if _is_batched(v, self.batch_size) else v) for k, v in self.info.items()},
        )

    def to(self, device: torch.device | str) -> Pathway:
        return dataclasses.replace(self, masks=[m.to(device) for m in self.masks], sparsity=self.sparsity.to(device))

    @staticmethod
    def cat(paths: Sequence[Pathway]) -> Pathway:
        """Concatenate the images of several pathways over the same sites."""
        if not paths:
            raise ValueError("paths must contain at least one Pathway")
        first = paths[0]
        if any(p.sites != first.sites for p in paths):
            raise ValueError("pathways to concatenate must have the same sites")
        info: dict[str, Any] = {}
        for key, value in first.info.items():
            values = [p.info.get(key) for p in paths]
            if all(_is_batched(v, p.batch_size) for v, p in zip(values, paths)):
                info[key] = torch.cat([v.to(value.device) for v in values if v is not None])
            else:
                info[key] = value
        return Pathway(
            [torch.cat([p.masks[s] for p in paths]) for s in range(len(first.sites))],
            list(first.sites),
            torch.cat([p.sparsity for p in paths]),
            first.method,
            info,
        )

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Multiply every rectifier output of ``model`` by this pathway's mask inside the block.

        The masks broadcast over the batch when the pathway holds one image. The hooks are removed
        on exit, also when the body raises.
        """

        def check_count(trace: Trace) -> None:
            if len(trace.calls) != len(self.masks):
                raise ValueError(
                    f"the model made {len(trace.calls)} rectifier calls but this pathway has {len(self.masks)} "
                    "sites: the pathway was extracted from a different model"
                )

        with hooked(model, masking(self.masks, self.sites), keep_outputs=False, on_end=check_count):
            yield


def masking(masks: Sequence[torch.Tensor], sites: Sequence[str]) -> Edit:
    """A :func:`~pathlib_pw.sites.hooked` edit that multiplies each rectifier output by its mask.

    A mask with one image broadcasts over the batch; a site count or shape that does not match the
    model raises ValueError.
    """
    float_masks: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}

    def edit(index: int, output: torch.Tensor) -> torch.Tensor:
        if index >= len(masks):
            raise ValueError(
                f"the model has more rectifier calls than this pathway has sites ({len(masks)}): "
                "the pathway was extracted from a different model"
            )
        mask = masks[index]
        if tuple(mask.shape[1:]) != tuple(output.shape[1:]) or mask.shape[0] not in (1, output.shape[0]):
            raise ValueError(
                f"pathway site {sites[index]!r} has mask shape {tuple(mask.shape)} but the rectifier "
                f"output has shape {tuple(output.shape)}: use the input size and batch the pathway was "
                "extracted with (or a one-image pathway, which broadcasts)"
            )
        key = (output.device, output.dtype)
        if key not in float_masks:
            # a product with a float mask: torch.where and masked_fill are slower on the CPU (Performance page)
            float_masks[key] = [m.to(device=output.device, dtype=output.dtype) for m in masks]
        return output * float_masks[key][index]

    return edit


def _is_batched(value: Any, batch: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == batch


def realized_sparsity(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Percent of removed neurons per image, shape (B,)."""
    kept = add_all(count_true(m).to(torch.float64) for m in masks)
    total = sum(m[0].numel() for m in masks)
    return (100.0 * (1.0 - kept / total)).float()
