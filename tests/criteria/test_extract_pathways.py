"""extract_pathways: several sparsities from one scoring equal separate extract_pathway calls."""

from __future__ import annotations

import pytest
import torch

import pathlib_pw as pw
from tests.nets import images, single_thread, tiny_cnn, tiny_resnet  # noqa: F401 (fixture)

SETUPS = [
    ("neuron_mct", "intended", {}),
    ("neuron_intgrad", "intended", {"steps": 4}),
    ("neuron_intgrad", "original_code", {"steps": 4}),
    ("greedy", "intended", {}),
    ("greedy", "original_code", {"rounds": 4}),
    ("random", "intended", {"seed": 3}),
    ("dgr", "intended", {"iterations": 6}),
    ("dead_first_random", "intended", {"seed": 3}),
    ("dead_first_activation", "intended", {}),
]


@pytest.mark.parametrize("net", [tiny_cnn, tiny_resnet])
@pytest.mark.parametrize(("method", "variant", "options"), SETUPS)
def test_several_sparsities_equal_separate_calls(net, method, variant, options):
    model = net()
    x = images(2)
    levels = [0.0, 30.0, 60.0, 85.0]
    together = pw.extract_pathways(model, x, method, levels, variant=variant, **options)
    assert len(together) == len(levels)
    for level, path in zip(levels, together):
        alone = pw.extract_pathway(model, x, method, level, variant=variant, **options)
        assert path.sites == alone.sites
        for a, b in zip(path.masks, alone.masks):
            assert torch.equal(a, b), (method, variant, level)
        assert torch.equal(path.info["requested_sparsity"], alone.info["requested_sparsity"])


def test_greedy_with_levels_off_the_step_grid_runs_each_level_alone():
    model = tiny_cnn()
    x = images(2)
    together = pw.extract_pathways(model, x, "greedy", [12.5, 40.0], step=5.0)
    for level, path in zip([12.5, 40.0], together):
        alone = pw.extract_pathway(model, x, "greedy", level, step=5.0)
        assert all(torch.equal(a, b) for a, b in zip(path.masks, alone.masks))


def test_sparsities_must_be_a_non_empty_list():
    model = tiny_cnn()
    x = images(1)
    for bad in (90, [], None):
        with pytest.raises(ValueError, match="sparsities"):
            pw.extract_pathways(model, x, "neuron_mct", bad)
