"""Tiny deterministic test networks for the criteria tests.

Every net takes images of shape (B, 3, 8, 8) (``HandNet``: (B, 2, 1, 1)) and is built in eval mode
with a seeded init that does not touch the global RNG. ``double=True`` returns a float64 copy, which
makes batched and per-image computations agree to ~1e-15 so that masks can be compared exactly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathlib_pw.selection import threads

IMAGE_SHAPE = (3, 8, 8)


def _finish(model: nn.Module, seed: int, double: bool) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1000)
        # non-trivial but deterministic BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features))
                m.running_var.copy_(0.5 + torch.rand(m.num_features))
                m.weight.data.copy_(1.0 + 0.2 * torch.randn(m.num_features))
                m.bias.data.copy_(0.1 * torch.randn(m.num_features))
    model.eval()
    return model.double() if double else model


class TinyCNN(nn.Module):
    """conv-ReLU-conv-ReLU-pool-fc-ReLU-fc, every ReLU in-place and its own module (3 sites).

    Sites: relu1 (4, 8, 8), relu2 (6, 4, 4), relu3 (10,): 362 neurons. 5 classes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(24, 10)
        self.relu3 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(10, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = torch.flatten(self.pool(x), 1)
        x = self.relu3(self.fc1(x))
        return self.fc2(x)


class TinyResNet(nn.Module):
    """A two-block residual net that calls ONE in-place ``relu`` module 5 times per forward.

    Registration order (= order of first call): ``relu`` then ``head_relu``, so 2 rectifier modules
    and 6 call sites: relu#0 (stem), relu#1, relu#2 (block 1), relu#3, relu#4 (block 2), head_relu.
    Site shapes: (4, 8, 8) x 5 and (8,); 1288 neurons. 6 classes. BatchNorm in every conv branch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.a1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn_a1 = nn.BatchNorm2d(4)
        self.b1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn_b1 = nn.BatchNorm2d(4)
        self.a2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn_a2 = nn.BatchNorm2d(4)
        self.b2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn_b2 = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(4, 8)
        self.head_relu = nn.ReLU()
        self.fc2 = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.stem(x)))
        identity = x
        out = self.relu(self.bn_a1(self.a1(x)))
        out = self.bn_b1(self.b1(out))
        out += identity
        x = self.relu(out)
        identity = x
        out = self.relu(self.bn_a2(self.a2(x)))
        out = self.bn_b2(self.b2(out))
        out += identity
        x = self.relu(out)
        x = torch.flatten(self.pool(x), 1)
        x = self.head_relu(self.fc1(x))
        return self.fc2(x)


class TinyReLU6Net(nn.Module):
    """conv-ReLU6-conv-ReLU6-pool-fc with large weights, so many neurons saturate at 6 (zero gradient).

    Sites: act1 (4, 8, 8), act2 (4, 4, 4): 320 neurons. 7 classes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act1 = nn.ReLU6()
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.act2 = nn.ReLU6(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class NoReuseNet(nn.Module):
    """Like TinyResNet but every call has its own ReLU module (no reuse): 4 modules, 4 sites."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.r0 = nn.ReLU(inplace=True)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.r1 = nn.ReLU(inplace=True)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.r2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(16, 8)
        self.r3 = nn.ReLU()
        self.fc2 = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.r0(self.stem(x))
        out = self.r1(self.a(x))
        out = self.b(out) + x
        x = self.r2(out)
        x = torch.flatten(self.pool(x), 1)
        return self.fc2(self.r3(self.fc1(x)))


class HandNet(nn.Module):
    """Flatten -> Linear(2,3) -> ReLU -> Linear(3,3) -> ReLU -> Linear(3,2), weights chosen by hand.

    For x = (1, 2) (shape (1, 2, 1, 1)):
        h1 = W1 x = (1, 2, -1)              a1 = (1, 2, 0)
        h2 = W2 a1 + b2 = (2, 2.5, -1)      a2 = (2, 2.5, 0)
        logits = W3 a2 + b3 = (7, 0.5)      prediction: class 0
    """

    W1 = [[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]
    W2 = [[1.0, 1.0, 0.0], [0.5, 1.0, 1.0], [-1.0, 0.0, 1.0]]
    B2 = [-1.0, 0.0, 0.0]
    W3 = [[1.0, 2.0, 3.0], [-1.0, 1.0, 0.0]]

    def __init__(
        self, b3: tuple[float, float] = (0.0, 0.0), w3: list[list[float]] | None = None, act2: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(3, 3)
        self.relu2 = act2()
        self.fc3 = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor(self.W1))
            self.fc2.weight.copy_(torch.tensor(self.W2))
            self.fc2.bias.copy_(torch.tensor(self.B2))
            self.fc3.weight.copy_(torch.tensor(self.W3 if w3 is None else w3))
            self.fc3.bias.copy_(torch.tensor(b3))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.fc1(self.flatten(x)))
        x = self.relu2(self.fc2(x))
        return self.fc3(x)


class ConvReLU(nn.Module):
    """A conv followed by ``F.relu(..., inplace=True)``, like torchvision Inception's ``BasicConv2d``."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inputs, outputs, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x), inplace=True)


class MixedNet(nn.Module):
    """Rectifier modules and functional rectifier calls mixed: 8 sites, 1300 neurons, 5 classes.

    Sites in forward order: ``stem/relu`` (4, 8, 8), F.relu in place in a submodule; ``act#0``
    (4, 8, 8), an in-place ``nn.ReLU`` module used twice; ``block/relu#0``, ``block/relu#1`` (4, 8, 8),
    one submodule called twice; ``/relu#0`` (4, 8, 8), ``torch.relu_`` in the net's own forward
    (``statement=True``: ``h.relu_()`` with its result ignored, the next layer reading ``h``);
    ``/relu6`` (8,), ``F.relu6``; ``/relu#1`` (6,), ``Tensor.relu``; ``act#1`` (6,).
    """

    SITES = ["stem/relu", "act#0", "block/relu#0", "block/relu#1", "/relu#0", "/relu6", "/relu#1", "act#1"]
    SHAPES = [(4, 8, 8)] * 5 + [(8,), (6,), (6,)]

    def __init__(self, statement: bool = False) -> None:
        super().__init__()
        self.statement = statement
        self.stem = ConvReLU(3, 4)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.block = ConvReLU(4, 4)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, 6)
        self.fc3 = nn.Linear(6, 6)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(self.stem(x)))
        skip = h
        h = self.block(self.block(h)) - skip
        if self.statement:
            h.relu_()
        else:
            h = torch.relu_(h)
        h = torch.flatten(self.pool(h), 1)
        h = F.relu6(self.fc1(h))
        h = self.fc2(h).relu()
        return self.head(self.act(self.fc3(h)))

    def literal_forward(self, x: torch.Tensor, site) -> torch.Tensor:
        """The same forward written out with ``torch.nn.functional``: no module called, nothing in place.

        ``site(name, rectifier output)`` returns what the rest of the network sees; names without ``#k``.
        """

        def conv(layer: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
            return F.conv2d(h, layer.weight, layer.bias, padding=1)

        def linear(layer: nn.Linear, h: torch.Tensor) -> torch.Tensor:
            return F.linear(h, layer.weight, layer.bias)

        h = site("stem/relu", F.relu(conv(self.stem.conv, x)))
        h = site("act", F.relu(conv(self.conv, h)))
        skip = h
        h = site("block/relu", F.relu(conv(self.block.conv, h)))
        h = site("block/relu", F.relu(conv(self.block.conv, h)))
        h = site("/relu", F.relu(h - skip))
        h = torch.flatten(F.adaptive_avg_pool2d(h, 2), 1)
        h = site("/relu6", F.relu6(linear(self.fc1, h)))
        h = site("/relu", F.relu(linear(self.fc2, h)))
        h = site("act", F.relu(linear(self.fc3, h)))
        return linear(self.head, h)


def hand_input(double: bool = True, values: tuple[float, float] = (1.0, 2.0)) -> torch.Tensor:
    x = torch.tensor(values).view(1, 2, 1, 1)
    return x.double() if double else x


def make(cls: type[nn.Module], seed: int = 0, double: bool = True) -> nn.Module:
    """A seeded instance of ``cls`` (global RNG untouched), eval mode, float64 by default."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls()
        if isinstance(model, TinyReLU6Net):
            with torch.no_grad():
                model.conv1.weight.mul_(6.0)
                model.conv2.weight.mul_(4.0)
    return _finish(model, seed, double)


def tiny_cnn(seed: int = 0, double: bool = True) -> nn.Module:
    return make(TinyCNN, seed, double)


def tiny_resnet(seed: int = 0, double: bool = True) -> nn.Module:
    return make(TinyResNet, seed, double)


def tiny_relu6(seed: int = 0, double: bool = True) -> nn.Module:
    return make(TinyReLU6Net, seed, double)


def no_reuse_net(seed: int = 0, double: bool = True) -> nn.Module:
    return make(NoReuseNet, seed, double)


def mixed_net(seed: int = 0, double: bool = True, statement: bool = False) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MixedNet(statement)
    return _finish(model, seed, double)


def images(batch: int, seed: int = 0, double: bool = True, shape: tuple[int, ...] = IMAGE_SHAPE, scale: float = 1.0) -> torch.Tensor:
    """``batch`` seeded standard-normal images (global RNG untouched)."""
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(batch, *shape, generator=g, dtype=torch.float64)
    return x if double else x.float()


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Run a test module with one intra-op thread, restoring the setting afterwards.

    The tensors here are tiny: a second OpenMP thread gains nothing and, on a busy 2-core machine,
    its spin-waiting makes every forward pass tens of times slower.
    """
    with threads(1):
        yield
