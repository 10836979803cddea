"""The figure builders draw what they are given."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pathlib_pw import plotting  # noqa: E402


def test_heatmap_annotates_every_comparison():
    frame = pd.DataFrame([[100.0, 12.345], [12.345, 100.0]], index=["a", "b"], columns=["a", "b"])
    fig, ax = plt.subplots()
    plotting.heatmap(frame, ax, "title")
    assert sorted(t.get_text() for t in ax.texts) == ["12.3", "12.3"]  # the diagonal is blank
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


def test_map_grid_shows_one_photo_then_signed_maps_centred_at_zero_with_one_colorbar():
    image = np.zeros((4, 4, 3))
    signed = -np.eye(4)
    fig = plotting.map_grid(image, [[signed, signed], [signed, signed]], ["m1", "m2"], ["c1", "c2"])
    axes = np.array(fig.axes[:6]).reshape(2, 3)
    assert axes[0, 1].get_title() == "c1" and axes[1, 1].get_ylabel() == "m2"
    assert len(axes[0, 0].images) == 1 and len(axes[1, 0].images) == 0  # the one photo is shown once
    shown = axes[0, 1].images[-1]  # the map, over the photo in grey
    assert np.array_equal(np.asarray(shown.get_array()), signed)  # signed, not |map|
    assert shown.get_clim() == (-1.0, 1.0) and shown.get_cmap().name == plotting.MAP_CMAP
    assert len(fig.axes) == 7  # six panels and one colorbar
    plt.close(fig)


def test_maps_are_scaled_by_a_percentile_of_their_magnitudes_and_clipped():
    m = np.linspace(-1.0, 1.0, 101).reshape(1, 101) ** 3  # a few large values, many small ones
    fig = plotting.map_grid(np.zeros((1, 101, 3)), [[m]], ["r"], ["c"], percentile=50.0)
    shown = np.asarray(fig.axes[1].images[-1].get_array())
    top = np.percentile(np.abs(m), 50.0)
    assert np.allclose(shown, np.clip(m / top, -1, 1), atol=1e-6)
    assert (np.abs(shown) == 1).sum() > 2  # the largest values are clipped
    assert "50th percentile" in fig.axes[-1].get_ylabel()
    plt.close(fig)
    zero = plotting.map_grid(np.zeros((2, 2, 3)), [[np.zeros((2, 2))]], ["r"], ["c"])
    assert not np.asarray(zero.axes[1].images[-1].get_array()).any()
    plt.close(zero)
    with pytest.raises(ValueError, match="percentile"):
        plotting.map_grid(np.zeros((2, 2, 3)), [[np.zeros((2, 2))]], ["r"], ["c"], percentile=0.0)


def test_every_method_has_its_own_colour_and_its_aliases_share_it():
    colours = list(plotting.METHOD_COLOURS.values())
    assert len(set(colours)) == len(colours)
    assert plotting.method_colour("GBP") == plotting.method_colour("Guided Backprop (authors)")
    assert plotting.method_colour("PathwayGrad, NeuronMCT") == plotting.method_colour("NeuronMCT")
    assert plotting.method_colour("PathwayGrad, NeuronMCT, 90 %") != plotting.method_colour("NeuronMCT")
    assert plotting.canonical_method("NeuronIntGrad (original code)") == "NeuronIntGrad*"
    assert plotting.canonical_method("InputMCT (authors' script)") == "InputMCT (authors' script)"
    assert plotting.method_label("NeuronMCT", maps=True) == "PathwayGrad, NeuronMCT"
    assert plotting.method_label("GradCAM") == "Grad-CAM"
    assert not plotting.is_method("NeuronMCT / Greedy")
    with pytest.raises(ValueError, match="palette"):
        plotting.method_colour("NeuronTypo")


def test_authors_curves_are_dashed_in_the_methods_colour_and_limits_show_every_value():
    ours = pd.DataFrame({"GBP": [1.0, 0.9, -0.84]}, index=["original", "classifier", "head"])
    theirs = pd.DataFrame({"Guided Backprop": [1.0, 0.99, 0.5]}, index=["original", "linear", "conv1"])
    fig, (a, b) = plt.subplots(1, 2)
    plotting.curves(ours, a, "stage", "similarity", ylim=(-0.3, 1.05))
    plotting.curves(theirs, b, "stage", "similarity", linestyle="--", label_suffix=" (authors)")
    assert a.lines[0].get_color() == b.lines[0].get_color() == plotting.METHOD_COLOURS["Guided Backprop"]
    assert b.lines[0].get_linestyle() == "--" and b.get_legend().get_texts()[0].get_text() == "Guided Backprop (authors)"
    assert a.get_ylim()[0] < -0.84 and a.get_ylim()[1] >= 1.05
    plt.close(fig)


def test_heatmap_leaves_the_diagonal_blank_and_scales_to_the_comparisons():
    frame = pd.DataFrame([[100.0, 2.0], [2.0, 100.0]], index=["a", "b"], columns=["a", "b"])
    fig, ax = plt.subplots()
    plotting.heatmap(frame, ax, "t")
    assert sorted(t.get_text() for t in ax.texts) == ["2.0", "2.0"]
    assert ax.collections[0].get_clim() == (0.0, 2.0)
    plt.close(fig)


def test_heatmap_shows_the_diagonal_when_it_is_a_measurement():
    frame = pd.DataFrame([[0.9, 0.2], [0.2, 0.8]], index=["a", "b"], columns=["a", "b"])
    fig, ax = plt.subplots()
    plotting.heatmap(frame, ax, "t", fmt=".1f", vmax=1.0, blank_diagonal=False)
    assert sorted(t.get_text() for t in ax.texts) == ["0.2", "0.2", "0.8", "0.9"]
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


def test_curves_band_between_a_low_and_a_high_frame():
    frame = pd.DataFrame({"Gradients": [1.0, 2.0]}, index=[0, 10])
    low = pd.DataFrame({"Gradients": [0.5, 1.9]}, index=frame.index)
    high = pd.DataFrame({"Gradients": [1.0, 3.0]}, index=frame.index)
    fig, ax = plt.subplots()
    plotting.curves(frame, ax, "removed", "change", spread=(low, high))
    band = ax.collections[0].get_paths()[0].vertices
    assert set(np.round(band[:, 1], 6)) == {0.5, 1.9, 1.0, 3.0}  # asymmetric: not mean +- a half-width
    plt.close(fig)


def test_map_grid_one_photo_per_row():
    photos = [np.zeros((4, 4, 3)), np.ones((4, 4, 3))]
    fig = plotting.map_grid(photos, [[np.eye(4)], [np.eye(4)]], ["a", "b"], ["c"])
    axes = np.array(fig.axes[:4]).reshape(2, 2)
    assert np.asarray(axes[1, 0].images[-1].get_array()).max() == 1.0
    plt.close(fig)
    with pytest.raises(ValueError, match="image"):
        plotting.map_grid(photos, [[np.eye(4)]], ["a"], ["c"])


def test_map_grid_photos_on_top_one_per_column():
    photos = [np.zeros((4, 4, 3)), np.ones((4, 4, 3))]
    fig = plotting.map_grid(photos, [[np.eye(4), -np.eye(4)]], ["PathwayGrad, NeuronMCT path, 50 %"], ["a", "b"], photos_on_top=True)
    axes = np.array(fig.axes[:4]).reshape(2, 2)
    assert [ax.get_title() for ax in axes[0]] == ["a", "b"]
    assert np.asarray(axes[0, 1].images[-1].get_array()).max() == 1.0
    assert axes[1, 0].get_ylabel() == "PathwayGrad, NeuronMCT path, 50 %"
    plt.close(fig)
    with pytest.raises(ValueError, match="column"):
        plotting.map_grid(photos[:1], [[np.eye(4), np.eye(4)]], ["r"], ["a", "b"], photos_on_top=True)


def test_figure_is_drawn_at_the_column_width_and_refuses_wider():
    fig, axes = plotting.figure(2, 3, row_height=2.5, sharey=True)
    assert axes.shape == (2, 3)
    assert tuple(fig.get_size_inches()) == (plotting.COLUMN_WIDTH_IN, 5.0)
    assert plotting.COLUMN_WIDTH_IN * plotting.DPI <= 772  # the book's text column at a 1400 px window
    plt.close(fig)
    with pytest.raises(ValueError, match="width"):
        plotting.figure(1, 2, width=12.0)


def test_theme_sets_no_font_below_eight_points():
    plotting.set_theme()
    sizes = {key: plt.rcParams[key] for key in plt.rcParams if key.endswith("size") and "font" in key or "labelsize" in key}
    points = {key: matplotlib.font_manager.FontProperties(size=value).get_size_in_points() for key, value in sizes.items()}
    assert min(points.values()) >= 8.0, points
    assert plt.rcParams["axes.titlesize"] >= 9 and plt.rcParams["axes.labelsize"] >= 9
    assert plt.rcParams["figure.figsize"][0] <= plotting.COLUMN_WIDTH_IN


def test_plotting_source_has_no_literal_font_below_eight_points():
    import inspect
    import re

    source = inspect.getsource(plotting)
    literals = [float(v) for v in re.findall(r"(?:fontsize|labelsize|\"size\")\s*[=:]\s*(\d+(?:\.\d+)?)", source)]
    assert all(v >= 8 for v in literals), literals


def test_map_grid_draws_each_map_over_its_photo_in_grey():
    photo = np.zeros((4, 4, 3))
    photo[:2] = 1.0  # a bright top half
    signed = np.eye(4)
    fig = plotting.map_grid(photo, [[signed]], ["m"], ["c"])
    ax = fig.axes[1]
    under, over = ax.images
    grey = np.asarray(under.get_array())
    assert grey[0, 0] > grey[3, 0]  # the photo's brightness, in grey
    assert 0 < over.get_alpha() < 1 and np.array_equal(np.asarray(over.get_array()), signed)
    plt.close(fig)
    plain = plotting.map_grid(photo, [[signed]], ["m"], ["c"], overlay=False)
    assert len(plain.axes[1].images) == 1
    plt.close(plain)


def test_map_grid_maps_are_about_200_px_and_too_many_columns_are_refused():
    image = np.zeros((4, 4, 3))
    maps = [np.eye(4)] * 3
    fig = plotting.map_grid([image] * 3, [maps], ["m"], ["a", "b", "c"], photos_on_top=True)
    assert fig.get_size_inches()[0] <= plotting.COLUMN_WIDTH_IN
    fig.canvas.draw()
    width_px = fig.axes[3].get_window_extent().width * plotting.DPI / fig.dpi
    assert width_px >= 190
    plt.close(fig)
    with pytest.raises(ValueError, match="at most 2 columns"):
        plotting.map_grid(image, [[np.eye(4)] * 3], ["m"], ["a", "b", "c"], max_width=plotting.COLUMN_WIDTH_IN)


def test_series_lying_on_each_other_stay_visible():
    frame = pd.DataFrame({"Random": [1.0, 2.0], "DGR(init=r)": [1.0, 2.0]})
    fig, ax = plt.subplots()
    plotting.per_site_lines(frame, ax, "dead share")
    first, second = ax.lines
    assert first.get_marker() != second.get_marker()
    assert first.get_markersize() > second.get_markersize() and second.get_zorder() > first.get_zorder()
    plt.close(fig)


def test_a_pair_of_methods_is_drawn_in_both_methods_colours():
    frame = pd.DataFrame({"NeuronMCT vs Random": [10.0, 20.0]})
    fig, ax = plt.subplots()
    plotting.per_site_lines(frame, ax, "Jaccard")
    (line,) = ax.lines
    assert line.get_color() == plotting.METHOD_COLOURS["NeuronMCT"]
    assert line.get_markerfacecolor() == plotting.METHOD_COLOURS["Random"]
    plt.close(fig)


def test_authors_curves_over_named_stages_are_placed_by_stage_name():
    ours = pd.DataFrame({"Gradients": [1.0, 0.5, 0.2]}, index=["original", "linear", "conv1"])
    theirs = pd.DataFrame({"Gradients": [1.0, 0.1]}, index=["original", "conv1"])
    fig, ax = plt.subplots()
    plotting.curves(ours, ax, "stage", "similarity", dashed=theirs)
    dashed = ax.lines[-1]
    assert dashed.get_linestyle() == "--" and dashed.get_color() == ax.lines[0].get_color()
    assert dashed.get_xdata().tolist() == [0, 2]
    plt.close(fig)
    with pytest.raises(ValueError, match="lacks"):
        plotting.curves(ours, plt.subplots()[1], "stage", "similarity", dashed=theirs.rename(index={"conv1": "stem"}))
    plt.close("all")


def test_legend_below_a_column_figure_stays_inside_it():
    fig, axes = plotting.figure(1, 2)
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="Gradients")
    plotting.legend_below(fig, list(axes))
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert legend.y0 >= 0 and legend.x1 <= fig.bbox.width
    plt.close(fig)


class _Links(HTMLParser):
    """The download links and the table cells' text of an HTML fragment."""

    def __init__(self):
        super().__init__()
        self.links, self.cells, self._in_cell = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs))
        self._in_cell = tag in ("td", "th")

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


