"""The sanity-check experiment: cumulative cascade, measured stages, the slices verify compares, tables."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import torch

from pathlib_pw import load_model, load_photos
from pathlib_pw.experiments import sanity
from pathlib_pw.runner.contract import first_images
from pathlib_pw.runner.inputs import Inputs
from pathlib_pw.saliency import saliency
from pathlib_pw.sanity import SIMILARITY_METRICS, randomization_stages, randomized, similarity

SMALL = sanity.Config(
    inputs=Inputs(images=("chelsea", "coffee"), size=32),
    methods=("Gradients", "GBP"),
    measure_at=("last_conv", "block_10"),
    independent=("block_12",),
    example_stages=("original", "block_10"),
    example_images=1,
)


@pytest.fixture(scope="module")
def small_run():
    return sanity.run(SMALL, progress=False)


def _maps_with(model, x, target, stages):
    with contextlib.ExitStack() as stack:
        for _, modules in stages:
            stack.enter_context(randomized(model, modules, SMALL.seed, SMALL.std))
        return {m: saliency(model, x, m, target=target) for m in ("gradients", "guided_backprop")}


def test_cascade_is_cumulative_and_measured_only_where_asked(small_run):
    assert small_run["stages"].tolist() == ["original", "last_conv", "block_10"]
    model = load_model("mobilenet_v2")
    x, _ = load_photos(list(SMALL.inputs.images), size=32)  # the same batch as the run: float sums depend on it
    with torch.no_grad():
        target = model(x).argmax(1)
    trained = _maps_with(model, x, target, [])
    stages = randomization_stages(model)
    labels = [label for label, _ in stages]
    # after block_10: every stage from the classifier down to block_10 randomized, not only the measured ones
    down_to = _maps_with(model, x, target, stages[: labels.index("block_10") + 1])
    alone = _maps_with(model, x, target, [stages[labels.index("block_12")]])
    for i in range(len(x)):
        for m, method in enumerate(("gradients", "guided_backprop")):
            expected = similarity(trained[method][i], down_to[method][i])
            got = small_run["cascading"][i, 2, m]
            np.testing.assert_allclose(got, [expected[k] for k in SIMILARITY_METRICS], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(small_run["example_maps"][0, 1, m], down_to[method][0].numpy(), atol=2e-3)
        expected = similarity(trained["gradients"][i], alone["gradients"][i])
        got = small_run["independent"][i, 0, 0]
        np.testing.assert_allclose(got, [expected[k] for k in SIMILARITY_METRICS], rtol=1e-4, atol=1e-5)
    assert np.all(small_run["cascading"][:, 0] == 1.0)  # the trained map against itself


@pytest.mark.parametrize("which", ["verify_subset", "subset"])
def test_parts_recompute_the_slices_cached_part_takes(small_run, which):
    part = (sanity.verify_subset if which == "verify_subset" else first_images)(SMALL, 1)
    assert part.inputs.load_images()[1] == ["chelsea"]
    if which == "verify_subset":  # the first image, the first measured stage, the first independent stage
        assert part.depth == 1 and part.independent == ("block_12",)
    else:  # the first image, everything else as configured
        assert part.depth is None
    fresh = sanity.run(part, progress=False)
    expected = sanity.cached_part(small_run, part)
    assert set(fresh) == set(expected)
    for key, value in fresh.items():
        assert value.shape == expected[key].shape, key
        if value.dtype.kind == "f":
            np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=2e-3, err_msg=key)
        else:
            np.testing.assert_array_equal(value, expected[key], err_msg=key)
    stages = ["original", "last_conv"] if which == "verify_subset" else ["original", "last_conv", "block_10"]
    assert fresh["stages"].tolist() == stages


def test_unknown_stage_names_are_rejected():
    with pytest.raises(ValueError, match="measure_at"):
        sanity.run(dataclasses.replace(SMALL, measure_at=("bottleneck_3",)), progress=False)


def test_also_at_columns_equal_a_run_at_that_sparsity():
    """The PathwayGrad columns of ``also_at`` are exactly what a run with that sparsity computes (the
    scores are shared, the thresholds are not); the baselines are computed once and shared."""
    base = dataclasses.replace(
        SMALL, methods=("Gradients", "NeuronMCT"), measure_at=("last_conv",), independent=(), example_stages=("original",)
    )
    both = sanity.run(dataclasses.replace(base, also_at=(50.0,)), progress=False)
    alone = sanity.run(dataclasses.replace(base, sparsity=50.0), progress=False)
    assert both["methods"].tolist() == ["Gradients", "NeuronMCT", "NeuronMCT @ 50 %"]
    np.testing.assert_allclose(both["cascading"][:, :, 2], alone["cascading"][:, :, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(both["cascading"][:, :, 0], alone["cascading"][:, :, 0])
    assert not np.allclose(both["cascading"][:, 1, 1], both["cascading"][:, 1, 2])  # 70 % is another map
    for bad in ((70.0,), (50.0, 50.0), (100.0,)):
        with pytest.raises(ValueError, match="also_at"):
            sanity.run(dataclasses.replace(base, also_at=bad), progress=False)


def test_book_profiles_share_photos_stages_and_sparsities():
    from pathlib_pw.experiments import get_config

    trained, own = get_config("sanity", "book"), get_config("sanity_own_class", "book")
    assert len(trained.inputs.images) == 9 and trained.inputs.images == own.inputs.images
    assert trained.measure_at == own.measure_at == sanity.MEASURE_AT
    assert (trained.sparsity, trained.also_at) == (own.sparsity, own.also_at) == (70.0, (sanity.OPERATING_POINT,))
    assert (trained.explained_class, own.explained_class) == ("trained", "randomized")
