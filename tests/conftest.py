"""Shared fixtures for test_sites / test_pathway / test_saliency / test_metrics.

Everything a test needs as an independent reference lives here: a tiny network whose forward pass
can also be written out by hand (so masked forwards and gradients are computed literally, without
any of pathlib_pw's hooks), helpers that inspect hooks and training modes, and session-scoped models.
"""

from __future__ import annotations

import socket
import types
import urllib.request

import numpy as np
import pytest
import torch
import torch.hub
import torch.nn.functional as F
from torch import nn

import pathlib_pw
from pathlib_pw.criteria.checks import recorded_by_experiment


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pathway_checks: run with extract_pathways' warnings and empty-path error on")


@pytest.fixture(autouse=True)
def _pathway_checks_off(request: pytest.FixtureRequest):
    """Most tests compare masks with literal references on tiny nets, where high sparsities disconnect
    the output and the paper's rule overshoots on purpose: they run as the experiments do, with the
    checks of :mod:`pathlib_pw.criteria.checks` off. tests/criteria/test_checks.py turns them on."""
    if request.node.get_closest_marker("pathway_checks"):
        yield
        return
    with recorded_by_experiment():
        yield


class _TinyNet(nn.Module):
    """conv-bn-act (module ``act`` reused later) -> conv-act2 -> flatten -> fc1-act -> fc2.

    Input (B, 3, 8, 8). Sites in forward order: act#0 (4,8,8), act2 (5,4,4), act#1 (6,).
    With ``reuse=False`` the third rectifier is its own module ``act3`` (sites act, act2, act3).
    """

    def __init__(self, act: type[nn.Module] = nn.ReLU, inplace: bool = True, reuse: bool = True, classes: int = 3):
        super().__init__()
        self.reuse = reuse
        self.act_type = act
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.act = act(inplace=inplace)
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.act2 = act(inplace=inplace)
        self.fc1 = nn.Linear(5 * 4 * 4, 6)
        if not reuse:
            self.act3 = act(inplace=inplace)
        self.fc2 = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act2(self.conv2(x))
        x = torch.flatten(x, 1)
        x = (self.act if self.reuse else self.act3)(self.fc1(x))
        return self.fc2(x)


def make_tiny(act: type[nn.Module] = nn.ReLU, inplace: bool = True, reuse: bool = True, seed: int = 0,
              classes: int = 3, scale: float = 1.0) -> _TinyNet:
    """A seeded tiny net in eval mode with non-trivial BatchNorm statistics.

    ``scale`` multiplies every weight and bias (e.g. 6 makes ReLU6 saturate at some neurons).
    """
    g = torch.Generator().manual_seed(seed)
    net = _TinyNet(act, inplace, reuse, classes)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 * scale)
        net.bn1.running_mean.copy_(torch.randn(4, generator=g) * 0.2)
        net.bn1.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    return net.eval()


def tiny_manual(net: _TinyNet, x: torch.Tensor, masks=None, rect=None, keep: list | None = None) -> torch.Tensor:
    """The tiny net's forward written out with torch.nn.functional, eval-mode BN, no modules called.

    ``masks``: optional list of 3 tensors (broadcastable to each site's output) multiplied onto the
    rectifier outputs. ``rect``: the rectifier function (default relu / relu6 by the net's type).
    ``keep``: if a list, the (masked) site outputs are appended to it (for gradients w.r.t. sites).
    """
    if rect is None:
        rect = F.relu6 if net.act_type is nn.ReLU6 else F.relu
    bn = net.bn1
    h = F.conv2d(x, net.conv1.weight, net.conv1.bias, padding=1)
    h = (h - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    h = h * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    outs = []

    def site(i: int, t: torch.Tensor) -> torch.Tensor:
        a = rect(t)
        if masks is not None:
            a = a * masks[i].to(a.dtype)
        outs.append(a)
        return a

    h = site(0, h)
    h = site(1, F.conv2d(h, net.conv2.weight, net.conv2.bias, stride=2, padding=1))
    h = torch.flatten(h, 1)
    h = site(2, F.linear(h, net.fc1.weight, net.fc1.bias))
    if keep is not None:
        keep.extend(outs)
    return F.linear(h, net.fc2.weight, net.fc2.bias)


TINY_SHAPES = [(4, 8, 8), (5, 4, 4), (6,)]


def hook_counts(model: nn.Module) -> list[tuple[int, int, int, int]]:
    """Per module: numbers of forward, forward-pre, backward and backward-pre hooks."""
    return [
        (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), len(m._backward_pre_hooks))
        for m in model.modules()
    ]


