"""The decoding sweep: its measures against hand-computed values, the start image, the rule's table,
and a small run (shapes, controls, what verify recomputes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pathlib_pw import decoding as dec
from pathlib_pw.experiments import decoding_sweep as sweep
from pathlib_pw.experiments import decoding_tables as tables
from pathlib_pw.experiments.decoding import ORIGINAL
from pathlib_pw.metrics import map_concentration
from pathlib_pw.runner.inputs import Inputs

SMALL = sweep.Config(
    inputs=Inputs(images=("coffee", "grace_hopper"), size=64),
    sparsities=(50.0, 90.0),
    paths=(ORIGINAL, "NeuronIntGrad", "NeuronMCT", "Greedy", sweep.RANDOM),
    criteria=sweep.sweep_criteria(dgr_iterations=3, dgr_retries=1, greedy_rounds=3),
    param_size=32,
    steps=12,
)


@pytest.fixture(scope="module")
def small_run():
    return sweep.run(SMALL, progress=False)


def test_region_share_and_concentration_by_hand():
    start = np.full((4, 4, 3), 0.5)
    image = start.copy()
    image[0, 0] += [0.3, 0.0, 0.0]  # 0.3 of change in the top-left pixel
    image[3, 3] -= [0.1, 0.0, 0.0]  # 0.1 in the bottom-right one
    change = sweep.change_map(image[None], start)
    region = np.zeros((4, 4))
    region[:2, :2] = 1.0
    assert sweep.region_share(change, region)[0] == pytest.approx(0.75)
    assert map_concentration(change, share=1 / 16)[0] == pytest.approx(0.75)  # the top pixel of 16
    assert np.isnan(sweep.region_share(np.zeros((1, 4, 4)), region)[0])  # nothing changed
    assert np.isnan(map_concentration(np.zeros((1, 4, 4)))[0])


def test_box_region_covers_the_box_on_any_grid():
    left, top, right, bottom = sweep.OBJECT_BOXES["grace_hopper"]
    area = (right - left) * (bottom - top) / 224**2
    for side in (224, 128, 32):
        assert sweep.box_region("grace_hopper", 224, side).mean() == pytest.approx(area, abs=0.01)
    region = sweep.box_region("grace_hopper", 224, 224)
    assert region[top, left] == 1.0 and region[top - 1, left] == 0.0 and region[bottom - 1, right - 1] == 1.0


def test_gradcam_region_is_half_the_maximum_and_refuses_an_empty_map():
    cam = torch.zeros(8, 8)
    cam[:2, :4] = 1.0
    cam[2, 0] = 0.4
    assert sweep.gradcam_region(cam, 8).sum() == 8
    with pytest.raises(ValueError, match="zero everywhere"):
        sweep.gradcam_region(torch.zeros(8, 8), 8)


def test_start_image_is_where_a_render_starts():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    param = dec.Parameterization(size=16)
    barely = dec.render(model, dec.logit(1), None, input_size=16, parameterization=param, steps=1, lr=1e-9, seed=5, progress=False)
    np.testing.assert_allclose(dec.start_image(param, 5), barely[0], atol=1e-6)
    assert not np.allclose(dec.start_image(param, 5), dec.start_image(param, 6))


def _hand_results(box, top, change=None):
    """Two photos, one sparsity, paths: original, the two contribution paths, two rivals."""
    labels = ["Original network", "NeuronIntGrad", "NeuronMCT", "Greedy", "Random"]
    box, top = np.asarray(box, dtype=float)[:, None, :], np.asarray(top, dtype=float)[:, None, :]
    return {
        "paths": np.array(labels),
        "sparsities": np.array([50.0]),
        "region_box": np.zeros((2, 4, 4)),
        "region_gradcam": np.zeros((2, 4, 4)),
        "box_share": box,
        "gradcam_share": box,
        "concentration": top,
        "change": np.ones_like(box) if change is None else np.asarray(change, dtype=float)[:, None, :],
    }


def test_sweep_wins_needs_both_measures_on_every_photo():
    box = [[0.0, 0.5, 0.6, 0.4, 0.1], [0.0, 0.3, 0.4, 0.2, 0.1]]
    top = [[0.1, 0.3, 0.4, 0.2, 0.1], [0.1, 0.3, 0.3, 0.2, 0.25]]
    wins = tables.sweep_wins(_hand_results(box, top))
    # photo by photo: 0.5 - 0.4 on the first, 0.3 - 0.2 on the second: both 0.1
    assert wins.loc[50.0, "box_excess margin"] == pytest.approx(0.1)
    assert wins.loc[50.0, "concentration margin"] == pytest.approx(0.3 - 0.25)  # the second photo's Random
    assert wins.loc[50.0, "contribution paths win"] and wins.loc[50.0, "box_excess best rival"] == "Greedy"
    box[0][3] = 0.55  # Greedy beats NeuronIntGrad on the first photo
    wins = tables.sweep_wins(_hand_results(box, top))
    assert wins.loc[50.0, "box_excess margin"] == pytest.approx(0.5 - 0.55)
    assert not wins.loc[50.0, "contribution paths win"]
    # across photos would have compared 0.3 (second photo) with 0.55 (first): the per-photo rule does not
    box[0][3], box[1][1] = 0.45, 0.25
    assert tables.sweep_wins(_hand_results(box, top)).loc[50.0, "box_excess margin"] == pytest.approx(0.05)


def test_a_decoding_of_nothing_cannot_win_and_is_no_rival():
    box = [[0.0, 0.5, 0.6, 0.9, 0.1], [0.0, 0.3, 0.4, 0.2, 0.1]]
    top = [[0.1, 0.3, 0.4, 0.9, 0.1], [0.1, 0.3, 0.3, 0.2, 0.2]]
    # Greedy on the first photo changed 0.5 % of what the full network's decoding changed: left out
    change = [[100.0, 50.0, 50.0, 0.5, 50.0], [100.0, 50.0, 50.0, 50.0, 50.0]]
    wins = tables.sweep_wins(_hand_results(box, top, change))
    assert wins.loc[50.0, "contribution paths win"]
    change[1][2] = 0.5  # NeuronMCT decoded nothing on the second photo: no win
    wins = tables.sweep_wins(_hand_results(box, top, change))
    assert not wins.loc[50.0, "contribution paths win"] and np.isnan(wins.loc[50.0, "box_excess margin"])
    # no rival decoded anything on a photo: nothing to win against, no win
    change = [[100.0, 50.0, 50.0, 0.5, 0.5], [100.0, 50.0, 50.0, 50.0, 50.0]]
    wins = tables.sweep_wins(_hand_results(box, top, change))
    assert not wins.loc[50.0, "contribution paths win"] and np.isnan(wins.loc[50.0, "box_excess margin"])
    assert wins.loc[50.0, "box_excess best rival"] == "Greedy"  # the second photo's; the first has none


def test_small_run_shapes_and_controls(small_run):
    n, levels, paths = 2, len(SMALL.sparsities), len(SMALL.paths)
    assert small_run["names"].tolist() == ["coffee", "grace_hopper"]
    assert small_run["images"].shape == (n, levels, paths, 32, 32, 3)
    for key in ("box_share", "concentration", "prob_own", "prob_full", "output_change", "realized", "change"):
        assert small_run[key].shape == (n, levels, paths), key
    original = list(SMALL.paths).index(ORIGINAL)
    # the full network is one decoding, the same at every sparsity, and keeps the output
    np.testing.assert_array_equal(small_run["images"][:, 0, original], small_run["images"][:, 1, original])
    assert (small_run["output_change"][:, :, original] == 0).all() and (small_run["realized"][:, :, original] == 0).all()
    realized = small_run["realized"][:, :, list(SMALL.paths).index(sweep.RANDOM)]
    np.testing.assert_allclose(realized, np.broadcast_to(np.array(SMALL.sparsities), realized.shape), atol=0.5)
    assert ((small_run["box_share"] >= 0) | np.isnan(small_run["box_share"])).all()
    assert small_run["grey_prob_full"].shape == (n,)


def test_verify_recomputes_the_check_path_of_each_image(small_run):
    part = sweep.verify_subset(SMALL, 1)
    fresh = sweep.run(part, progress=False)
    expected = sweep.cached_part(small_run, part)
    assert set(fresh) == set(expected) == set(sweep.CHECK_KEYS)
    np.testing.assert_allclose(fresh["check_image"], expected["check_image"], atol=1e-5)
    np.testing.assert_allclose(fresh["check_logits"], expected["check_logits"], rtol=1e-4)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="no object box"):
        dataclasses.replace(SMALL, inputs=Inputs(images=("chelsea",)))
    with pytest.raises(ValueError, match="paths: unknown"):
        dataclasses.replace(SMALL, paths=("NeuronMCTX",))
    with pytest.raises(ValueError, match="check_path"):
        dataclasses.replace(SMALL, check_path=ORIGINAL)


def test_the_cached_check_image_rejects_a_changed_learning_rate():
    """The other direction of the book cache's check (its rounding direction is the cache check in
    test_book_cache, on whatever machine runs it): the check path rendered with a learning rate 1 %
    larger is beyond the check image's tolerance."""
    from pathlib_pw import decisions, experiments
    from pathlib_pw.runner import cache
    from pathlib_pw.runner.verification import compare

    book = experiments.get_config("decoding_sweep", "book")
    directory = cache.results_root() / "book" / "decoding_sweep"
    cached = cache.load(directory)
    part = dataclasses.replace(sweep.verify_subset(book, 1), lr=book.lr * 1.01)
    with decisions.replaying(cache.load_decisions(directory), complete=False):
        fresh = sweep.run(part, progress=False)
    check = compare("check_image", fresh["check_image"], cached["check_image"][:1], sweep.TOLERANCES["check_image"])
    assert check.status == "DIFFERS", check
