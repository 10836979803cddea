"""The tables the notebooks show, on hand-made results with known means."""

from __future__ import annotations

import numpy as np
import pytest

from pathlib_pw.experiments import paths_tables

CRITERIA = ["A", "B", "C"]
SITES = ["s0", "s1"]


def fake_results():
    levels = np.array([0.0, 50.0, 90.0], dtype=np.float32)
    change = np.zeros((2, 3, 3))
    change[:, 0] = [[0.0, 0.10, 0.30], [0.0, 0.12, 0.50]]  # A: mean 0, .11, .40
    change[:, 1] = [[0.0, 0.20, 0.20], [0.0, 0.20, 0.20]]  # B: mean 0, .20, .20
    change[:, 2] = 0.05
    jac = np.ones((2, 1, 3, 3))
    jac[:, 0, 0, 1] = jac[:, 0, 1, 0] = [0.4, 0.6]
    jac[:, 0, 0, 2] = jac[:, 0, 2, 0] = [0.1, np.nan]  # NaN (empty union) is skipped
    jac[:, 0, 1, 2] = jac[:, 0, 2, 1] = 0.2
    jac_site = np.repeat(jac[..., None], 2, axis=-1)
    jac_site[:, 0, 0, 1, 1] = jac_site[:, 0, 1, 0, 1] = 0.0
    dead = np.zeros((2, 3, 3))
    dead[:, 2, 2] = [0.3, 0.5]
    dead_site = np.zeros((2, 3, 1, 2))
    dead_site[:, 2, 0] = [[0.2, 0.4], [0.4, 0.6]]
    realized = np.broadcast_to(levels, (2, 3, 3)).copy()
    return {
        "criteria": np.array(CRITERIA), "sites": np.array(SITES), "levels": levels,
        "overlap_levels": np.array([90.0], dtype=np.float32), "output_change": change, "jaccard": jac,
        "jaccard_site": jac_site, "dead_share": dead, "dead_share_site": dead_site, "realized": realized,
    }


def test_jaccard_matrix_is_the_mean_in_percent_and_skips_nan():
    m = paths_tables.jaccard_matrix(fake_results(), 90)
    assert m.loc["A", "B"] == pytest.approx(50.0)
    assert m.loc["A", "C"] == pytest.approx(10.0)
    assert m.loc["B", "C"] == pytest.approx(20.0)
    assert list(paths_tables.jaccard_matrix(fake_results(), 90, ["C", "A"]).columns) == ["C", "A"]


def test_unknown_level_names_the_choices():
    with pytest.raises(ValueError, match="level must be one of"):
        paths_tables.jaccard_matrix(fake_results(), 80)


def test_per_site_tables():
    frame = paths_tables.jaccard_per_site(fake_results(), 90, [("A", "B")])
    assert list(frame.index) == SITES
    assert frame["A / B"].tolist() == pytest.approx([50.0, 0.0])
    dead = paths_tables.dead_share_per_site(fake_results(), 90)
    assert dead["C"].tolist() == pytest.approx([30.0, 50.0])


def test_dead_share_table_and_sweep():
    table = paths_tables.dead_share_table(_with_chance_and_response(fake_results()), 90)
    assert table.loc["C", "dead share of path"] == pytest.approx(40.0)
    assert table.loc["C", "dead share sd"] == pytest.approx(np.std([30, 50], ddof=1))
    assert table.loc["A", "median output change"] == pytest.approx(40.0)  # the median of 30 and 50
    assert table.loc["A", "class kept"] == pytest.approx(0.0) and table.loc["C", "class kept"] == pytest.approx(100.0)
    assert np.isnan(paths_tables.dead_share_table(fake_results(), 90)["class kept"]).all()  # a cache without class_kept
    assert table.loc["B", "realized sparsity"] == pytest.approx(90.0)
    sweep = paths_tables.sweep_table(fake_results())
    assert sweep.loc[50.0, "A"] == pytest.approx(0.11)
    with pytest.raises(ValueError, match="quantity must be one of"):
        paths_tables.sweep_table(fake_results(), "speed")


def test_dgr_kept_prediction_counts_only_dgr_columns():
    r = fake_results()
    r["dgr_kept_prediction"] = np.array([[np.nan, 1.0, 0.0], [np.nan, 1.0, 1.0]])
    counts = paths_tables.dgr_kept_prediction(r)
    assert counts.to_dict() == {"B": "2 of 2", "C": "1 of 2"}


def test_sweep_spread_is_the_standard_deviation_over_images():
    std = paths_tables.sweep_table(fake_results(), stat="std")
    assert std.loc[90.0, "A"] == pytest.approx(0.10)  # images 0.30 and 0.50
    assert std.loc[90.0, "B"] == pytest.approx(0.0)
    assert paths_tables.sweep_table(fake_results(), stat="median").loc[90.0, "A"] == pytest.approx(0.40)
    with pytest.raises(ValueError, match="stat must be one of \\['mean', 'std', 'median'\\]"):
        paths_tables.sweep_table(fake_results(), stat="mode")