def _download(table) -> tuple[str, bytes, list[str]]:
    parser = _Links()
    parser.feed(table._repr_html_())
    (link,) = parser.links
    prefix = "data:text/csv;base64,"
    assert link["href"].startswith(prefix)
    return link["download"], base64.b64decode(link["href"][len(prefix) :]), parser.cells


def test_a_table_offers_its_numbers_at_full_precision_as_a_csv_download():
    frame = pd.DataFrame({"AUC": [12.345678901234, float("nan")], "n": [3, 4]}, index=pd.Index(["NeuronMCT", "Random"], name="method"))
    name, content, cells = _download(plotting.styled(frame, precision=1, csv_name="lerf-auc"))
    assert name == "lerf-auc.csv"
    back = pd.read_csv(io.BytesIO(content), index_col="method")
    pd.testing.assert_frame_equal(back, frame)
    assert back.loc["NeuronMCT", "AUC"] == 12.345678901234  # not the shown rounding
    assert "12.3" in cells and "-" in cells and not any("12.34" in c for c in cells)


def test_a_table_with_two_column_levels_downloads_both_levels():
    frame = pd.concat({"photos": pd.DataFrame({"a": [0.125, 2.0]}), "digits": pd.DataFrame({"a": [1 / 3, 4.0]})}, axis=1)
    _, content, _ = _download(plotting.styled(frame, 2, csv_name="x"))
    back = pd.read_csv(io.BytesIO(content), header=[0, 1], index_col=0)
    np.testing.assert_array_equal(back.to_numpy(), frame.to_numpy())
    assert list(back.columns) == [("photos", "a"), ("digits", "a")]


