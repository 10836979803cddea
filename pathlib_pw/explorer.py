"""The book's map explorer (book/explorer.md): the cached results turned into static assets that a
page scrubs through in the browser, with no kernel and nothing fetched from elsewhere.

:func:`index` lists, per photo and criterion, the PathwayGrad map at each swept sparsity (the
``map_explorer`` cache) with its realized sparsity and the path's output change, and the baselines
beside them (the ``qualitative`` cache: same photos, model and explained class); :func:`render_map`
draws one map as the chapters do (:data:`pathlib_pw.plotting.MAP_CMAP`, over the photo in grey);
:func:`curves` holds the plotted numbers of the main curves (sparsity sweep, LeRF, ROAR) for their
hover versions; :func:`build` writes all of it, atomically, under ``_static/explorer/data``
(``scripts/build_explorer.py``).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pathlib_pw.runner.cache import Results, replace_folder

DATA_DIR = Path("_static") / "explorer" / "data"
"""Where :func:`build` writes, relative to the book's root."""
PERCENTILE = 99.0
"""Each map is divided by this percentile of its magnitudes and clipped, as in the chapters' map grids."""
OVERLAY_ALPHA = 0.75
"""The map's opacity over the grey photo (the chapters' ``map_grid(overlay=True)``)."""
WEBP_QUALITY = 80
"""Lossy WebP: a 224 px map takes about 10 KB instead of about 100 KB as PNG."""
BASELINES: tuple[tuple[str, str], ...] = (
    ("Guided Backprop", "GBP"),
    ("Grad-CAM", "GradCAM"),
    ("InputMCT", "InputMCT"),
    ("InputIntGrad", "InputIntGrad"),
)
"""The baselines shown beside the pathways' maps: (label on the page, label in the ``qualitative``
cache). ``Gradients``, the map at sparsity 0, comes from the ``map_explorer`` cache."""
# the sparsity sweep chapter's three panels (book/sparsity_sweep.ipynb)
SWEEP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contribution criteria", ("NeuronMCT", "NeuronIntGrad", "NeuronIntGrad (original code)")),
    ("pruners", ("DGR(init=1)", "DGR(init=r)", "Greedy", "Random", "Greedy (original code)")),
    ("activity-aware controls, and NeuronMCT", ("Random (dead first)", "Activation (dead first)", "NeuronMCT")),
)


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in label.lower()).strip("_")


def _number(value: float, digits: int = 2) -> float | None:
    """A JSON number rounded to ``digits`` decimals; None for NaN."""
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


def _significant(value: float) -> float | None:
    """A plotted value with 4 significant digits (the digits' LeRF curves lie near 0.01); None for NaN."""
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.4g}")