def test_emptied_sites_name_where_a_path_keeps_nothing():
    r = fake_results()
    r["site_sizes"] = np.array([300, 100])
    r["kept_site"] = np.full((2, 3, 1, 2), 0.5)
    r["kept_site"][0, 2, 0, 0] = 0.0  # C empties s0 in image 0
    r["kept_site"][:, 2, 0, 1] = 0.0  # and s1 in both images
    frame = paths_tables.emptied_sites(r, "C", 90)
    assert frame["images with the site emptied"].to_dict() == {"s0": 1, "s1": 2}
    assert frame["share of all neurons (%)"].tolist() == pytest.approx([75.0, 25.0])
    assert paths_tables.emptied_sites(r, "A", 90).empty
    with pytest.raises(ValueError, match="criterion must be one of"):
        paths_tables.emptied_sites(r, "D", 90)


def test_per_image_values_in_percent_except_the_sparsity():
    r = fake_results()
    r["names"] = np.array(["x", "y"])
    assert paths_tables.per_image(r, "output_change", "A", 90).to_dict() == pytest.approx({"x": 30.0, "y": 50.0})
    assert paths_tables.per_image(r, "realized", "A", 50).tolist() == [50.0, 50.0]
    with pytest.raises(ValueError, match="level must be one of"):
        paths_tables.per_image(r, "realized", "A", 70)


def test_removed_living_share_from_sparsity_dead_share_and_base_rate():
    r = fake_results()
    r["names"] = np.array(["x", "y"])
    r["base_sparsity"] = np.array([0.4, 0.5])
    r["realized"][:, 2, 2] = 50.0  # C removes half; its kept half is 30 % / 50 % dead (fake_results)
    # image x: dead kept 0.15, dead removed 0.25, living removed 0.25 of 0.6 living; image y: 0.25, 0.25, 0.25 of 0.5
    assert paths_tables.removed_living_share(r, "C", 90).tolist() == pytest.approx([100 * 0.25 / 0.6, 50.0])


def test_pair_overlap_per_image_in_percent():
    r = fake_results()
    r["names"] = np.array(["x", "y"])
    assert paths_tables.pair_overlap(r, "A", "B", 90).to_dict() == pytest.approx({"x": 40.0, "y": 60.0})
    assert paths_tables.pair_overlap(r, "B", "A", 90).tolist() == pytest.approx([40.0, 60.0])
    with pytest.raises(ValueError, match="criteria must be among"):
        paths_tables.pair_overlap(r, "A", "D", 90)


def test_retry_table_gathers_kept_prediction_dead_share_change_and_overlaps():
    r = _with_chance_and_response(fake_results())
    r["dgr_kept_prediction"] = np.array([[np.nan, 1.0, 0.0], [np.nan, 1.0, 1.0]])
    table = paths_tables.retry_table(r, 90, ["B", "C"], ["A"])
    assert table["kept the prediction"].to_dict() == {"B": "2 of 2", "C": "1 of 2"}
    assert table["dead share of path"].tolist() == pytest.approx([0.0, 40.0])
    assert table["median output change"].tolist() == pytest.approx([20.0, 5.0])
    assert table["overlap with A"].tolist() == pytest.approx([50.0, 10.0])  # C / A: the NaN image skipped
    with pytest.raises(ValueError, match="criteria must be among"):
        paths_tables.retry_table(r, 90, ["B"], ["D"])


def _with_chance_and_response(results):
    chance = np.full_like(results["jaccard"], 0.25)
    chance[1, 0, 0, 1] = chance[1, 0, 1, 0] = 0.65  # image 1: A / B lies below its chance level
    signed = -results["output_change"].copy()
    signed[1, 0, 2] = 0.5  # image 1's probability rises through A at 90 %
    kept = (results["output_change"] < 0.15).astype(np.float64)
    return results | {"jaccard_chance": chance, "signed_change": signed, "class_kept": kept}


def test_overlap_table_sets_each_overlap_beside_its_chance_level():
    table = paths_tables.overlap_table(_with_chance_and_response(fake_results()), 90, ["A", "B", "C"])
    row = table.loc[("A", "B")]
    # overlaps 40 and 60, chance 25 and 65: excess +15 and -5
    assert row["overlap (%)"] == pytest.approx(50.0) and row["sd"] == pytest.approx(np.std([40, 60], ddof=1))
    assert row["chance (%)"] == pytest.approx(45.0) and row["above chance"] == pytest.approx(5.0)
    assert row["95% low"] == pytest.approx(-5.0) and row["95% high"] == pytest.approx(15.0)
    assert row["images above chance"] == "1 of 2"
    assert table.loc[("A", "C"), "images above chance"] == "0 of 1"  # the NaN image is left out
    assert list(table.index) == [("A", "B"), ("A", "C"), ("B", "C")]
    with pytest.raises(ValueError, match="criteria must be among"):
        paths_tables.overlap_table(_with_chance_and_response(fake_results()), 90, ["A", "Z"])
    chance = paths_tables.jaccard_matrix(_with_chance_and_response(fake_results()), 90, chance=True)
    assert chance.loc["A", "B"] == pytest.approx(45.0)


