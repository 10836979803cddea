"""pathlib_pw.architectures: one record per architecture (Grad-CAM layer, sanity stages, class names,
models), known without importing the modules that define the models, and one call to add one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import pathlib_pw
from pathlib_pw import architectures, models
from pathlib_pw.architectures import ARCHITECTURES, GRADCAM_LAYERS, class_names, register_architecture
from pathlib_pw.attribution.registry import attribute
from pathlib_pw.sanity import randomization_stages
from tests import nets
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]


class ToyNet(nn.Module):
    """An architecture the package does not know: conv-relu-conv-relu-linear on (B, 3, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu2(self.conv2(self.relu1(self.conv1(x)))), 1))


class ToyNetSubclass(ToyNet):
    pass


def _toy_loader(pretrained: bool, seed: int, device: str | torch.device) -> nn.Module:
    torch.manual_seed(seed)
    return ToyNet().to(device)


@pytest.fixture
def isolated(monkeypatch):
    """The records and the model registry, restored after the test whatever it registered."""
    monkeypatch.setattr(models, "_LOADERS", dict(models._LOADERS))
    saved = dict(ARCHITECTURES)
    yield
    ARCHITECTURES.clear()
    ARCHITECTURES.update(saved)


def test_digits_cnn_loads_after_importing_the_package_alone():
    # a fresh interpreter: nothing imported pathlib_pw.digits before load_model asks for its model
    code = (
        "import sys, pathlib_pw\n"
        "assert 'pathlib_pw.digits' not in sys.modules\n"
        "assert 'digits_cnn' in pathlib_pw.models.model_names()\n"
        "model = pathlib_pw.load_model('digits_cnn')\n"
        "assert type(model).__name__ == 'DigitsCNN' and not model.training\n"
        "print('ok')\n"
    )
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_builtin_records():
    assert {name: GRADCAM_LAYERS[name] for name in ("VGG", "AlexNet", "ResNet", "MobileNetV2", "EfficientNetLite0")} == {
        "VGG": "features",
        "AlexNet": "features",
        "ResNet": "layer4",
        "MobileNetV2": "features",
        "EfficientNetLite0": "net._blocks.15",
    }
    assert GRADCAM_LAYERS["DigitsCNN"] == "relu3" and GRADCAM_LAYERS["ResNet8"] == "layer3"
    assert sorted(name for name, record in ARCHITECTURES.items() if record.stages) == ["EfficientNetLite0", "MobileNetV2", "ResNet"]
    assert ARCHITECTURES["DigitsCNN"].models == ("digits_cnn",)
    from pathlib_pw.saliency import GRADCAM_LAYERS as old  # pathlib_pw.saliency is the function

    assert old is GRADCAM_LAYERS  # the old name edits the records


def test_class_names():
    mobilenet = models.load_model("mobilenet_v2", pretrained=False)
    names = class_names(mobilenet)
    assert names is not None and len(names) == 1000 and names[281] == "tabby"
    assert class_names(models.load_model("digits_cnn", pretrained=False)) == [str(d) for d in range(10)]
    assert class_names(nets.tiny_cnn()) is None


