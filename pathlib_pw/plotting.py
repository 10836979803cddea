"""The book's figure style: one theme, one colour per method, and the few figure builders the
notebooks call (the book's figure conventions: column width, legible text, one palette)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from typing import Any

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

# the book's text column at a 1400 px window is 772 px: a figure drawn at most this wide at the book's
# 90 dpi is shown at 100 %, so its text lands on screen at the size it is drawn (8 pt is 10 px); the
# notebook's inline backend pads the figure by 0.1 in on each side, so 8.3 in come out 765 px wide
COLUMN_WIDTH_IN = 8.3
DPI = 90
# font sizes in points: nothing smaller than MIN_FONT_PT anywhere
MIN_FONT_PT = 8.0
TICK_PT = 8.0
LEGEND_PT = 8.0
LABEL_PT = 9.0
TITLE_PT = 10.0
# a map panel in inches: at 90 dpi about 200 px, so a map can be read over its photo
MAP_PANEL_IN = 2.35
# markers per series in draw order, each drawn smaller than the one before, so that a series lying
# on another still shows around it
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")

# signed maps in [-1, 1]: a diverging map centred at 0 (red: raises the explained logit)
MAP_CMAP = "RdBu_r"
# one colour per method in every figure of the book, ours and the authors' alike; a pathway
# criterion and PathwayGrad through its path are one method and share a colour
METHOD_COLOURS: dict[str, str] = {
    "Gradients": "#1f77b4",
    "Guided Backprop": "#ff7f0e",
    "Grad-CAM": "#2ca02c",
    "InputMCT": "#9467bd",
    "InputMCT (authors' script)": "#c5b0d5",
    "InputIntGrad": "#8c564b",
    "NeuronMCT": "#d62728",
    "NeuronIntGrad": "#e377c2",
    "NeuronIntGrad*": "#bcbd22",
    "DGR(init=1)": "#17becf",
    "DGR(init=r)": "#0b6e79",
    "Greedy": "#393b79",
    "Greedy (original code)": "#e7ba52",
    "Greedy (ties by position)": "#9c9ede",
    "Random (dead first)": "#3f3f3f",
    "Activation (dead first)": "#a55194",
    "DGR(init=1), 1000 iterations": "#0e8a96",
    "DGR(init=r), 1000 iterations": "#063f45",
    "Random": "#7f7f7f",
    "random (control)": "#c7c7c7",
    "Sobel edges (control)": "#637939",  # olive green: apart from InputIntGrad's brown
    # paths of the pathway decoding chapter
    "Original network": "#000000",
    "Active subnet": "#a6761d",
}
# other spellings of the same methods in the caches, the authors' tables and the registry
ALIASES: dict[str, str] = {
    "GBP": "Guided Backprop",
    "GradCAM": "Grad-CAM",
    "NeuronIntGrad (original code)": "NeuronIntGrad*",  # the authors' accumulated alphas
    "Full network": "Original network",  # the unmasked network beside paths (local linearity)
}
_SUFFIX = re.compile(r"^(?P<name>.*?)(?:, (?P<level>\d+(?:\.\d+)?) %)?(?: \((?P<source>authors(?:,[^)]*)?)\))?$")


def canonical_method(name: str) -> str:
    """The key of :data:`METHOD_COLOURS` for a method's label: aliases resolved, a ``PathwayGrad, ``
    prefix, a sparsity suffix (``, 90 %``) and an ``(authors...)`` suffix dropped. ValueError for a
    label that names no method of the book."""
    match = _SUFFIX.match(str(name))
    base = match["name"] if match else str(name)
    base = ALIASES.get(base, base).removeprefix("PathwayGrad, ")
    base = ALIASES.get(base, base)
    if base not in METHOD_COLOURS:
        raise ValueError(f"{name!r} names no method of the book's palette; known: {sorted(METHOD_COLOURS)} and {sorted(ALIASES)}")
    return base


def is_method(name: str) -> bool:
    """Whether ``name`` labels a method of the palette (see :func:`canonical_method`)."""
    try:
        canonical_method(name)
    except ValueError:
        return False
    return True


def method_colour(name: str) -> str:
    """The method's colour; a sparser variant of a method (``PathwayGrad, NeuronMCT, 90 %``) gets a
    darker shade of it, so that both can share a figure."""
    colour = METHOD_COLOURS[canonical_method(name)]
    match = _SUFFIX.match(str(name))
    if match and match["level"] and float(match["level"]) >= 90:
        r, g, b = mcolors.to_rgb(colour)
        return mcolors.to_hex((0.55 * r, 0.55 * g, 0.55 * b))
    return colour


def method_label(name: str, maps: bool = False) -> str:
    """The method's name on the page; ``maps=True`` names a criterion's map as what it is
    (``NeuronMCT`` -> ``PathwayGrad, NeuronMCT``)."""
    label = ALIASES.get(name, name) if name in ("GBP", "GradCAM") else name
    if maps and label in ("NeuronMCT", "NeuronIntGrad", "NeuronIntGrad*"):
        return f"PathwayGrad, {label}"
    return label


def set_theme() -> None:
    """The book's figure style: seaborn's white grid, drawn at :data:`DPI` with the font sizes above,
    and figures :data:`COLUMN_WIDTH_IN` wide by default."""
    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "figure.figsize": (COLUMN_WIDTH_IN, 3.4),
            "font.size": LABEL_PT,
            "axes.titlesize": TITLE_PT,
            "axes.labelsize": LABEL_PT,
            "xtick.labelsize": TICK_PT,
            "ytick.labelsize": TICK_PT,
            "legend.fontsize": LEGEND_PT,
            "legend.title_fontsize": LABEL_PT,
            "figure.titlesize": TITLE_PT,
        }
    )


def figure(
    nrows: int = 1, ncols: int = 1, row_height: float = 3.0, width: float = COLUMN_WIDTH_IN, **kwargs: Any
) -> tuple[plt.Figure, Any]:
    """A figure of ``nrows`` x ``ncols`` axes at the column width (``row_height`` inches per row), laid
    out by matplotlib's constrained layout so that titles, labels and legends stay inside it: shown at
    100 % in the book. ``kwargs`` go to :func:`matplotlib.pyplot.subplots` (``sharex``, ``squeeze``...).
    ValueError for a ``width`` above :data:`COLUMN_WIDTH_IN`."""
    if nrows < 1 or ncols < 1:
        raise ValueError(f"nrows and ncols must be at least 1, got {nrows} and {ncols}")
    if not 0 < width <= COLUMN_WIDTH_IN:
        raise ValueError(f"width must be in (0, {COLUMN_WIDTH_IN}] inches (the column), got {width!r}")
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, row_height * nrows), layout="constrained", **kwargs)
    return fig, axes


def _constrained(fig: plt.Figure) -> bool:
    engine = fig.get_layout_engine()
    return engine is not None and type(engine).__name__ == "ConstrainedLayoutEngine"


def heatmap(
    frame: pd.DataFrame,
    ax: plt.Axes,
    title: str,
    fmt: str = ".1f",
    vmax: float | None = None,
    blank_diagonal: bool = True,
) -> plt.Axes:
    """An annotated matrix; the diagonal (a method with itself, always 100 %) is left blank so that the
    colour scale (0 to ``vmax``, default the largest other value) spreads over the comparisons. With
    ``blank_diagonal=False`` the diagonal is shown, for a matrix whose diagonal is a measurement (the
    decodings of one path across its seeds)."""
    values = frame.to_numpy(dtype=float)
    square = frame.index.equals(frame.columns) and blank_diagonal
    diagonal = np.eye(len(values)) > 0 if square else np.zeros(values.shape, dtype=np.bool_)
    off = values[np.logical_not(diagonal)]
    top = vmax if vmax is not None else (float(np.nanmax(off)) if np.isfinite(off).any() else 1.0)
    sns.heatmap(
        frame,
        annot=True,
        fmt=fmt,
        cmap="viridis",
        vmin=0,
        vmax=top,
        mask=diagonal,
        cbar=False,
        square=True,
        ax=ax,
        annot_kws={"size": LABEL_PT},
    )
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45, labelsize=TICK_PT)
    ax.tick_params(axis="y", rotation=0, labelsize=TICK_PT)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return ax


def _colour(column: object) -> str | None:
    return method_colour(str(column)) if is_method(str(column)) else None


def legend_outside(ax: plt.Axes, ncol: int = 1) -> None:
    """The axes' legend to the right of the plotted data (in a :func:`figure`, the axes narrow to make
    room for it)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol, frameon=False)