def test_sweep_summary_uses_medians_and_counts_kept_classes():
    summary = paths_tables.sweep_summary(_with_chance_and_response(fake_results()), "A")
    assert list(summary.index) == [0.0, 50.0, 90.0]
    assert summary.loc[90.0, "median change (%)"] == pytest.approx(40.0)
    assert summary.loc[90.0, "mean change (%)"] == pytest.approx(40.0)
    assert summary.loc[90.0, "median signed change (%)"] == pytest.approx(np.median([-30.0, 50.0]))
    assert summary.loc[50.0, "class kept (%)"] == pytest.approx(100.0) and summary.loc[90.0, "class kept (%)"] == 0.0
    assert summary.loc[50.0, "95% low"] == pytest.approx(10.0) and summary.loc[50.0, "95% high"] == pytest.approx(12.0)


def test_operating_range_is_the_largest_sparsity_within_the_change_and_its_bootstrap_range():
    results = _with_chance_and_response(fake_results())
    # A's medians: 0, 11, 40 %: 50 % is the largest within 15 %; every resample agrees
    assert paths_tables.operating_range(results, "A") == (50.0, 50.0, 50.0)
    # within 35 %: image 0 alone (30 %) allows 90 %, image 1 alone (50 %) does not
    point, low, high = paths_tables.operating_range(results, "A", change=0.35)
    assert point == 50.0 and (low, high) == (50.0, 90.0)
    # C changes the output by 5 % at every sparsity, 0 % is within any change only for A and B
    assert np.isnan(paths_tables.operating_range(results, "C", change=0.01)).all()
    assert paths_tables.operating_range(results, "B", change=0.001) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="criterion must be one of"):
        paths_tables.operating_range(results, "Z")


def test_free_share_is_the_mean_share_removed_at_no_requested_sparsity():
    results = fake_results()
    results["free_share"] = np.array([[0.4, 0.0, 0.2], [0.2, 0.0, 0.4]])
    share = paths_tables.free_share(results)
    assert share.to_dict() == pytest.approx({"A": 0.3, "B": 0.0, "C": 0.3})


def test_sweep_interval_is_the_median_and_a_bootstrap_range_that_stays_non_negative():
    results = _with_chance_and_response(fake_results())
    median, low, high = paths_tables.sweep_interval(results, "output_change", ["A", "C"])
    assert list(median.columns) == ["A", "C"] and list(median.index) == [0.0, 50.0, 90.0]
    assert median.loc[90.0, "A"] == pytest.approx(40.0)  # the median of 30 and 50
    assert median.loc[50.0, "C"] == pytest.approx(5.0) and low.loc[50.0, "C"] == pytest.approx(5.0)
    assert (low.to_numpy() >= 0).all() and (low.to_numpy() <= median.to_numpy() + 1e-12).all()
    assert (high.to_numpy() >= median.to_numpy() - 1e-12).all()
    assert low.loc[90.0, "A"] == pytest.approx(30.0) and high.loc[90.0, "A"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="quantity must be one of"):
        paths_tables.sweep_interval(results, "realized")
    with pytest.raises(ValueError, match="criteria must be among"):
        paths_tables.sweep_interval(results, "output_change", ["Z"])


def test_path_summary_sets_each_path_beside_the_reference_and_its_chance_level():
    results = _with_chance_and_response(fake_results())
    results["base_sparsity"] = np.array([0.3, 0.5])
    table = paths_tables.path_summary(results, 90, "A", ["A", "B", "C"])
    assert list(table.index) == ["B", "C"]  # the reference is not compared with itself
    expected = 100 * (results["jaccard"][:, 0, 0, 1] - results["jaccard_chance"][:, 0, 0, 1])
    assert table.loc["B", "excess"] == pytest.approx(expected.mean())
    assert table.loc["B", "overlap with A"] == pytest.approx(50.0)  # per photo 40 and 60
    assert table.loc["C", "dead share"] == pytest.approx(40.0)
    assert table.attrs["base rate"] == pytest.approx(40.0)
    with pytest.raises(ValueError, match="must be among"):
        paths_tables.path_summary(results, 90, "Z")


def test_random_like_needs_chance_overlap_and_the_base_rate():
    import pandas as pd

    summary = pd.DataFrame(
        {"excess": [0.4, 1.5, -0.2, -1.01], "dead share": [36.5, 36.0, 40.0, 35.0]},
        index=["random", "above chance", "too dead", "below chance"],
    )
    summary.attrs["base rate"] = 36.0
    assert paths_tables.random_like(summary).to_dict() == {
        "random": True,
        "above chance": False,
        "too dead": False,
        "below chance": False,
    }
    assert paths_tables.random_like(summary, margin=5.0).all()


def test_per_site_chance_overlap():
    results = _with_chance_and_response(fake_results())
    results["jaccard_chance_site"] = np.repeat(results["jaccard_chance"][..., None], 2, axis=-1)
    frame = paths_tables.jaccard_per_site(results, 90, [("A", "B")], chance=True)
    assert frame["A / B"].tolist() == pytest.approx([45.0, 45.0])
