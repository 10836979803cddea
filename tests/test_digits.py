"""The embedded digits model: split, architecture, deterministic training, registry entries (CPU)."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch

import pathlib_pw
from pathlib_pw import data, digits, models, selection, sites, training

SHORT = digits.TrainingRecipe(epochs=1)  # determinism needs no converged model


@pytest.fixture(scope="module")
def split() -> digits.DigitsSplit:
    return digits.digits_split(0)


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_split_is_stratified_disjoint_and_complete(split):
    _, y = data.load_digits_tensors()
    train, test = split.train_index.numpy(), split.test_index.numpy()
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    assert np.all(np.diff(test) > 0) and np.all(np.diff(train) > 0)
    counts = np.bincount(y.numpy(), minlength=10)
    test_counts = np.bincount(split.y_test.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - 0.3 * counts) <= 1)
    assert np.array_equal(test_counts + np.bincount(split.y_train.numpy(), minlength=10), counts)
    assert torch.equal(split.y_test, y[split.test_index]) and torch.equal(split.y_train, y[split.train_index])
    assert split.x_train.shape == (len(train), 1, 8, 8) and split.x_test.shape == (len(test), 1, 8, 8)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64


def test_split_is_fixed_by_the_seed(split):
    again, other = digits.digits_split(0), digits.digits_split(1)
    assert torch.equal(again.test_index, split.test_index) and torch.equal(again.x_test, split.x_test)
    assert not torch.equal(other.test_index, split.test_index)
    # numpy's legacy stream is frozen: these indices hold on any machine and numpy version
    assert split.test_index[:12].tolist() == [3, 5, 7, 13, 16, 19, 22, 26, 33, 36, 38, 43]


def test_standardization_uses_training_statistics_only(split):
    x, _ = data.load_digits_tensors()
    train = x[split.train_index].double()
    assert split.mean == pytest.approx(float(train.mean()), abs=1e-12)
    assert split.std == pytest.approx(float(train.std(unbiased=False)), abs=1e-12)
    assert float(split.x_train.double().mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(split.x_train.double().std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)
    # the test images use the same statistics, not their own
    assert torch.allclose(split.x_test, (x[split.test_index] - split.mean) / split.std)
    assert abs(float(split.x_test.double().mean())) > 1e-4


def test_split_rejects_a_bad_share():
    with pytest.raises(ValueError, match="test_share"):
        digits.digits_split(0, test_share=1.0)
    with pytest.raises(ValueError, match="test_share"):
        digits.digits_split(0, test_share=0.001)


def test_the_cnn_has_relu_module_sites_and_traces():
    model = digits.DigitsCNN(seed=0).eval()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    logits, acts, names = sites.record_activations(model, x)
    assert names == ["relu1", "relu2", "relu3"]
    assert [tuple(a.shape[1:]) for a in acts] == [(16, 8, 8), (32, 8, 8), (32, 4, 4)]
    assert [n for n, _ in sites.rectifier_modules(model)] == names
    traced = torch.fx.symbolic_trace(model)
    assert torch.equal(traced(x), logits)


def test_the_seed_fixes_the_init_and_leaves_the_global_rng():
    state = torch.random.get_rng_state()
    a, b, c = digits.DigitsCNN(seed=3), digits.DigitsCNN(seed=3), digits.DigitsCNN(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert _same(_weights(a), _weights(b)) and not _same(_weights(a), _weights(c))


def test_default_recipe_reaches_95_percent(split):
    model = digits.digits_model(0)
    assert not model.training
    assert digits.accuracy(model, split.x_test, split.y_test) >= 0.95


def test_training_is_deterministic_and_leaves_global_state(split):
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    first = digits.train_digits_cnn(split.x_train, split.y_train, SHORT, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state) and torch.get_num_threads() == threads
    assert not first.training
    with selection.threads(1 if threads > 1 else 2):  # training's own thread count: the caller's does not matter
        again = digits.train_digits_cnn(split.x_train, split.y_train, SHORT, seed=5)
    other = digits.train_digits_cnn(split.x_train, split.y_train, SHORT, seed=6)
    assert _same(_weights(first), _weights(again))
    assert not _same(_weights(first), _weights(other))
    assert not _same(_weights(first), _weights(digits.DigitsCNN(seed=5)))  # it did train


def test_training_checks_its_inputs(split):
    with pytest.raises(ValueError, match="x_train"):
        digits.train_digits_cnn(split.x_train[:, :, :4], split.y_train)
    with pytest.raises(ValueError, match="y_train"):
        digits.train_digits_cnn(split.x_train, split.y_train[:-1])
    with pytest.raises(ValueError, match="y_train"):
        digits.train_digits_cnn(split.x_train[:2], torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="epochs"):
        digits.TrainingRecipe(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        digits.TrainingRecipe(lr=0.0)


def test_digits_model_is_cached_and_returns_copies(split):
    a = digits.digits_model(0)
    with torch.no_grad():
        a.fc.weight.zero_()
    b = digits.digits_model(0)
    assert not torch.equal(b.fc.weight, a.fc.weight)
    assert digits.accuracy(b, split.x_test, split.y_test) >= 0.95


def test_load_model_digits_cnn():
    assert "digits_cnn" in models.model_names()
    trained = models.load_model("digits_cnn")
    untrained = models.load_model("digits_cnn", pretrained=False, seed=0)
    assert isinstance(trained, digits.DigitsCNN) and not trained.training and not untrained.training
    assert _same(_weights(trained), _weights(digits.digits_model(0)))
    assert _same(_weights(untrained), _weights(digits.DigitsCNN(seed=0)))


def test_load_images_digits_test(split):
    x, names = data.load_images("digits_test", size=8, first=5)
    assert x.shape == (5, 1, 8, 8) and torch.equal(x, split.x_test[:5])
    assert names == [f"digits_test/{i:04d}" for i in split.test_index[:5].tolist()]
    assert names[0] == "digits_test/0003"
    x, names = data.load_images("digits_test", n_images=7, size=8)
    assert len(x) == len(names) == 7
    assert len(data.load_images("digits_test", size=8)[0]) == len(split.x_test)
    with pytest.raises(ValueError, match="size must be 8"):
        data.load_images("digits_test", size=224)


def test_reimport_keeps_the_registrations(monkeypatch):
    loader, source = models._LOADERS["digits_cnn"], data.IMAGE_SOURCES["digits_test"]
    monkeypatch.delitem(sys.modules, "pathlib_pw.digits")
    monkeypatch.setattr(pathlib_pw, "digits", digits)  # restored after the fresh import rebinds it
    fresh = importlib.import_module("pathlib_pw.digits")
    assert fresh is not digits
    assert models._LOADERS["digits_cnn"] is loader and data.IMAGE_SOURCES["digits_test"] is source


def test_training_absorbs_rounding_size_changes(monkeypatch):
    # why training runs in float64: in float32 a 1e-7 change to the initial weights moves the trained
    # weights by up to 30 % (a few hundred Adam steps amplify it); a float64 rounding-size change to
    # the inputs must leave the returned float32 weights bit-identical (another CPU's sum order: a few float32 steps)
    split = digits.digits_split()
    x = split.x_train[:300]
    y = split.y_train[:300]
    recipe = digits.TrainingRecipe(epochs=3)
    seen = set()
    real = training.F.cross_entropy
    monkeypatch.setattr(training.F, "cross_entropy", lambda logits, *a, **k: seen.add(logits.dtype) or real(logits, *a, **k))
    a = digits.train_digits_cnn(x, y, recipe)
    assert seen == {torch.float64}
    b = digits.train_digits_cnn(x.double() * (1 + 1e-15), y, recipe)
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))
    assert next(a.parameters()).dtype == torch.float32
