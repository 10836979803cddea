"""pathlib_pw.quantus_adapter: our methods as Quantus 0.6 explain functions (Quantus only for the last test)."""

from __future__ import annotations

import ast
import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import pathlib_pw
from pathlib_pw import attribution_methods as am
from pathlib_pw import quantus_adapter
from pathlib_pw.attribution import quantus as attribution_quantus
from pathlib_pw.quantus_adapter import quantus_explain_func
from tests import nets
from tests.nets import single_thread  # noqa: F401  (autouse fixture)


def test_module_does_not_import_quantus():
    for module in (quantus_adapter, attribution_quantus):  # the old home re-exports the new one
        tree = ast.parse(Path(module.__file__).read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m.split(".")[0] == "quantus"], module.__name__


def test_old_home_is_the_new_one():
    assert quantus_explain_func is attribution_quantus.quantus_explain_func is pathlib_pw.quantus_explain_func


def test_adapter_returns_what_attribute_returns():
    model = nets.tiny_cnn(seed=1, double=False)
    x = nets.images(3, seed=2, double=False)
    inputs, targets = x.numpy(), np.array([0, 4, 2])
    for name in ("gradients", "pathway_grad/neuron_mct", "sobel"):
        got = quantus_explain_func(name)(model=model, inputs=inputs, targets=targets)
        assert isinstance(got, np.ndarray) and got.shape == (3, 1, 8, 8) and got.dtype == np.float32
        np.testing.assert_array_equal(got[:, 0], am.attribute(model, x, name, target=torch.tensor(targets)).numpy())
    raw = lambda m, xs, t: xs[:, 0] * (t.view(-1, 1, 1) + 1)
    got = quantus_explain_func(raw)(model, inputs, targets, device="cpu", method="mine")
    np.testing.assert_array_equal(got[:, 0], (x[:, 0] * torch.tensor([1.0, 5.0, 3.0]).view(-1, 1, 1)).numpy())
    read_only = np.broadcast_to(inputs[:1], inputs.shape)  # Quantus may hand over views like this
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = quantus_explain_func("gradients")(model, read_only, targets)
    np.testing.assert_array_equal(got[:, 0], am.attribute(model, torch.tensor(read_only), "gradients", target=targets).numpy())


def test_adapter_float64_model_and_errors():
    model = nets.tiny_cnn(seed=1)  # float64: the images follow the model's dtype, the maps are float32
    inputs = nets.images(2, seed=3, double=False).numpy()
    got = quantus_explain_func("gradients")(model, inputs, np.array([1, 1]))
    assert got.dtype == np.float32 and got.shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="registered attribution methods"):
        quantus_explain_func("no_such_method")
    with pytest.raises(ValueError, match="method must be a registered name or a callable"):
        quantus_explain_func(3)
    explain = quantus_explain_func("sobel")
    with pytest.raises(TypeError, match=r"unknown keyword\(s\) \['steps'\]"):
        explain(model, inputs, np.array([1, 1]), steps=3)
    with pytest.raises(ValueError, match="device must be the model's device cpu"):
        explain(model, inputs, np.array([1, 1]), device="cuda")


def test_pixel_flipping_on_mobilenet_v2():
    quantus = pytest.importorskip("quantus")
    model = pathlib_pw.load_model("mobilenet_v2")
    x, _ = pathlib_pw.load_photos(["chelsea", "coffee"], size=64)
    with torch.no_grad():
        y = model(x).argmax(1).numpy()
    # Quantus checks the step against H x W but flips C x H x W features (the map broadcast over channels)
    step = 1024
    metric = quantus.PixelFlipping(
        features_in_step=step, perturb_baseline="black", disable_warnings=True, display_progressbar=False
    )
    explain, calls = quantus_explain_func("gradients"), []

    def counted(**kwargs):
        calls.append(sorted(kwargs))
        return explain(**kwargs)

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        scores = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=y,
            a_batch=None,
            explain_func=counted,
            device="cpu",
        )
    assert calls == [["device", "inputs", "model", "targets"]]
    curves = np.asarray(scores, dtype=np.float64)
    assert curves.shape == (2, 3 * 64 * 64 // step)
    assert np.isfinite(curves).all() and ((curves >= 0) & (curves <= 1)).all()  # softmax probabilities
