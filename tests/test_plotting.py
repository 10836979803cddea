"""The figure builders draw what they are given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pathlib_pw import plotting  # noqa: E402


def test_heatmap_annotates_every_cell():
    frame = pd.DataFrame([[100.0, 12.345], [12.345, 100.0]], index=["a", "b"], columns=["a", "b"])
    fig, ax = plt.subplots()
    plotting.heatmap(frame, ax, "title")
    assert sorted(t.get_text() for t in ax.texts) == ["100.0", "100.0", "12.3", "12.3"]
    assert ax.get_title() == "title"
    plt.close(fig)


def test_lines_and_curves_plot_one_line_per_column():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [3.0, 2.0, 1.0]}, index=[0.0, 50.0, 90.0])
    fig, (a, b) = plt.subplots(1, 2)
    plotting.per_site_lines(frame, a, "J")
    plotting.curves(frame, b, "sparsity", "change", logy=True)
    assert len(a.lines) == len(b.lines) == 2
    assert b.lines[1].get_xdata().tolist() == [0.0, 50.0, 90.0]
    assert b.get_yscale() == "log"
    plt.close(fig)


def test_map_grid_shows_the_image_then_absolute_maps():
    image = np.zeros((4, 4, 3))
    signed = -np.eye(4)
    fig = plotting.map_grid(image, [[signed, signed], [signed, signed]], ["m1", "m2"], ["c1", "c2"])
    axes = np.array(fig.axes).reshape(2, 3)
    assert axes[0, 1].get_title() == "c1" and axes[1, 0].get_ylabel() == "m2"
    shown = axes[0, 1].images[0].get_array()
    assert np.array_equal(np.asarray(shown), np.abs(signed))
    plt.close(fig)


def test_curves_over_named_stages_with_a_spread_band():
    frame = pd.DataFrame({"GBP": [1.0, 0.9, 0.2], "Gradients": [1.0, 0.1, 0.0]}, index=["original", "classifier", "stem"])
    spread = pd.DataFrame({"GBP": [0.0, 0.05, 0.1], "Gradients": [0.0, 0.2, 0.1]}, index=frame.index)
    fig, ax = plt.subplots()
    plotting.curves(frame, ax, "stage", "similarity", spread=spread)
    assert ax.lines[0].get_xdata().tolist() == [0, 1, 2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["original", "classifier", "stem"]
    band = ax.collections[1].get_paths()[0].vertices  # the Gradients band
    assert set(np.round(band[:, 1], 6)) == {1.0, 0.3, 0.1, -0.1}  # mean +- spread: 1+-0, 0.1+-0.2, 0+-0.1
    plt.close(fig)


def test_map_grid_one_photo_per_row():
    photos = [np.zeros((4, 4, 3)), np.ones((4, 4, 3))]
    fig = plotting.map_grid(photos, [[np.eye(4)], [np.eye(4)]], ["a", "b"], ["c"])
    axes = np.array(fig.axes).reshape(2, 2)
    assert np.asarray(axes[1, 0].images[0].get_array()).max() == 1.0
    plt.close(fig)
    try:
        plotting.map_grid(photos, [[np.eye(4)]], ["a"], ["c"])
    except ValueError as error:
        assert "image" in str(error)
    else:
        raise AssertionError("a photo count that does not match the rows must raise")
