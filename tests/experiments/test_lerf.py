"""The LeRF / MoRF experiment against a literal evaluation, its recorded removal decisions, and its tables."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pathlib_pw import decisions
from pathlib_pw.attribution_methods import attribute
from pathlib_pw.experiments import lerf, lerf_digits, lerf_tables
from pathlib_pw.removal import quantize_maps, removal_count
from pathlib_pw.runner.contract import first_images
from tests.reference_impl import tie_keys_literal

SMALL = dataclasses.replace(
    lerf_digits.config("smoke"),
    methods=("gradients", "pathway_grad/neuron_mct", "random"),
    percents=(2, 10, 30),
)
SMALL = first_images(SMALL, 3)


@pytest.fixture(scope="module")
def small_run():
    return lerf.run(SMALL, progress=False)


def _literal_curve(model, x, maps, percent, order, fill_value, keys=None):
    """One image: rank pixels with plain Python (ties in the order of ``keys``: default the index),
    fill, run the model; |p' - p| / p."""
    h, w = maps.shape
    score = maps.abs().flatten().tolist()
    position = {pixel: n for n, pixel in enumerate(keys if keys is not None else range(h * w))}
    ranked = sorted(range(h * w), key=lambda j: (-score[j] if order == "most" else score[j], position[j]))
    changed = x.clone()
    for j in ranked[: removal_count(percent, h * w)]:
        changed[0, :, j // w, j % w] = fill_value
    with torch.no_grad():
        p, q = model(x).softmax(1), model(changed).softmax(1)
    c = int(p.argmax())
    return float(abs(q[0, c] - p[0, c]) / p[0, c])


def _removal(fill, precision, ties):
    return SMALL.removals.index((fill, precision, ties))


def test_curves_match_a_literal_evaluation(small_run):
    model = SMALL.inputs.load_model()
    x, _ = SMALL.inputs.load_images()
    methods = [lerf.method_for(m, SMALL.pathway_sparsity, SMALL.seed) for m in SMALL.methods]
    all_maps = [
        lerf.random_maps(list(range(len(x))), tuple(x.shape[2:]), SMALL.seed) if name == "random" else attribute(model, x, method)
        for name, method in zip(SMALL.methods, methods)
    ]  # the run's batch: float sums depend on it
    pixels = x.shape[2] * x.shape[3]
    random_keys = [tie_keys_literal(pixels, "random", s) for s in range(SMALL.tie_seeds)]
    for i in range(len(x)):
        xi = x[i : i + 1]
        for m in range(len(methods)):
            maps = all_maps[m][i]
            quantized = quantize_maps(maps[None])[0]
            for o, order in enumerate(SMALL.orders):
                for f, percent in enumerate(SMALL.percents):
                    got = small_run["curves"][i, m, o, :, f]
                    index_rule = _literal_curve(model, xi, maps, percent, order, 0.0)
                    assert got[_removal("mean", "float32", "first")] == pytest.approx(index_rule, rel=1e-4, abs=1e-6)
                    last = _literal_curve(model, xi, maps, percent, order, 0.0, tie_keys_literal(pixels, "last"))
                    assert got[_removal("mean", "float32", "last")] == pytest.approx(last, rel=1e-4, abs=1e-6)
                    index_rule = _literal_curve(model, xi, quantized, percent, order, 0.0)
                    assert got[_removal("mean", "uint8", "first")] == pytest.approx(index_rule, rel=1e-4, abs=1e-6)
                    for precision, ranked in (("float32", maps), ("uint8", quantized)):
                        expected = np.mean([_literal_curve(model, xi, ranked, percent, order, 0.0, k) for k in random_keys])
                        assert got[_removal("mean", precision, "random")] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert small_run["predicted"].tolist() == model(x).argmax(1).tolist()


def test_tie_share_and_spread_come_from_the_ties(small_run):
    # the 8-bit maps tie far more than the float maps; the index rules have no spread over tie orders
    uint8, float32 = _removal("mean", "uint8", "random"), _removal("mean", "float32", "random")
    assert (small_run["tie_share"][..., uint8] >= small_run["tie_share"][..., float32]).all()
    assert (small_run["tie_share"][..., uint8] > 0).any()
    for rule in ("first", "last"):
        assert (small_run["tie_spread"][..., _removal("mean", "float32", rule)] == 0).all()
    # a uniform random map has no ties, so its tie orders agree
    random = SMALL.methods.index("random")
    assert (small_run["tie_share"][:, random, :, float32] == 0).all() and (small_run["tie_spread"][:, random, :, float32] == 0).all()
    # where a map ties at the cut, the tie orders disagree somewhere
    tied = small_run["tie_share"][..., uint8] > 0
    assert (small_run["tie_spread"][..., uint8][tied] > 0).any()


def test_the_random_control_draws_one_map_per_image_whatever_the_batch():
    maps = lerf.random_maps([3, 4, 5], (8, 8), 0)
    assert not torch.equal(maps[0], maps[1])
    torch.testing.assert_close(lerf.random_maps([4], (8, 8), 0)[0], maps[1], rtol=0, atol=0)
    assert not torch.equal(lerf.random_maps([4], (8, 8), 1)[0], maps[1])


def test_bad_removals_are_refused():
    with pytest.raises(ValueError, match="removals must hold"):
        dataclasses.replace(SMALL, removals=(("mean", "float32"),))
    with pytest.raises(ValueError, match="ties in"):
        dataclasses.replace(SMALL, removals=(("mean", "float32", "middle"),))
    with pytest.raises(ValueError, match="percents must"):
        dataclasses.replace(SMALL, percents=(20, 10, 30))
    with pytest.raises(ValueError, match="tie_seeds must"):
        dataclasses.replace(SMALL, tie_seeds=0)


def test_more_removed_pixels_change_the_output_more_under_morf_for_gradients(small_run):
    # a sanity property of the real model: removing 30 % of the most relevant pixels by Gradients
    # changes the prediction's probability more than removing 2 %, on average
    most = small_run["curves"][:, 0, list(SMALL.orders).index("most"), 0]
    assert most[:, -1].mean() > most[:, 0].mean()


def test_road_fill_differs_from_mean_fill_and_depends_on_the_seed(small_run):
    road = _removal("road", "float32", "random")
    assert not np.allclose(small_run["curves"][..., road, :], small_run["curves"][..., 0, :])
    reseeded = lerf.run(dataclasses.replace(first_images(SMALL, 1), methods=("random",), seed=5), progress=False)
    assert not np.array_equal(reseeded["curves"][0, 0, :, road], small_run["curves"][0, 2, :, road])


def test_removal_decisions_are_recorded_and_replayed(small_run):
    one = first_images(SMALL, 1)
    with decisions.recording() as log:
        recorded = lerf.run(one, progress=False)
    keys = [k for k in log.records if "/least/mean/float32/random" in k]
    assert keys, sorted(log.records)[:5]
    np.testing.assert_allclose(recorded["curves"], small_run["curves"][:1], rtol=1e-5, atol=1e-6)
    with decisions.replaying(log) as report:
        again = lerf.run(one, progress=False)
    assert report.ok and report.changed == 0
    np.testing.assert_array_equal(again["curves"], recorded["curves"])
    # another fraction is another decision: more pixels changed than rounding can explain
    shifted = dataclasses.replace(one, percents=(20, 30, 40))
    with decisions.replaying(log, complete=False) as report:
        lerf.run(shifted, progress=False)
    assert not report.ok


def test_auc_is_the_trapezoid_from_zero():
    results = {
        "curves": np.array([[[[[0.2, 0.4]]]], [[[[0.4, 0.8]]]]], dtype=np.float32),  # (2 images, 1, 1, 1, 2)
        "percents": np.array([1, 2]),
        "orders": np.array(["least"]),
        "removals": np.array(["mean/float32/random"]),
        "methods": np.array(["gradients"]),
    }
    # image 0: 0.5 * 1 * 0.2 + 0.5 * (0.2 + 0.4) = 0.4; image 1 twice that
    np.testing.assert_allclose(lerf_tables.aucs(results, "least")[:, 0], [0.4, 0.8])
    mean, low, high = lerf_tables.bootstrap_interval(np.array([0.4, 0.8]))
    # two images: the resampled means are 0.4, 0.6 and 0.8, with probabilities 1/4, 1/2, 1/4
    assert mean == pytest.approx(0.6) and low == pytest.approx(0.4) and high == pytest.approx(0.8)
    mean, low, high = lerf_tables.bootstrap_interval(np.array([0.5]))
    assert mean == 0.5 and np.isnan(low) and np.isnan(high)
    with pytest.raises(ValueError, match="order must be one of"):
        lerf_tables.aucs(results, "middle")


def test_paired_differences_and_rankings(small_run):
    table = lerf_tables.paired_differences(small_run, "gradients", "least")
    values = lerf_tables.aucs(small_run, "least")
    expected = (values[:, 2] - values[:, 0]).mean()
    assert table.loc["random (control)", "difference"] == pytest.approx(expected)
    ranks = lerf_tables.ranking(small_run, "most")
    assert sorted(ranks["mean/float32/random"]) == [1, 2, 3]


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
    np.testing.assert_allclose(table["LeRF median"], np.median(least, 0))
    mean, low, high = lerf_tables.curve_frames(small_run, "most", "road/float32/random")
    road = _removal("road", "float32", "random")
    np.testing.assert_allclose(mean.to_numpy().T, small_run["curves"][:, :, 1, road].mean(0), rtol=1e-6)
    assert list(mean.index) == list(SMALL.percents) and (low.to_numpy() <= mean.to_numpy() + 1e-12).all()
    assert (high.to_numpy() >= mean.to_numpy() - 1e-12).all()
    # the same removal ranks the methods identically: tau 1
    assert lerf_tables.rank_agreement(small_run, "least", "mean/float32/random", "mean/float32/random") == pytest.approx(1.0)
    assert lerf_tables.label("pathway_grad/neuron_mct@90") == "PathwayGrad, NeuronMCT, 90 %"


def _toy_results(constant_gradcam: bool):
    # 4 images, 3 methods; AUC = the single curve point (percent 1 -> trapezoid 0.5 * y)
    curves = np.array([[1.0, 2.0, 0.5], [1.2, 2.2, 0.4], [0.8, 1.8, 0.6], [1.0, 2.0, 0.5]])
    constant = np.zeros((4, 3), dtype=bool)
    constant[:, 2] = constant_gradcam
    return {
        "curves": curves[:, :, None, None, None],
        "percents": np.array([1]),
        "orders": np.array(["least"]),
        "removals": np.array(["mean/float32/random"]),
        "methods": np.array(["gradients", "input_mct", "gradcam"]),
        "constant_maps": constant,
    }


def test_constant_maps_leave_the_rankings_and_the_best_baseline():
    kept, dropped = _toy_results(False), _toy_results(True)
    assert lerf_tables.best_of(kept, ["gradients", "input_mct", "gradcam"], "least") == "gradcam"
    assert lerf_tables.best_of(dropped, ["gradients", "input_mct", "gradcam"], "least") == "gradients"
    assert lerf_tables.degenerate(dropped) == {"gradcam": 4} and lerf_tables.degenerate(kept) == {}
    assert list(lerf_tables.ranking(dropped, "least").index) == ["Gradients", "InputMCT"]
    assert list(lerf_tables.ranking(kept, "least")["mean/float32/random"]) == [2, 3, 1]
    with pytest.raises(ValueError, match="candidates must include"):
        lerf_tables.best_of(dropped, ["gradcam"], "least")


def test_the_lerf_rule_returns_each_verdict_on_hand_made_bounds():
    rule = lerf_tables.lerf_rule
    assert rule({"digits": 0.1, "the photos at 50 %": 0.2}, 539) == ("holds", "")
    assert rule({"digits": -0.1, "the photos at 90 %": 0.2}, 539) == ("holds partly", "only the photos at 90 %")
    assert rule({"digits": -0.1, "the photos at 90 %": -0.2}, 539) == ("does not hold on our model", "")
    assert rule({"digits": 0.0, "the photos at 90 %": -0.2}, 539)[0] == "does not hold on our model"  # 0 is not above 0
    assert rule({"digits": -0.1, "the photos at 90 %": -0.2}, 50) == ("inconclusive at this sample size", "")


def test_the_lerf_claim_is_decided_from_the_results(small_run):
    # the small run as both settings: PathwayGrad against the best gradient baseline it holds (Gradients)
    decided = lerf_tables.evaluate_claim(small_run, small_run)
    values = lerf_tables.aucs(small_run, "least")
    low = lerf_tables.bootstrap_interval(values[:, 0] - values[:, 1])[1]
    assert decided.numbers["digits low"] == pytest.approx(float(low))
    assert decided.verdict == lerf_tables.lerf_rule({"digits": float(low), "the photos at 50 %": float(low)}, 3)[0]
