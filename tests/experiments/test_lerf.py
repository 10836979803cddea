"""The LeRF / MoRF experiment against a literal evaluation, its recorded removal decisions, and its tables."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pathlib_pw import decisions
from pathlib_pw.attribution_methods import attribute
from pathlib_pw.experiments import lerf, lerf_digits, lerf_tables
from pathlib_pw.experiments.contract import first_images
from pathlib_pw.removal import quantize_maps, removal_count

SMALL = dataclasses.replace(
    lerf_digits.config("smoke"),
    methods=("gradients", "pathway_grad/neuron_mct", "random"),
    percents=(2, 10, 30),
)
SMALL = first_images(SMALL, 3)


@pytest.fixture(scope="module")
def small_run():
    return lerf.run(SMALL, progress=False)


def _literal_curve(model, x, maps, percent, order, fill_value):
    """One image: rank pixels with plain Python, fill, run the model; |p' - p| / p."""
    h, w = maps.shape
    score = maps.abs().flatten().tolist()
    keys = sorted(range(h * w), key=lambda j: (-score[j] if order == "most" else score[j], j))
    changed = x.clone()
    for j in keys[: removal_count(percent / 100, h * w)]:
        changed[0, :, j // w, j % w] = fill_value
    with torch.no_grad():
        p, q = model(x).softmax(1), model(changed).softmax(1)
    c = int(p.argmax())
    return float(abs(q[0, c] - p[0, c]) / p[0, c])


def test_curves_match_a_literal_evaluation(small_run):
    model = SMALL.inputs.load_model()
    x, _ = SMALL.inputs.load_images()
    methods = [lerf.method_for(m, SMALL.pathway_sparsity, SMALL.seed) for m in SMALL.methods]
    mean_fill = [r for r, (fill, precision) in enumerate(SMALL.removals) if (fill, precision) == ("mean", "float32")][0]
    uint8 = [r for r, (_, precision) in enumerate(SMALL.removals) if precision == "uint8"][0]
    all_maps = [attribute(method, model, x) for method in methods]  # the run's batch: float sums depend on it
    for i in range(len(x)):
        xi = x[i : i + 1]
        for m in range(len(methods)):
            maps = all_maps[m][i]
            for o, order in enumerate(SMALL.orders):
                for f, percent in enumerate(SMALL.percents):
                    expected = _literal_curve(model, xi, maps, percent, order, 0.0)
                    assert small_run["curves"][i, m, o, mean_fill, f] == pytest.approx(expected, rel=1e-4, abs=1e-6)
                    expected = _literal_curve(model, xi, quantize_maps(maps[None])[0], percent, order, 0.0)
                    assert small_run["curves"][i, m, o, uint8, f] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert small_run["predicted"].tolist() == model(x).argmax(1).tolist()


def test_more_removed_pixels_change_the_output_more_under_morf_for_gradients(small_run):
    # a sanity property of the real model: removing 30 % of the most relevant pixels by Gradients
    # changes the prediction's probability more than removing 2 %, on average
    most = small_run["curves"][:, 0, list(SMALL.orders).index("most"), 0]
    assert most[:, -1].mean() > most[:, 0].mean()


def test_road_fill_differs_from_mean_fill_and_depends_on_the_seed(small_run):
    road = [r for r, (fill, _) in enumerate(SMALL.removals) if fill == "road"][0]
    assert not np.allclose(small_run["curves"][..., road, :], small_run["curves"][..., 0, :])
    reseeded = lerf.run(dataclasses.replace(first_images(SMALL, 1), methods=("random",), seed=5), progress=False)
    assert not np.array_equal(reseeded["curves"][0, 0, :, road], small_run["curves"][0, 2, :, road])


def test_removal_decisions_are_recorded_and_replayed(small_run):
    one = first_images(SMALL, 1)
    with decisions.recording() as log:
        recorded = lerf.run(one, progress=False)
    keys = [k for k in log.records if "/least/mean/float32" in k]
    assert keys, sorted(log.records)[:5]
    np.testing.assert_allclose(recorded["curves"], small_run["curves"][:1], rtol=1e-5, atol=1e-6)
    with decisions.replaying(log) as report:
        again = lerf.run(one, progress=False)
    assert report.ok and report.changed == 0
    np.testing.assert_array_equal(again["curves"], recorded["curves"])
    # another fraction is another decision: more pixels changed than rounding can explain
    shifted = dataclasses.replace(one, percents=(20, 10, 30))
    with decisions.replaying(log, complete=False) as report:
        lerf.run(shifted, progress=False)
    assert not report.ok


def test_auc_is_the_trapezoid_from_zero():
    results = {
        "curves": np.array([[[[[0.2, 0.4]]]], [[[[0.4, 0.8]]]]], dtype=np.float32),  # (2 images, 1, 1, 1, 2)
        "percents": np.array([1, 2]),
        "orders": np.array(["least"]),
        "removals": np.array(["mean/float32"]),
        "methods": np.array(["gradients"]),
    }
    # image 0: 0.5 * 1 * 0.2 + 0.5 * (0.2 + 0.4) = 0.4; image 1 twice that
    np.testing.assert_allclose(lerf_tables.aucs(results, "least")[:, 0], [0.4, 0.8])
    mean, low, high = lerf_tables.interval(np.array([0.4, 0.8]))
    assert mean == pytest.approx(0.6) and low < 0.6 < high
    with pytest.raises(ValueError, match="order must be one of"):
        lerf_tables.aucs(results, "middle")


def test_paired_differences_and_rankings(small_run):
    table = lerf_tables.paired_differences(small_run, "gradients", "least")
    values = lerf_tables.aucs(small_run, "least")
    expected = (values[:, 2] - values[:, 0]).mean()
    assert table.loc["random (control)", "difference"] == pytest.approx(expected)
    ranks = lerf_tables.ranking(small_run, "most")
    assert sorted(ranks["mean/float32"]) == [1, 2, 3]


def test_authors_table_and_their_copy_slip():
    aucs = lerf_tables.authors_aucs()
    assert set(aucs.columns) == {"cifar10", "birdsnap", "imagenet"}
    # Gradients on ImageNet: trapezoids over 0..10 % of their curve
    curve = [0, 0.324, 0.393, 0.446, 0.479, 0.506, 0.528, 0.548, 0.568, 0.583, 0.599]
    assert aucs.loc["Gradients", "imagenet"] == pytest.approx(np.trapezoid(curve, range(11)))
    assert lerf_tables.copy_slip()


def test_auc_table_curve_frames_and_rank_agreement(small_run):
    table = lerf_tables.auc_table(small_run)
    least = lerf_tables.aucs(small_run, "least")
    assert list(table.index) == ["Gradients", "PathwayGrad, NeuronMCT", "random (control)"]
    np.testing.assert_allclose(table["LeRF AUC"], least.mean(0))
    assert (table["LeRF 95% low"] <= table["LeRF AUC"]).all() and (table["LeRF AUC"] <= table["LeRF 95% high"]).all()
    mean, half = lerf_tables.curve_frames(small_run, "most", "road/float32")
    road = [r for r, (fill, _) in enumerate(SMALL.removals) if fill == "road"][0]
    np.testing.assert_allclose(mean.to_numpy().T, small_run["curves"][:, :, 1, road].mean(0), rtol=1e-6)
    assert list(mean.index) == list(SMALL.percents) and (half.to_numpy() >= 0).all()
    # the same removal ranks the methods identically: tau 1
    assert lerf_tables.rank_agreement(small_run, "least", "mean/float32", "mean/float32") == pytest.approx(1.0)
    assert lerf_tables.label("pathway_grad/neuron_mct@90") == "PathwayGrad, NeuronMCT, 90 %"