def test_a_table_of_text_cells_downloads_the_numbers_behind_them():
    numbers = pd.DataFrame({"observed": [12.3456], "chance": [4.5678]})
    shown = pd.DataFrame({"J": ["12.3 (4.6)"]})
    _, content, cells = _download(plotting.styled(shown, csv_name="overlap", numbers=numbers))
    assert "12.3 (4.6)" in cells
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(content), index_col=0), numbers)


def test_a_download_name_must_be_a_plain_file_stem():
    frame = pd.DataFrame({"a": [1.0]})
    for bad in ("", "Table 1", "a/b", "x.csv", 3):
        with pytest.raises(ValueError, match="csv_name"):
            plotting.styled(frame, csv_name=bad)
    with pytest.raises(ValueError, match="needs csv_name"):
        plotting.styled(frame, numbers=frame)
    assert not hasattr(plotting.styled(frame), "href")  # without a name: the plain Styler


def test_a_column_can_have_its_own_format_and_an_unknown_column_is_refused():
    frame = pd.DataFrame({"p": [0.123456], "logit": [12345.678]})
    cells = _download(plotting.styled(frame, 2, csv_name="x", formats={"logit": "{:.1e}"}))[2]
    assert "0.12" in cells and "1.2e+04" in cells
    with pytest.raises(ValueError, match="formats names column 'missing'"):
        plotting.styled(frame, formats={"missing": "{:.1e}"})


def test_float_labels_are_shown_as_written_not_with_six_decimals():
    frame = pd.DataFrame({50.0: [1.0]}, index=pd.MultiIndex.from_tuples([("chelsea", 97.5)], names=["photo", "sparsity"]))
    cells = _download(plotting.styled(frame, csv_name="x"))[2]
    assert "97.5" in cells and "50" in cells and not any("000" in c for c in cells)
