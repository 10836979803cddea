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
