"""ROAR/KAR's library part: degrading by a map, one retraining, the authors' AUC rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathlib_pw import roar
from pathlib_pw.digits import digits_split, train_digits_cnn
from pathlib_pw.removal import removal_count
from pathlib_pw.training import TrainingRecipe, accuracy
from tests.nets import single_thread  # noqa: F401  (autouse fixture)


def _maps(n: int, side: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, side, side), generator=torch.Generator().manual_seed(seed))


def test_roar_removes_the_top_and_kar_the_bottom_of_each_map():
    x = torch.randn(3, 2, 8, 8)
    maps = _maps(3)
    roar30, kar70 = roar.degrade(x, maps, 30, "roar"), roar.degrade(x, maps, 70, "kar")
    removed_roar, removed_kar = (roar30 == 0).all(1), (kar70 == 0).all(1)
    k = removal_count(30, 64)
    for b in range(3):
        top = set(torch.argsort(maps[b].flatten(), descending=True)[:k].tolist())
        assert set(torch.nonzero(removed_roar[b].flatten()).flatten().tolist()) == top
    # no ties in a random map: KAR at 70 % removes exactly what ROAR at 30 % keeps
    assert torch.equal(removed_kar, ~removed_roar)
    assert torch.equal(roar30[~removed_roar.unsqueeze(1).expand_as(x)], x[~removed_roar.unsqueeze(1).expand_as(x)])


def test_degrade_rejects_bad_arguments():
    x, maps = torch.randn(2, 1, 8, 8), _maps(2)
    with pytest.raises(ValueError, match="mode must be one of \\['roar', 'kar'\\]"):
        roar.degrade(x, maps, 30, "morf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="percent must be a number in \\[0, 100\\]"):
        roar.degrade(x, maps, 130, "roar")
    with pytest.raises(ValueError, match="y_train must be an int64 tensor"):
        roar.RetrainingData(x, torch.zeros(2), x, torch.zeros(2, dtype=torch.int64))


def test_retrain_is_the_literal_degrade_train_test_sequence():
    split = digits_split(0)
    data = roar.RetrainingData(split.x_train[:300], split.y_train[:300], split.x_test[:100], split.y_test[:100])
    recipe = TrainingRecipe(epochs=2)
    maps_train, maps_test = _maps(300, seed=1), _maps(100, seed=2)

    def fit(x, y, seed):
        return train_digits_cnn(x, y, recipe, seed)

    result = roar.retrain(data, maps_train, maps_test, 50, "roar", fit, seed=3)
    # by hand: zero the top half of each map's pixels, train on them, test on the same removal
    x_train, x_test = data.x_train.clone(), data.x_test.clone()
    for x, maps in ((x_train, maps_train), (x_test, maps_test)):
        for b in range(len(x)):
            for j in torch.argsort(maps[b].flatten(), descending=True)[:32].tolist():
                x[b, :, j // 8, j % 8] = 0.0
    model = train_digits_cnn(x_train, data.y_train, recipe, 3)
    assert result.accuracy == accuracy(model, x_test, data.y_test)
    assert result.logits.shape == (100, 10)


def test_roar_auc_is_the_authors_trapezoid():
    percents = (10, 30, 50, 70, 90)
    # the authors' CIFAR-10 Gradients row (reference/roar_authors.csv), accuracy in percent
    acc = np.array([79.1, 81.1, 82.81, 82.26, 75.5]) / 100
    base = 0.8436
    by_hand = 0.1 * (base + acc[0]) / 2 + 0.2 * ((acc[0] + acc[1]) + (acc[1] + acc[2]) + (acc[2] + acc[3]) + (acc[3] + acc[4])) / 2
    assert roar.roar_auc(percents, acc, base) == pytest.approx(by_hand, abs=1e-12)
    # per seed, with the baseline of each seed
    two = np.stack([acc, acc / 2])
    np.testing.assert_allclose(roar.roar_auc(percents, two, np.array([base, base / 2])), [by_hand, by_hand / 2], atol=1e-12)
    with pytest.raises(ValueError, match="strictly increasing"):
        roar.roar_auc((10, 10, 50, 70, 90), acc, base)
    with pytest.raises(ValueError, match="same P"):
        roar.roar_auc((10, 30), acc, base)


def test_degrade_and_mask_only_pass_the_tie_rule_and_the_fill_on():
    from pathlib_pw.removal import removal_masks, remove_pixels

    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    tied = torch.zeros(2, 8, 8)
    tied[:, 4:] = 1.0  # half the pixels tied at 0, half at 1
    for ties, tie_seed in (("first", 0), ("last", 0), ("random", 4)):
        want = removal_masks(tied, 25, order="least", ties=ties, tie_seed=tie_seed)
        shape = roar.mask_only(x, tied, 25, "kar", ties=ties, tie_seed=tie_seed)
        assert torch.equal(shape[:, 0] == 0, want)
        got = roar.degrade(x, tied, 25, "kar", ties=ties, tie_seed=tie_seed)
        assert torch.equal(got, remove_pixels(x, tied, 25, order="least", ties=ties, tie_seed=tie_seed))
    # the index rule takes the top rows of the tied block, the reversed rule the bottom ones
    assert roar.mask_only(x, tied, 25, "kar", ties="first")[0, 0, :2].eq(0).all()
    assert roar.mask_only(x, tied, 25, "kar", ties="last")[0, 0, 2:4].eq(0).all()
    road = roar.degrade(x, tied, 25, "kar", "road", tie_seed=1, seed=[3, 4], noise=0.0)
    assert torch.equal(road, remove_pixels(x, tied, 25, order="least", fill="road", tie_seed=1, seed=[3, 4], noise=0.0))