def legend_below(fig: plt.Figure, axes: Sequence[plt.Axes], ncol: int = 4) -> None:
    """One legend for all ``axes`` (labels deduplicated, first seen first), below the figure; every
    axes' own legend is removed. In a :func:`figure` the layout makes room for it."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
        own = ax.get_legend()
        if own is not None:
            own.remove()
    if _constrained(fig):
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=ncol, frameon=False)
    else:
        fig.legend(list(seen.values()), list(seen), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False)


def _pair(column: object) -> tuple[str, str] | None:
    """The two methods of an ``"A vs B"`` label, when both are methods of the palette."""
    parts = str(column).split(" vs ")
    if len(parts) == 2 and all(is_method(p) for p in parts):
        return parts[0], parts[1]
    return None


def _marker_size(k: int, largest: float = 7.0, smallest: float = 3.0) -> float:
    return max(smallest, largest - 0.8 * k)


def per_site_lines(frame: pd.DataFrame, ax: plt.Axes, ylabel: str, title: str = "", legend: bool = True) -> plt.Axes:
    """One line per column over the sites (rows) in forward order; NaN (undefined at a site) leaves a
    gap. Method columns take their palette colour; a pair ``"A vs B"`` of methods is drawn in A's
    colour with markers filled in B's. Each series has its own marker, smaller than the one drawn
    before it, so that a series lying on another still shows. The legend sits outside the axes
    (``legend=False``: none, for :func:`legend_below`)."""
    x = np.arange(len(frame))
    for k, column in enumerate(frame.columns):
        pair = _pair(column)
        colour = method_colour(pair[0]) if pair else _colour(column)
        face = method_colour(pair[1]) if pair else colour
        ax.plot(
            x,
            frame[column].to_numpy(dtype=float),
            marker=MARKERS[k % len(MARKERS)],
            ms=_marker_size(k),
            lw=1.4,
            label=str(column),
            color=colour,
            markerfacecolor=face,
            markeredgecolor=colour,
            zorder=2 + k,
        )
    ax.set_xlabel("rectifier site (forward order)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        legend_outside(ax)
    return ax


def _fit_limits(ax: plt.Axes, ylim: tuple[float, float], values: Sequence[np.ndarray]) -> None:
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    low, high = ylim
    if finite.size:
        margin = 0.03 * (high - low)
        low, high = min(low, float(finite.min()) - margin), max(high, float(finite.max()) + margin)
    ax.set_ylim(low, high)


def curves(
    frame: pd.DataFrame,
    ax: plt.Axes,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logy: bool = False,
    spread: pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame] | None = None,
    dashed: pd.DataFrame | None = None,
    dashed_label: str = "authors",
    linestyle: str = "-",
    label_suffix: str = "",
    ylim: tuple[float, float] | None = None,
    legend: bool = True,
) -> plt.Axes:
    """One line per column against the index, in the method's colour, each with its own marker (smaller
    than the one drawn before it, so that a curve lying on another still shows); ``spread`` (same shape) draws a
    +-band around each, or, given as a (low, high) pair of frames, the band between them; ``dashed`` (columns named like ``frame``'s) adds other curves of the same
    methods, dashed in the same colours, labelled ``(dashed_label)`` (an index of stage names is matched by name). ``linestyle`` and ``label_suffix`` draw ``frame``
    itself as someone else's curves. ``ylim`` is widened to show every value. The legend sits outside
    the axes (``legend=False``: none, for :func:`legend_below`)."""
    named = not pd.api.types.is_numeric_dtype(frame.index)  # stage names: evenly spaced, labelled
    x = np.arange(len(frame)) if named else frame.index.to_numpy()
    drawn = []
    for k, column in enumerate(frame.columns):
        y = frame[column].to_numpy(dtype=float)
        drawn.append(y)
        (line,) = ax.plot(
            x,
            y,
            marker=MARKERS[k % len(MARKERS)] if linestyle == "-" else None,
            ms=_marker_size(k, 6.0),
            ls=linestyle,
            zorder=2 + k,
            label=f"{column}{label_suffix}",
            color=_colour(column),
        )
        if spread is not None:
            if isinstance(spread, tuple):
                low, high = (s[column].to_numpy(dtype=float) for s in spread)
            else:
                low, high = y - spread[column].to_numpy(dtype=float), y + spread[column].to_numpy(dtype=float)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.12, lw=0)
            drawn += [low, high]
    if dashed is not None:
        if named:  # the other curves at the positions of ``frame``'s stages, by name
            missing = [str(i) for i in dashed.index if i not in frame.index]
            if missing:
                raise ValueError(f"dashed has rows {missing} that frame's index lacks")
            dashed_x = np.array([frame.index.get_loc(i) for i in dashed.index])
        else:
            dashed_x = dashed.index.to_numpy()
        for column in dashed.columns:
            y = dashed[column].to_numpy(dtype=float)
            drawn.append(y)
            ax.plot(dashed_x, y, ls="--", lw=1.4, color=_colour(column), label=f"{column} ({dashed_label})")
    if named:
        ax.set_xticks(x, [str(i) for i in frame.index])
        ax.tick_params(axis="x", labelrotation=90, labelsize=TICK_PT)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        _fit_limits(ax, ylim, drawn)
    if legend:
        legend_outside(ax)
    return ax


def _blank(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def scaled_map(m: np.ndarray, percentile: float | None) -> np.ndarray:
    """A signed map divided by its ``percentile``-th percentile of magnitudes (its maximum when None,
    or when that percentile is 0) and clipped to [-1, 1], as the map grids colour it."""
    values = np.asarray(m, dtype=np.float32)
    magnitude = np.abs(values)
    top = float(magnitude.max() if percentile is None else np.percentile(magnitude, percentile))
    if top == 0:  # an all-zero map, or one whose percentile falls on zeros: fall back to its maximum
        top = float(magnitude.max())
    return np.clip(values / top, -1, 1) if top > 0 else values


def grey_background(photo: np.ndarray) -> np.ndarray:
    """The photo's luminance (H, W) in [0.35, 1], faded towards white, to lie under a map without
    competing with it."""
    values = np.asarray(photo, dtype=np.float32)
    grey = values @ np.array([0.299, 0.587, 0.114], dtype=np.float32) if values.ndim == 3 else values
    low, high = float(grey.min()), float(grey.max())
    grey = (grey - low) / (high - low) if high > low else np.zeros_like(grey)
    return 0.35 + 0.65 * grey


def map_grid(
    image: np.ndarray | Sequence[np.ndarray],
    rows: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    panel: float = MAP_PANEL_IN,
    photos_on_top: bool = False,
    percentile: float | None = 99.0,
    colorbar_label: str | None = None,
    overlay: bool = True,
    max_width: float | None = None,
) -> plt.Figure:
    """Signed maps, ``rows`` x columns, in a diverging colour map centred at 0 with one colorbar for
    the figure. Each map is divided by the ``percentile`` of its magnitudes and clipped to [-1, 1], so
    that more than its few largest pixels show (``None``: divided by its largest magnitude). ``image``
    is one (H, W, 3) photo for the whole figure (shown once, top left), one photo per row (left of its
    row) or, with ``photos_on_top``, one photo per column (a first row of photos). With ``overlay``
    each map is drawn translucent over its photo in grey, so that where it lies on the object can be
    judged. ``panel`` is a map's size in inches (at the book's 90 dpi, 2.35 in is drawn about 200 px wide once the labels have their room). With
    ``max_width`` (the book's chapters: :data:`COLUMN_WIDTH_IN`) a figure wider than that many inches
    is refused with a ValueError naming how many columns fit.
    """
    if percentile is not None and not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100] or None, got {percentile!r}")
    if colorbar_label is None:
        colorbar_label = (
            "attribution / max |attribution|"
            if percentile is None
            else f"attribution / its {percentile:g}th percentile of |attribution|"
        )
    n_rows, n_cols = len(rows), len(col_labels)
    if len(row_labels) != n_rows or any(len(r) != n_cols for r in rows):
        raise ValueError(f"need {n_rows} row labels and {n_cols} maps per row (one per column label)")
    single = isinstance(image, np.ndarray) and image.ndim == 3
    images: list[np.ndarray] = [np.asarray(image)] if single else [np.asarray(i) for i in image]
    wanted = 1 if single else (n_cols if photos_on_top else n_rows)
    if len(images) != wanted:
        where = "column" if photos_on_top else "row"
        raise ValueError(f"image must be one (H, W, 3) photo or one per {where} ({wanted}), got {len(images)}")
    top, left = int(photos_on_top), int(not photos_on_top)
    margin = 1.2  # row labels on the left, the colorbar on the right
    width = panel * (n_cols + left) + margin
    if max_width is not None and width > max_width + 1e-9:
        fits = int((max_width - margin) // panel) - left
        raise ValueError(
            f"{n_cols} columns of {panel:g} in panels are {width:.1f} in wide, more than max_width "
            f"{max_width:g} in: pass at most {fits} columns per figure, or a smaller panel"
        )
    fig, axes = plt.subplots(n_rows + top, n_cols + left, figsize=(width, panel * (n_rows + top) + 0.3), squeeze=False)
    if photos_on_top:
        for c, photo in enumerate(images):
            axes[0, c].imshow(photo)
            axes[0, c].set_title(col_labels[c], fontsize=TICK_PT)
    elif single:
        axes[0, 0].imshow(images[0])
        axes[0, 0].set_title("photo", fontsize=TICK_PT)
    else:
        for r, photo in enumerate(images):
            axes[r, 0].imshow(photo)
    shown = None
    for r, maps in enumerate(rows):
        for c, m in enumerate(maps):
            ax = axes[r + top, c + left]
            values = scaled_map(m, percentile)
            extent = (-0.5, values.shape[1] - 0.5, values.shape[0] - 0.5, -0.5)
            if overlay:
                photo = images[0] if single else images[c if photos_on_top else r]
                ax.imshow(grey_background(photo), cmap="gray", vmin=0, vmax=1, extent=extent)
            shown = ax.imshow(values, cmap=MAP_CMAP, vmin=-1, vmax=1, alpha=0.75 if overlay else 1.0, extent=extent)
            if r == 0 and not photos_on_top:
                ax.set_title(col_labels[c], fontsize=TICK_PT)
        labelled = axes[r + top, 1 if single else 0]
        labelled.set_ylabel(row_labels[r], fontsize=TICK_PT)
    for ax in axes.flat:
        _blank(ax)
    right = 1 - 0.85 / width
    fig.tight_layout(rect=(0, 0, right, 1))
    if shown is not None:
        cax = fig.add_axes((right + 0.1 / width, 0.3, 0.12 / width, 0.4))
        fig.colorbar(shown, cax=cax, label=colorbar_label).ax.tick_params(labelsize=TICK_PT)
    return fig


# a table's download name: a file stem (the book uses CHAPTER-TABLE); ".csv" is added
_CSV_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class DownloadableTable:
    """An HTML table with its numbers as a CSV download right below it.

    The link is a data: URI, so it works offline and on a static site; the CSV holds the numbers at full
    precision while the table shows them rounded."""

    def __init__(self, styler: Any, numbers: pd.DataFrame, csv_name: str) -> None:
        self.styler = styler
        self.numbers = numbers
        self.filename = f"{csv_name}.csv"

    def csv(self) -> str:
        return self.numbers.to_csv()

    def href(self) -> str:
        return "data:text/csv;base64," + base64.b64encode(self.csv().encode("utf-8")).decode("ascii")

    def _repr_html_(self) -> str:
        link = f'<a class="table-download" download="{html.escape(self.filename)}" href="{self.href()}">Download CSV</a>'
        return f'<div class="book-table-block">{self.styler.to_html()}<p class="table-download">{link}</p></div>'

    def __repr__(self) -> str:
        rows, columns = self.numbers.shape
        return f"<table {self.filename}: {rows} rows x {columns} columns>"


def _float_label(value: object) -> object:
    """An index label as a reader writes it: 50.0 as "50", 0.25 as "0.25" (pandas shows "50.000000")."""
    return f"{value:g}" if isinstance(value, float) else value


def styled(
    frame: pd.DataFrame,
    precision: int = 1,
    csv_name: str | None = None,
    numbers: pd.DataFrame | None = None,
    formats: dict[Any, str] | None = None,
) -> Any:
    """A table as the book shows it (HTML): fixed decimals, "-" for undefined values; `formats` maps
    columns to their own format string (e.g. {"logit": "{:.1e}"}).

    With `csv_name` (a file stem such as "lerf-auc-digits"), the table comes with a "Download CSV" link
    to its numbers at full precision: `frame` itself, or `numbers` where the shown frame holds text
    (e.g. "12.3 (4.5)" cells)."""
    styler = (
        frame.style.format(precision=precision, na_rep="-")
        .set_table_attributes('class="book-table"')
        .set_table_styles([{"selector": "th, td", "props": [("padding", "2px 4px")]}])
        .format_index(_float_label, axis=0)
        .format_index(_float_label, axis=1)
    )
    for column, fmt in (formats or {}).items():
        if column not in frame.columns:
            raise ValueError(
                f"styled: formats names column {column!r}, which the table lacks; its columns: {list(frame.columns)}"
            )
        styler = styler.format(fmt, subset=[column], na_rep="-")
    if csv_name is None:
        if numbers is not None:
            raise ValueError("styled: numbers is the CSV download's content; it needs csv_name")
        return styler
    if not isinstance(csv_name, str) or not _CSV_NAME.match(csv_name):
        raise ValueError(
            f"styled: csv_name must be a file stem of lower-case letters, digits, '-' and '_' "
            f"(e.g. 'lerf-auc-digits'; '.csv' is added), got {csv_name!r}"
        )
    return DownloadableTable(styler, frame if numbers is None else numbers, csv_name)


__all__ = [
    "ALIASES",
    "COLUMN_WIDTH_IN",
    "DPI",
    "DownloadableTable",
    "LABEL_PT",
    "LEGEND_PT",
    "MAP_PANEL_IN",
    "MIN_FONT_PT",
    "TICK_PT",
    "TITLE_PT",
    "MAP_CMAP",
    "METHOD_COLOURS",
    "canonical_method",
    "curves",
    "figure",
    "grey_background",
    "heatmap",
    "is_method",
    "legend_below",
    "legend_outside",
    "map_grid",
    "method_colour",
    "method_label",
    "per_site_lines",
    "scaled_map",
    "set_theme",
    "styled",
]