def render_map(values: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """One signed map (H, W) as an RGB image (H, W, 3) of uint8: divided by its :data:`PERCENTILE`th
    percentile of magnitudes and clipped to [-1, 1], coloured with :data:`pathlib_pw.plotting.MAP_CMAP`
    (centred at 0) and laid at :data:`OVERLAY_ALPHA` over ``grey`` (H, W) in [0, 1]."""
    from matplotlib import colormaps

    from pathlib_pw.plotting import MAP_CMAP, scaled_map

    values, grey = np.asarray(values), np.asarray(grey, dtype=np.float32)
    if values.ndim != 2 or grey.shape != values.shape:
        raise ValueError(f"values and grey must be two (H, W) arrays of one shape, got {values.shape} and {grey.shape}")
    colours = colormaps[MAP_CMAP]((scaled_map(values, PERCENTILE) + 1) / 2)[..., :3]
    mixed = OVERLAY_ALPHA * colours + (1 - OVERLAY_ALPHA) * grey[..., None]
    return np.clip(np.rint(mixed * 255), 0, 255).astype(np.uint8)


def _webp(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="WEBP", quality=WEBP_QUALITY, method=6)
    return buffer.getvalue()


def _check_pair(maps: Results, qualitative: Results) -> None:
    """The baselines must explain the same photos and class as the maps beside them."""
    ours, theirs = [str(n) for n in maps["names"]], [str(n) for n in qualitative["names"]]
    if ours != theirs:
        raise ValueError(f"the map_explorer and qualitative caches must hold the same photos, got {ours} and {theirs}")
    if maps.config["inputs"]["model"] != qualitative.config["inputs"]["model"]:
        raise ValueError("the map_explorer and qualitative caches must come from the same model")
    if not np.array_equal(np.asarray(maps["predicted"]), np.asarray(qualitative["predicted"])[:, 0]):
        raise ValueError("the map_explorer and qualitative caches must explain the same class of each photo")


def _photos(maps: Results) -> np.ndarray:
    """The cache's images (N, H, W, 3) in [0, 1], loaded as its run loaded them."""
    from pathlib_pw import experiments
    from pathlib_pw.imagenet import denormalize

    x, _ = experiments.get_config("map_explorer", maps.meta.get("profile", "book")).inputs.load_images()
    return denormalize(x).permute(0, 2, 3, 1).clamp(0, 1).numpy()


def _picture(photo: str, what: str, level: float | None = None) -> str:
    """The file of one picture of ``photo`` (relative to :data:`DATA_DIR`): ``what`` is "photo",
    "gradients", a baseline's label, or a criterion with its sparsity ``level``; :func:`index` names
    it and :func:`images` draws it."""
    return f"maps/{_slug(photo)}/{_slug(what)}{'' if level is None else f'_{level:g}'}.webp"


def index(maps: Results, qualitative: Results) -> dict[str, Any]:
    """What the explorer page shows, as JSON-ready data: per photo its predicted class, and per
    criterion one entry per sparsity (0: the full network, the plain input gradient) with the
    requested and realized sparsity (%), the path's output change (%) and the map's file, relative to
    :data:`DATA_DIR`; the baselines' files per photo; the methods' colours. ``maps`` is the
    ``map_explorer`` cache, ``qualitative`` the ``qualitative`` cache of the same profile."""
    from pathlib_pw.imagenet import imagenet_class_names
    from pathlib_pw.plotting import MAP_CMAP, method_colour, method_label

    _check_pair(maps, qualitative)
    classes = imagenet_class_names()
    criteria = [str(m) for m in maps["methods"]]
    levels = [float(s) for s in maps["sparsities"]]
    photos = []
    for i, name in enumerate(str(n) for n in maps["names"]):
        series = {}
        for m, criterion in enumerate(criteria):
            entries = [{"requested": 0.0, "realized": 0.0, "output_change": 0.0, "src": _picture(name, "gradients")}]
            for j, level in enumerate(levels):
                entries.append(
                    {
                        "requested": level,
                        "realized": _number(maps["realized"][i, m, j]),
                        "output_change": _number(100 * maps["output_change"][i, m, j]),
                        "src": _picture(name, criterion, level),
                    }
                )
            series[criterion] = entries
        photos.append(
            {
                "name": name,
                "predicted": classes[int(maps["predicted"][i])],
                "probability": _number(maps["probability"][i], 3),
                "photo": _picture(name, "photo"),
                "maps": series,
                "baselines": {"Gradients": _picture(name, "gradients")}
                | {label: _picture(name, label) for label, _ in BASELINES},
            }
        )
    return {
        "model": maps.config["inputs"]["model"],
        "size": int(maps.config["inputs"]["size"]),
        "criteria": [{"name": c, "label": method_label(c, maps=True), "colour": method_colour(c)} for c in criteria],
        "sparsities": [0.0, *levels],
        "baselines": ["Gradients", *(label for label, _ in BASELINES)],
        "colormap": MAP_CMAP,
        "percentile": PERCENTILE,
        "photos": photos,
    }


def images(maps: Results, qualitative: Results) -> dict[str, np.ndarray]:
    """Every picture :func:`index` names: path relative to :data:`DATA_DIR` -> RGB uint8 (H, W, 3)."""
    from pathlib_pw.plotting import grey_background

    _check_pair(maps, qualitative)
    names = [str(n) for n in maps["names"]]
    rgb = _photos(maps)
    columns = [str(m) for m in qualitative["methods"]]
    criteria = [str(m) for m in maps["methods"]]
    levels = [float(s) for s in maps["sparsities"]]
    out = {}
    for i, name in enumerate(names):
        photo = rgb[i]
        grey = grey_background(photo)
        out[_picture(name, "photo")] = (photo * 255).round().astype(np.uint8)
        out[_picture(name, "gradients")] = render_map(maps["gradients"][i], grey)
        for label, column in BASELINES:
            out[_picture(name, label)] = render_map(qualitative["maps"][i, 0, columns.index(column)], grey)
        for m, criterion in enumerate(criteria):
            for j, level in enumerate(levels):
                out[_picture(name, criterion, level)] = render_map(maps["maps"][i, m, j], grey)
    return out


def _frame_series(mean: Any, low: Any = None, high: Any = None, dashed: bool = False, suffix: str = "") -> list[dict[str, Any]]:
    from pathlib_pw.plotting import method_colour

    series = []
    for column in mean.columns:
        entry: dict[str, Any] = {
            "label": f"{column}{suffix}",
            "colour": method_colour(str(column)),
            "dashed": dashed,
            "y": [_significant(v) for v in mean[column]],
        }
        if low is not None and high is not None:
            entry["low"] = [_significant(v) for v in low[column]]
            entry["high"] = [_significant(v) for v in high[column]]
        series.append(entry)
    return series


def _panel(
    title: str, xlabel: str, ylabel: str, x: Sequence[float], series: list[dict[str, Any]], interval: str
) -> dict[str, Any]:
    return {
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "x": [float(v) for v in x],
        "interval": interval,
        "series": series,
    }


def curves(paths: Results, lerf: Results, lerf_digits: Results, roar: Results) -> dict[str, Any]:
    """The main curves' plotted numbers, computed by the chapters' own table functions: the sparsity
    sweep's median output change per criterion (``paths``), the LeRF and MoRF curves of the photos and
    the digits (``lerf``, ``lerf_digits``) and ROAR and KAR accuracy (``roar``), each with its 95 %
    interval, the authors' curves where the chapters draw them, and each method's colour."""
    from pathlib_pw.experiments import lerf_tables, paths_tables, roar_tables

    median, low, high = paths_tables.sweep_interval(paths, "output_change")
    n_photos = len(paths["names"])
    sweep = [
        _panel(
            f"{title} ({n_photos} photos)",
            "requested sparsity (%)",
            "output change (%), median",
            median.index,
            _frame_series(median[list(names)], low[list(names)], high[list(names)]),
            "95 % bootstrap interval of the median",
        )
        for title, names in SWEEP_GROUPS
    ]
    orders = {"least": "LeRF (least relevant first)", "most": "MoRF (most relevant first)"}
    lerf_panels = []
    for name, results, dataset in (("photos", lerf, "imagenet"), ("digits", lerf_digits, None)):
        for order, order_title in orders.items():
            mean, low, high = lerf_tables.curve_frames(results.arrays, order)
            series = _frame_series(mean, low, high)
            if dataset and order == "least":
                series += _frame_series(lerf_tables.authors_curves(dataset).reindex(mean.index), dashed=True, suffix=" (authors)")
            lerf_panels.append(
                _panel(
                    f"{order_title}, {len(results['names'])} {name}",
                    "pixels removed (%)",
                    "|p(x') - p(x)| / p(x)",
                    mean.index,
                    series,
                    "95 % bootstrap interval of the mean",
                )
            )
    modes = {"roar": "ROAR (most relevant removed)", "kar": "KAR (least relevant removed)"}
    roar_panels = []
    for fill in (str(f) for f in roar["fills"]):
        for mode, mode_title in modes.items():
            mean, half = roar_tables.accuracy_frames(roar.arrays, mode, fill)
            series = _frame_series(mean, mean - half, mean + half)
            if (mode, fill) == ("roar", "mean"):
                theirs = roar_tables.authors_curves()
                series += _frame_series(theirs.reindex(mean.index), dashed=True, suffix=" (authors, CIFAR-10)")
            roar_panels.append(
                _panel(
                    f"{mode_title}, {roar_tables.FILL_NAMES[fill]}",
                    "pixels removed (%)",
                    "test accuracy (%)",
                    mean.index,
                    series,
                    f"95 % t interval over {len(roar['seeds'])} seeds",
                )
            )
    return {
        "figures": [
            {"id": "sweep", "title": "Sparsity sweep: the path's output change", "panels": sweep},
            {"id": "lerf", "title": "LeRF and MoRF", "panels": lerf_panels},
            {"id": "roar", "title": "ROAR and KAR on the digits", "panels": roar_panels},
        ]
    }


def to_json(data: Mapping[str, Any]) -> str:
    """``data`` as the committed JSON text (sorted keys; ``</`` escaped, so that the text can sit
    inside a ``<script>`` element of the page)."""
    return json.dumps(data, indent=1, sort_keys=True, allow_nan=False).replace("</", "<\\/") + "\n"


def load_sources(profile: str = "book") -> dict[str, Results]:
    """The caches the explorer reads (none is computed: each must be current)."""
    from pathlib_pw import experiments

    names = ("map_explorer", "qualitative", "paths", "lerf", "lerf_digits", "roar")
    missing = [n for n in names if not experiments.is_cached(n, profile)]  # type: ignore[arg-type]
    if missing:
        raise FileNotFoundError(
            f"no current cache of {missing} under data/results/{profile}: run "
            f"`python -m pathlib_pw run {' '.join(missing)} --profile {profile}` first"
        )
    return {n: experiments.load_or_run(n, profile, progress=False) for n in names}  # type: ignore[arg-type]


def figure_png(maps: Results, photo: int = 0, levels: Sequence[float] = (50.0, 90.0, 99.0)) -> bytes:
    """The static figure the page keeps for print: one photo's maps, a row per criterion, at
    ``levels`` (each must be among the cache's sparsities), as PNG bytes."""
    import matplotlib.pyplot as plt

    from pathlib_pw.plotting import COLUMN_WIDTH_IN, map_grid, method_label, set_theme

    cached = [float(s) for s in maps["sparsities"]]
    wrong = [s for s in levels if float(s) not in cached]
    if wrong:
        raise ValueError(f"levels must be among the cached sparsities {cached}, got {list(levels)}")
    set_theme()
    image = _photos(maps)[photo]
    criteria = [str(m) for m in maps["methods"]]
    rows = [[maps["maps"][photo, m, cached.index(float(s))] for s in levels] for m in range(len(criteria))]
    fig = map_grid(
        image,
        rows,
        [method_label(c, maps=True).replace(", ", ",\n") for c in criteria],
        [f"{s:g} % removed" for s in levels],
        panel=1.75,
        max_width=COLUMN_WIDTH_IN,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def build(root: str | os.PathLike[str] = ".", profile: str = "book") -> Path:
    """Write the explorer's assets under ``root``/:data:`DATA_DIR`: ``index.json``, ``curves.json``,
    the maps and photos as WebP and ``figure.png``. They are written to a new folder beside it that
    then replaces the old one (:func:`~pathlib_pw.runner.cache.replace_folder`), so an interrupted
    build leaves the old assets whole. Returns the folder."""
    sources = load_sources(profile)
    maps, qualitative = sources["map_explorer"], sources["qualitative"]

    def write(fresh: Path) -> None:
        for relative, rgb in images(maps, qualitative).items():
            path = fresh / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_webp(rgb))
        (fresh / "index.json").write_text(to_json(index(maps, qualitative)))
        chosen = curves(sources["paths"], sources["lerf"], sources["lerf_digits"], sources["roar"])
        (fresh / "curves.json").write_text(to_json(chosen))
        (fresh / "figure.png").write_bytes(figure_png(maps))

    target = Path(root) / DATA_DIR
    replace_folder(target, write)
    return target


__all__ = [
    "BASELINES",
    "DATA_DIR",
    "build",
    "curves",
    "figure_png",
    "images",
    "index",
    "load_sources",
    "render_map",
    "to_json",
]
