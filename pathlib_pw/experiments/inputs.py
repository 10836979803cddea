"""The images and model an experiment configuration names."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from pathlib_pw.data import PHOTOS, load_imagenet_val, load_photos
from pathlib_pw.models import load_model

ALL_PHOTOS: tuple[str, ...] = tuple(PHOTOS)
# The cached results were computed with all NeuronIntGrad alphas of a batch in one pass. The library's
# default ("auto") depends on the device, and float sums (so the neurons at the threshold) on the
# pass size: pinned, every machine recomputes the cached numbers the same way.
INTGRAD_OPTIONS: dict[str, Any] = {"alpha_chunk": None}


def pinned_options(method: str) -> dict[str, Any]:
    """The options an experiment passes to criterion ``method`` beyond its configuration."""
    return dict(INTGRAD_OPTIONS) if method == "neuron_intgrad" else {}


def load_inputs(source: str, images: tuple[str, ...], n_images: int, size: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """``source="photos"``: the named bundled photos; ``"imagenet_val"``: ``n_images`` random val images."""
    if source == "photos":
        return load_photos(list(images), size=size)
    if source == "imagenet_val":
        return load_imagenet_val(n=n_images, seed=seed, size=size)
    raise ValueError(f"source must be 'photos' or 'imagenet_val', got {source!r}")


def first_images(config: Any, n: int) -> Any:
    """The configuration restricted to its first ``n`` images (what ``verify`` recomputes)."""
    if config.source == "photos":
        return dataclasses.replace(config, images=config.images[:n])
    return dataclasses.replace(config, n_images=n)


def load_experiment_model(name: str, device: str) -> nn.Module:
    return load_model(name, pretrained=True, device=device)
