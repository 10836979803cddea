"""pathlib_pw.criteria.downstream: the fx split finds the run-time sites (modules and functional calls) under the
run-time names, and the part after each site, fed the site's activation, reproduces the model."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from pathlib_pw.criteria.downstream import Split, split_for
from pathlib_pw.sites import record_activations
from tests import nets
from tests.nets import single_thread  # noqa: F401  (autouse fixture)


def _check_parts(model: torch.nn.Module, x: torch.Tensor, every: int = 1, **tol: float) -> Split:
    split = Split(model)
    logits, _, names = record_activations(model, x)
    assert split.names == names
    values = split.upstream_values(x)
    for s in range(0, len(names), every):
        act = split.activation(values, s)
        assert split.tileable(values, s) and split.downstream[s][0] is not None, names[s]
        torch.testing.assert_close(split.run(s, values, act, 1), logits, **tol)
        # two copies along the batch, the upstream values tiled to match
        doubled = split.run(s, values, torch.cat([act, act]), 2)
        torch.testing.assert_close(doubled, torch.cat([logits, logits]), **tol)
        split.verify(s, doubled[: len(x)], logits)
    return split


def test_mixed_net_parts_reproduce_the_model():
    split = _check_parts(nets.mixed_net(), nets.images(2))
    assert [n.op for n in split.site_nodes] == [
        "call_function", "call_module", "call_function", "call_function", "call_function", "call_function",
        "call_method", "call_module",
    ]


def test_module_nets_parts_reproduce_the_model():
    for make in (nets.tiny_resnet, nets.tiny_cnn, nets.tiny_relu6):
        _check_parts(make(), nets.images(2))


def test_inception_v3_functional_sites():
    """torchvision Inception v3: 94 ``F.relu(..., inplace=True)`` calls, each in a ``BasicConv2d``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    x = torch.randn(1, 3, 75, 75, generator=torch.Generator().manual_seed(0))
    split = _check_parts(model, x, every=9, rtol=1e-4, atol=1e-5)
    assert len(split.names) == 94
    assert split.names[0] == "Conv2d_1a_3x3/relu" and "Mixed_5b.branch1x1/relu" in split.names


def test_in_place_call_read_afterwards_cannot_be_split():
    model = nets.mixed_net(statement=True)
    with pytest.raises(ValueError, match="reads 'sub' after the in-place rectifier 'relu_'"):
        Split(model)
    with pytest.warns(UserWarning, match="torch.fx cannot split"):
        assert split_for(model, nets.MixedNet.SITES, strict=False) is None
    with pytest.raises(RuntimeError, match="recompute='downstream'.*in-place rectifier"):  # also once cached
        split_for(model, nets.MixedNet.SITES, strict=True)


def test_split_for_caches_and_checks_the_names():
    model = nets.mixed_net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = split_for(model, nets.MixedNet.SITES, strict=True)
        assert split is not None and split_for(model, nets.MixedNet.SITES, strict=False) is split
    assert split_for(model, nets.MixedNet.SITES[:-1], strict=False) is None
    with pytest.raises(RuntimeError, match="other rectifier sites"):
        split_for(model, nets.MixedNet.SITES[:-1], strict=True)
    model.head = torch.nn.Linear(6, 5).double()  # a changed submodule: traced again
    assert split_for(model, nets.MixedNet.SITES, strict=True) is not split