def test_one_call_adds_an_architecture(isolated):
    stages = [("fc", ("fc",)), ("conv2", ("conv2",)), ("conv1", ("conv1",))]
    record = register_architecture(
        ToyNet, gradcam_layer="relu2", stages=stages, class_names=["a", "b", "c"], models={"toy_net": _toy_loader}
    )
    assert record.name == "ToyNet" and record.models == ("toy_net",)
    model = pathlib_pw.load_model("toy_net")
    assert isinstance(model, ToyNet) and not model.training
    assert randomization_stages(model) == stages
    assert class_names(model) == ["a", "b", "c"]
    x = nets.images(2, seed=1, double=False, shape=(3, 8, 8))
    # Grad-CAM's default layer is the record's: the same map as naming the layer
    torch.testing.assert_close(attribute(model, x, "gradcam"), attribute(model, x, "gradcam", layer="relu2"), rtol=0, atol=0)
    # a subclass inherits the record
    sub = ToyNetSubclass()
    assert randomization_stages(sub) == stages and class_names(sub) == ["a", "b", "c"]
    # the same record again is a no-op (a notebook cell re-run); another one needs replace=True
    assert register_architecture("ToyNet", gradcam_layer="relu2", stages=stages, class_names=["a", "b", "c"], models={"toy_net": _toy_loader}) == record
    with pytest.raises(ValueError, match="architecture 'ToyNet' is already registered"):
        register_architecture("ToyNet", gradcam_layer="relu1")
    assert register_architecture("ToyNet", gradcam_layer="relu1", replace=True).gradcam_layer == "relu1"


def test_without_a_record_the_errors_name_what_to_pass(isolated):
    model = ToyNet()
    x = nets.images(1, seed=1, double=False, shape=(3, 8, 8))
    with pytest.raises(ValueError, match="layer must name the Grad-CAM layer of ToyNet"):
        attribute(model, x, "gradcam")
    with pytest.raises(ValueError, match="no default randomization stages for ToyNet"):
        randomization_stages(model)
    assert class_names(model) is None


def test_gradcam_layers_is_a_view_of_the_records(isolated):
    GRADCAM_LAYERS["ToyNet"] = "relu1"  # what old code (cifar10, digits before) did
    assert ARCHITECTURES["ToyNet"] == architectures.Architecture("ToyNet", gradcam_layer="relu1")
    assert GRADCAM_LAYERS.setdefault("ToyNet", "relu2") == "relu1"
    assert "ToyNet" in GRADCAM_LAYERS and "ToyNet" in list(GRADCAM_LAYERS) and len(GRADCAM_LAYERS) == len(list(GRADCAM_LAYERS))
    del GRADCAM_LAYERS["ToyNet"]
    assert "ToyNet" not in ARCHITECTURES and "ToyNet" not in GRADCAM_LAYERS  # an empty record goes
    register_architecture("ToyNet", gradcam_layer="relu2", stages=[("fc", ("fc",))])
    del GRADCAM_LAYERS["ToyNet"]
    assert ARCHITECTURES["ToyNet"].gradcam_layer is None and ARCHITECTURES["ToyNet"].stages is not None  # the rest stays
    with pytest.raises(KeyError):
        del GRADCAM_LAYERS["ToyNet"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name must be a class or a non-empty class name"),
        ({"name": "ToyNet", "gradcam_layer": 3}, "gradcam_layer must be a submodule name"),
        ({"name": "ToyNet", "stages": [("fc", "fc", "x")]}, "stages must be"),
        ({"name": "ToyNet", "class_names": "abc"}, "class_names must be a sequence of str"),
        ({"name": "ToyNet", "models": {"toy_net": 3}}, "models must map model names to loaders"),
        ({"name": "ToyNet", "models": {"vgg16": _toy_loader}}, "a model named 'vgg16' is already registered"),
    ],
)
def test_bad_input(isolated, kwargs, message):
    with pytest.raises(ValueError, match=message):
        register_architecture(**kwargs)
    assert "ToyNet" not in ARCHITECTURES


def test_gradcam_layer_of_follows_the_class_hierarchy():
    from torchvision.models.resnet import BasicBlock, ResNet

    from pathlib_pw.architectures import gradcam_layer_of

    class MyResNet(ResNet):  # a subclass of torchvision's ResNet: the parent's record applies
        pass

    assert gradcam_layer_of(ResNet(BasicBlock, [1, 1, 1, 1])) == GRADCAM_LAYERS["ResNet"] == "layer4"
    assert gradcam_layer_of(MyResNet(BasicBlock, [1, 1, 1, 1])) == "layer4"
    assert gradcam_layer_of(nn.Linear(2, 2)) is None
