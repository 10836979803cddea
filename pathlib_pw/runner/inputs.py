"""What an experiment runs on: one shared description of the model and the images, embedded in every
experiment's configuration."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from pathlib_pw.data import PHOTOS, load_images
from pathlib_pw.models import load_model
from pathlib_pw.runner.cache import added_field

ALL_PHOTOS: tuple[str, ...] = tuple(PHOTOS)
# The cached results were computed with all NeuronIntGrad alphas of a batch in one pass. The library's
# default ("auto") depends on the device, and float sums (so the neurons at the threshold) on the
# pass size: pinned, every machine recomputes the cached numbers the same way.
INTGRAD_OPTIONS: dict[str, Any] = {"alpha_chunk": None}
# The paper profiles' NeuronIntGrad alphas per pass: all 50 alphas of a batch of 16 VGG16 images in one
# pass would need over 100 GB of GPU memory; 8 keep it near 15 GB, and fixed, the sums stay the same
# on every machine.
PAPER_ALPHA_CHUNK = 8


def pinned_options(method: str, inputs: Inputs | None = None) -> dict[str, Any]:
    """The options an experiment passes to criterion ``method`` beyond its configuration (NeuronIntGrad's
    alphas per pass: ``inputs.alpha_chunk`` when set)."""
    if method != "neuron_intgrad":
        return {}
    options = dict(INTGRAD_OPTIONS)
    if inputs is not None and inputs.alpha_chunk is not None:
        options["alpha_chunk"] = inputs.alpha_chunk
    return options


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The model (a name :func:`pathlib_pw.models.load_model` knows) and the images: a registered
    image ``source`` (:data:`pathlib_pw.data.IMAGE_SOURCES`) with named ``images`` or ``n_images``
    drawn with ``seed``, at ``size`` px; ``first`` keeps only the first of them (what ``verify``
    recomputes); ``offset`` skips that many images of the full list before ``first`` applies (a chunk
    of a sharded run, :meth:`window`). Experiments number images from ``offset``, so that per-image
    seeds and recorded decisions of a chunk are those of the same images in a whole run."""

    model: str = "mobilenet_v2"
    """The model's name, as :func:`pathlib_pw.models.load_model` knows it (the smoke and book profiles
    use MobileNetV2, the paper profiles the authors' VGG16 or ResNet50, the digits experiments
    ``digits_cnn``)."""
    source: str = "photos"
    """The registered image source
    (:data:`pathlib_pw.data.IMAGE_SOURCES`): ``"photos"`` (the bundled photos, offline), ``"imagenet_val"`` (the local
    ImageNet validation folder, the paper profiles), ``"digits_test"``, or one an experiment registers."""
    images: tuple[str, ...] = ALL_PHOTOS
    """The images by name, for a source of named images
    (default: every bundled photo); empty for a source that draws ``n_images``."""
    n_images: int = 0
    """How many images to draw with ``seed``, for a source that draws (0 for a source of named images)."""
    size: int = 224
    """Side of the square input in pixels (the smoke profiles use 64, the digits 8)."""
    seed: int = 0
    """Seed of the draw of ``n_images`` images."""
    first: int | None = None
    """Keep only the first ``first`` images
    (None: all): what ``verify`` recomputes."""
    offset: int = added_field(0)
    """Images of the full list skipped before ``first`` applies, for a chunk of a sharded run (:meth:`window`)."""
    alpha_chunk: int | None = added_field(None)
    """NeuronIntGrad's alphas per pass
    (None: all at once; the paper profiles pin ``PAPER_ALPHA_CHUNK``, 8, so that a batch of 16 VGG16 images fits a GPU and the
    sums stay the same on every machine)."""

    def load_images(self) -> tuple[torch.Tensor, list[str]]:
        return load_images(self.source, self.images, self.n_images, self.size, self.seed, self.first, offset=self.offset)

    def load_model(self, device: str | torch.device = "cpu", name: str | None = None) -> nn.Module:
        """This model (or ``name``) with its trained weights."""
        return load_model(name or self.model, pretrained=True, device=device)

    def restricted(self, n: int) -> Inputs:
        """The same inputs, only the first ``n`` images."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return dataclasses.replace(self, first=n if self.first is None else min(n, self.first))

    def window(self, start: int, stop: int) -> Inputs:
        """Images ``start`` .. ``stop - 1`` of these inputs (counted from their own ``offset``)."""
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop):
            raise ValueError(f"start and stop must be ints with 0 <= start < stop, got {start!r}, {stop!r}")
        if self.first is not None and stop > self.first:
            raise ValueError(f"stop must be at most first={self.first}, got {stop}")
        return dataclasses.replace(self, offset=self.offset + start, first=stop - start)
