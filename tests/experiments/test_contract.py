"""The experiment contract: a new experiment, with its own image source and a model trained on the
fly, plugs in from its own module (here: this test) without editing inputs.py, models.py or
experiments/__init__.py's code, and is cached and verified like the book's experiments."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch
from torch import nn

from pathlib_pw import data, experiments, extract_pathways, models, output_change
from pathlib_pw.runner import cache, contract
from pathlib_pw.runner.inputs import Inputs


def _digit_images(images: tuple[str, ...], n_images: int, size: int, seed: int, first: int | None):
    x, y = data.load_digits_tensors()
    chosen = np.random.default_rng(seed).choice(len(x), n_images, replace=False)[:first]
    x = nn.functional.interpolate(x[chosen], size=size).repeat(1, 3, 1, 1)
    return (x - 0.5) / 0.5, [f"digit_{i}" for i in chosen]


def _tiny_digit_net(pretrained: bool, seed: int, device: str | torch.device) -> nn.Module:
    """A small ReLU CNN, trained for a few steps on the digits when ``pretrained``."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 16 * 16, 10))
    if pretrained:
        x, y = data.load_digits_tensors()
        x = (nn.functional.interpolate(x, size=16).repeat(1, 3, 1, 1) - 0.5) / 0.5
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        for _ in range(30):
            batch = torch.randint(len(x), (64,), generator=g)
            loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.to(device)


@dataclasses.dataclass(frozen=True)
class DigitConfig:
    inputs: Inputs = Inputs(model="tiny_digit_net", source="toy_digits", images=(), n_images=3, size=16)
    sparsity: float = 60.0


def _run(config: DigitConfig, device: str = "cpu", progress: bool = True) -> dict[str, np.ndarray]:
    model = config.inputs.load_model(device)
    x, names = config.inputs.load_images()
    from pathlib_pw import decisions

    first = config.inputs.offset  # images are numbered across windows (what verify recomputes alone)
    with decisions.images(range(first, first + len(x))), decisions.scope("neuron_mct"):
        (path,) = extract_pathways(model, x, "neuron_mct", [config.sparsity])
    return {"names": np.array(names), "realized": path.sparsity.numpy(), "output_change": output_change(model, x, path).numpy()}


@pytest.fixture
def digits_experiment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    monkeypatch.setitem(data.IMAGE_SOURCES, "toy_digits", _digit_images)
    monkeypatch.setattr(models, "_LOADERS", dict(models._LOADERS))
    models.register_model("tiny_digit_net", _tiny_digit_net)
    module = types.ModuleType("digits_experiment")
    module.config = lambda profile: DigitConfig()
    module.run = _run
    module.PER_IMAGE = {"names", "realized", "output_change"}
    monkeypatch.setattr(experiments, "EXPERIMENTS", dict(experiments.EXPERIMENTS))
    experiments.register("digits", module)
    return module


def test_a_new_source_model_and_experiment_plug_in(digits_experiment):
    assert "tiny_digit_net" in models.model_names()
    results = experiments.load_or_run("digits", "smoke", progress=False)
    assert results["realized"].shape == (3,) and np.all(results["realized"] >= 60)
    result = experiments.verify("digits", "smoke", seed=0)  # each image alone: another batch split
    assert result.ok and result.status.startswith("matches"), result.text()
    drawn = result.images[1]
    assert [c.key for c in result.replay.checks] == ["neuron_mct|0|0", f"neuron_mct|{drawn}|0"]
    assert experiments.verify("digits", "smoke", all_images=True).images == (0, 1, 2)
    # the default subset is the first images of the same draw
    part = contract.first_images(DigitConfig(), 2)
    assert part.inputs.load_images()[1] == DigitConfig().inputs.load_images()[1][:2]


def test_the_contract_names_what_a_module_lacks():
    with pytest.raises(TypeError, match=r"lacks \['run', 'PER_IMAGE'\]"):
        experiments.register("broken", types.SimpleNamespace(config=lambda p: None, __name__="broken"))
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("vgg16", _tiny_digit_net)
    with pytest.raises(ValueError, match="source must be one of"):
        data.load_images("nowhere")


def test_experiments_run_in_float32_without_tf32_and_restore_the_flags(monkeypatch):
    seen = []

    def record(config, device="cpu", progress=True):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        if config == "fail":
            raise RuntimeError("boom")
        return {}

    module = types.SimpleNamespace(config=lambda p: None, run=record, PER_IMAGE=set(), __name__="flags")
    monkeypatch.setattr(experiments, "EXPERIMENTS", dict(experiments.EXPERIMENTS))
    experiments.register("flags", module)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        experiments.run("flags", None)
        with pytest.raises(RuntimeError, match="boom"):
            experiments.run("flags", "fail")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert seen == [(False, False), (False, False)]