def no_hooks(model: nn.Module) -> bool:
    return all(c == (0, 0, 0, 0) for c in hook_counts(model))


def modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def set_mixed_modes(model: nn.Module) -> list[bool]:
    """Put alternate submodules in train/eval mode (deterministically) and return the flags."""
    for i, m in enumerate(model.modules()):
        m.training = bool(i % 2)
    return modes(model)


def param_snapshot(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def ref_reduce(attr: torch.Tensor) -> torch.Tensor:
    """Literal max-abs-over-channels reduction (first channel wins ties) and per-image normalization."""
    a = attr.detach().double().cpu().numpy()
    best = a[:, 0]
    for ch in range(1, a.shape[1]):
        best = np.where(np.abs(a[:, ch]) > np.abs(best), a[:, ch], best)
    peak = np.abs(best).reshape(best.shape[0], -1).max(1)
    peak = np.where(peak > 0, peak, 1.0)
    return torch.from_numpy(best / peak[:, None, None])


@pytest.fixture
def tiny():
    """Namespace with the tiny-net factory and its literal forward."""
    return types.SimpleNamespace(make=make_tiny, manual=tiny_manual, shapes=TINY_SHAPES, reduce=ref_reduce)


@pytest.fixture
def tools():
    return types.SimpleNamespace(
        hook_counts=hook_counts, no_hooks=no_hooks, modes=modes, set_mixed_modes=set_mixed_modes,
        params=param_snapshot,
    )


@pytest.fixture(scope="session")
def resnet18():
    return pathlib_pw.load_model("resnet18", pretrained=False, seed=1)


@pytest.fixture(scope="session")
def resnet50():
    return pathlib_pw.load_model("resnet50", pretrained=False, seed=2)


@pytest.fixture(scope="session")
def vgg16():
    return pathlib_pw.load_model("vgg16", pretrained=False, seed=3)


@pytest.fixture(scope="session")
def mobilenet_random():
    return pathlib_pw.load_model("mobilenet_v2", pretrained=False, seed=4)


@pytest.fixture(scope="session")
def efficientnet_random():
    return pathlib_pw.load_model("efficientnet_lite0", pretrained=False)


@pytest.fixture(scope="session")
def mobilenet_pretrained():
    return pathlib_pw.load_model("mobilenet_v2")


@pytest.fixture(scope="session")
def chelsea():
    x, names = pathlib_pw.load_photos(["chelsea"])
    return x


class NetworkCalled(AssertionError):
    pass


def block_network(mp: pytest.MonkeyPatch, calls: list[str]) -> None:
    """Make every way out to the network (sockets, urlopen, torch hub downloads) record and raise."""
    def refuse(what: str):
        def f(*args, **kwargs):
            calls.append(what)
            raise NetworkCalled(f"network access attempted: {what}")

        return f

    mp.setattr(socket.socket, "connect", refuse("socket.connect"))
    mp.setattr(socket, "create_connection", refuse("socket.create_connection"))
    mp.setattr(urllib.request, "urlopen", refuse("urlopen"))
    mp.setattr(torch.hub, "download_url_to_file", refuse("torch.hub.download_url_to_file"))


@pytest.fixture
def net_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    block_network(monkeypatch, calls)
    return calls


def randn(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A seeded standard-normal tensor (global RNG untouched)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def literal_input_grad(forward, x: torch.Tensor, target) -> torch.Tensor:
    """d forward(x)[i, target[i]] / dx for every image, by plain autograd."""
    xi = x.detach().clone().requires_grad_(True)
    out = forward(xi)
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), torch.as_tensor(target)].sum(), xi)
    return g


@pytest.fixture
def book_results(monkeypatch):
    """Load a committed book cache by experiment name (the repository's, whatever the environment
    says); skip when it is not current (tests/experiments/test_book_cache.py fails then)."""
    from pathlib_pw import experiments
    from pathlib_pw.runner import cache

    monkeypatch.delenv(cache.RESULTS_ENV, raising=False)

    def load(name: str):
        directory = cache.results_root() / "book" / name
        if not cache.is_current(directory, name, experiments.get_config(name, "book")):
            pytest.skip(f"no current book cache for {name}")
        return cache.load(directory)

    return load
