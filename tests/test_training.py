"""The shared training loop: schedules, recipe checks, determinism and the RNG it leaves alone."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pathlib_pw.training import TrainingRecipe, accuracy, predict, train_classifier
from tests.nets import single_thread  # noqa: F401  (autouse fixture)


def test_schedules_by_hand():
    step = TrainingRecipe(lr=1e-3, schedule="step", step_epochs=10, gamma=0.5)
    assert [step.lr_at(e, 0, 1) for e in (0, 9, 10, 19, 20, 49)] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 1e-3 * 0.5**4]
    cosine = TrainingRecipe(lr=2.0, schedule="cosine")
    assert cosine.lr_at(0, 0, 8) == 2.0 and cosine.lr_at(0, 4, 8) == pytest.approx(1.0) and cosine.lr_at(0, 8, 8) == pytest.approx(0.0)
    assert cosine.lr_at(0, 2, 8) == pytest.approx(1.0 + math.cos(math.pi / 4))
    assert TrainingRecipe(lr=0.1, schedule="constant").lr_at(7, 99, 100) == 0.1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"schedule": "linear"}, "schedule must be one of \\['cosine', 'step', 'constant'\\]"),
        ({"gamma": 0.0}, "gamma must be in"),
        ({"step_epochs": 0}, "step_epochs must be an int >= 1"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ],
)
def test_bad_recipes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingRecipe(**kwargs)


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))


def test_training_is_seeded_learns_and_leaves_the_global_rng_alone():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(90, 1, 3, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long() + (x.flatten(1)[:, 0] > 1).long()
    recipe = TrainingRecipe(epochs=30, batch_size=16, lr=1e-2, schedule="step", step_epochs=10)
    net = _net(0)
    state = torch.get_rng_state()
    a = train_classifier(net, x, y, recipe, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # the batch order comes from a local generator
    b = train_classifier(_net(0), x, y, recipe, seed=1)
    c = train_classifier(_net(0), x, y, recipe, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))  # another batch order
    assert not a.training and accuracy(a, x, y) > 0.9
    # chunks give the same logits up to rounding (the matrix kernels depend on the batch size)
    torch.testing.assert_close(predict(a, x, batch_size=7), predict(a, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="same number"):
        accuracy(a, x, y[:3])
