"""Training a classifier from scratch: the recipe of the digits model and of ROAR/KAR's retraining.

One loop for every model the book trains (:mod:`pathlib_pw.digits`, :mod:`pathlib_pw.roar`): Adam with
L2 weight decay, a fresh seeded batch order each epoch, and a cosine, step or constant learning rate.
Nothing here is random beyond ``seed``: the initialization is the caller's, the batch order comes from
a local generator, and the global RNG is left untouched.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from pathlib_pw.sites import evaluating, model_device

__all__ = ["SCHEDULES", "TrainingRecipe", "accuracy", "predict", "train_classifier"]

Schedule = Literal["cosine", "step", "constant"]
SCHEDULES: tuple[Schedule, ...] = ("cosine", "step", "constant")


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
    """Adam with L2 ``weight_decay``, mini-batches of ``batch_size`` in a fresh seeded order each of
    ``epochs`` epochs. ``schedule``: ``"cosine"`` decays ``lr`` to 0 along a cosine over all steps,
    ``"step"`` multiplies it by ``gamma`` every ``step_epochs`` epochs (the authors' ROAR recipe:
    50 epochs, Adam 1e-3, weight decay 1e-4, x0.5 every 10 epochs, batch 256), ``"constant"`` keeps it.
    The defaults are the digits recipe (about 98 % test accuracy on :func:`pathlib_pw.digits.digits_split`)."""

    epochs: int = 15
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: Schedule = "cosine"
    step_epochs: int = 10
    gamma: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"epochs must be an int >= 1; got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be an int >= 1; got {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}; got {self.schedule!r}")
        if not (isinstance(self.step_epochs, int) and self.step_epochs >= 1):
            raise ValueError(f"step_epochs must be an int >= 1; got {self.step_epochs!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1]; got {self.gamma!r}")

    def lr_at(self, epoch: int, step: int, steps: int) -> float:
        """The learning rate of optimizer step ``step`` (of ``steps``), taken in epoch ``epoch``."""
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
        if self.schedule == "step":
            return self.lr * self.gamma ** (epoch // self.step_epochs)
        return self.lr


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: TrainingRecipe, seed: int) -> nn.Module:
    """Train ``model`` in place by ``recipe`` on images ``x`` and int64 labels ``y`` (cross-entropy), in
    the model's dtype and on its device; returns it in eval mode. ``seed`` fixes the batch order."""
    device = model_device(model)
    dtype = next(model.parameters()).dtype
    x, y = x.detach().to(device=device, dtype=dtype), y.to(device)
    model.train()
    order = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * math.ceil(len(x) / recipe.batch_size)
    step = 0
    with torch.enable_grad():
        for epoch in range(recipe.epochs):
            permutation = torch.randperm(len(x), generator=order).to(device)
            for start in range(0, len(x), recipe.batch_size):
                for group in optimizer.param_groups:
                    group["lr"] = recipe.lr_at(epoch, step, steps)
                batch = permutation[start : start + recipe.batch_size]
                loss = F.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
    return model.eval()


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in chunks of ``batch_size`` (eval mode, no gradients), on the CPU."""
    device = model_device(model)
    dtype = next(model.parameters()).dtype
    with evaluating(model), torch.no_grad():
        return torch.cat(
            [model(x[i : i + batch_size].to(device=device, dtype=dtype)).cpu() for i in range(0, len(x), batch_size)]
        )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of the images ``x`` whose top class is the label ``y`` (eval mode, no gradients)."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must hold the same number (>= 1) of images and labels; got {len(x)} and {len(y)}")
    return float((predict(model, x).argmax(1) == y.cpu()).double().mean())
