"""The book's figure style: one theme, a few figure builders the notebooks call."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

MAP_CMAP = "jet"
# one colour per method in every figure of the book (BOOK_STYLE.md); the authors' curves reuse them, dashed
METHOD_COLOURS: dict[str, str] = {
    "Gradients": "#1f77b4",
    "Guided Backprop": "#ff7f0e",
    "Grad-CAM": "#2ca02c",
    "InputMCT": "#9467bd",
    "InputIntGrad": "#8c564b",
    "PathwayGrad, NeuronMCT": "#d62728",
    "PathwayGrad, NeuronMCT, 90 %": "#7b0d0d",
    "PathwayGrad, NeuronIntGrad": "#e377c2",
    "PathwayGrad, NeuronIntGrad*": "#bcbd22",
    "random (control)": "#7f7f7f",
    "Sobel edges (control)": "#17becf",
    # paths (pathway decoding); the contribution criteria keep their PathwayGrad colours
    "Original network": "#000000",
    "Active subnet": "#a6761d",
    "NeuronMCT": "#d62728",
    "NeuronIntGrad": "#e377c2",
    "DGR(init=1)": "#1b9e77",
    "DGR(init=r)": "#e6ab02",
    "Greedy": "#7570b3",
    "Greedy (original code)": "#54278f",
}


def set_theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "axes.titlesize": 10})


def heatmap(frame: pd.DataFrame, ax: plt.Axes, title: str, fmt: str = ".1f", vmax: float = 100.0) -> plt.Axes:
    sns.heatmap(
        frame, annot=True, fmt=fmt, cmap="viridis", vmin=0, vmax=vmax, cbar=False, square=True, ax=ax, annot_kws={"size": 8}
    )
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.tick_params(axis="y", rotation=0, labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return ax


def per_site_lines(frame: pd.DataFrame, ax: plt.Axes, ylabel: str, title: str = "") -> plt.Axes:
    """One line per column over the sites (rows) in forward order."""
    for column in frame.columns:
        ax.plot(np.arange(len(frame)), frame[column].to_numpy(), marker=".", label=column)
    ax.set_xlabel("rectifier site (forward order)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return ax


def curves(
    frame: pd.DataFrame,
    ax: plt.Axes,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logy: bool = False,
    spread: pd.DataFrame | None = None,
    dashed: pd.DataFrame | None = None,
    dashed_label: str = "authors",
) -> plt.Axes:
    """One line per column against the index; ``spread`` (same shape) draws a +-band around each;
    ``dashed`` (columns named like ``frame``'s) adds other curves of the same methods, dashed. Methods
    of :data:`METHOD_COLOURS` keep their colour; the legend sits outside the axes."""
    named = not pd.api.types.is_numeric_dtype(frame.index)  # stage names: evenly spaced, labelled
    x = np.arange(len(frame)) if named else frame.index.to_numpy()
    for column in frame.columns:
        y = frame[column].to_numpy(dtype=float)
        (line,) = ax.plot(x, y, marker="o", ms=3, label=column, color=METHOD_COLOURS.get(str(column)))
        if spread is not None:
            band = spread[column].to_numpy(dtype=float)
            ax.fill_between(x, y - band, y + band, color=line.get_color(), alpha=0.12, lw=0)
    if dashed is not None:
        for column in dashed.columns:
            ax.plot(
                dashed.index.to_numpy(),
                dashed[column].to_numpy(dtype=float),
                ls="--",
                lw=1,
                color=METHOD_COLOURS.get(str(column)),
                label=f"{column} ({dashed_label})",
            )
    if named:
        ax.set_xticks(x, [str(i) for i in frame.index])
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    return ax


def map_grid(
    image: np.ndarray | Sequence[np.ndarray],
    rows: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
) -> plt.Figure:
    """A photo, then one row of |map| panels (jet, as the paper shows them); ``image`` is one photo
    for every row (H, W, 3) or one photo per row."""
    n_rows, n_cols = len(rows), len(col_labels)
    images = [image] * n_rows if isinstance(image, np.ndarray) and image.ndim == 3 else list(image)
    if len(images) != n_rows:
        raise ValueError(f"image must be one (H, W, 3) photo or one per row ({n_rows}), got {len(images)}")
    fig, axes = plt.subplots(n_rows, n_cols + 1, figsize=(1.6 * (n_cols + 1), 1.7 * n_rows), squeeze=False)
    for r, maps in enumerate(rows):
        axes[r, 0].imshow(images[r])
        axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
        for c, m in enumerate(maps):
            axes[r, c + 1].imshow(np.abs(np.asarray(m, dtype=np.float32)), cmap=MAP_CMAP, vmin=0, vmax=1)
            if r == 0:
                axes[r, c + 1].set_title(col_labels[c], fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    fig.tight_layout()
    return fig
