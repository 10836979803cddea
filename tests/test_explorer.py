"""The map explorer's committed assets (_static/explorer/data) are what the committed caches give, and
its rendering is the chapters' (a matplotlib overlay drawn independently)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathlib_pw import experiments, explorer
from pathlib_pw.runner import cache

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / explorer.DATA_DIR
MAX_FILE = 60_000  # bytes per map: a 224 px WebP takes 2-25 KB
MAX_TOTAL = 6_000_000  # the whole folder (the built site must stay under 100 MB)


@pytest.fixture(scope="module")
def sources():
    return explorer.load_sources("book")


def test_the_committed_index_is_what_the_caches_give(sources):
    expected = explorer.to_json(explorer.index(sources["map_explorer"], sources["qualitative"]))
    assert (DATA / "index.json").read_text() == expected, "stale: run `python scripts/build_explorer.py`"


def test_the_committed_curves_are_what_the_caches_give(sources):
    chosen = explorer.curves(sources["paths"], sources["lerf"], sources["lerf_digits"], sources["roar"])
    assert (DATA / "curves.json").read_text() == explorer.to_json(chosen), "stale: run `python scripts/build_explorer.py`"


def test_every_named_picture_is_committed_and_small():
    index = json.loads((DATA / "index.json").read_text())
    named = {"index.json", "curves.json", "figure.png"}
    for photo in index["photos"]:
        named.add(photo["photo"])
        named.update(photo["baselines"].values())
        for criterion in index["criteria"]:
            entries = photo["maps"][criterion["name"]]
            assert [e["requested"] for e in entries] == index["sparsities"]
            named.update(e["src"] for e in entries)
    on_disk = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()}
    assert on_disk == named  # nothing missing, nothing left over
    pictures = [p for p in named if p.endswith(".webp")]
    # 9 photos x (photo + Gradients + 4 baselines + 3 criteria x 7 sparsities)
    assert len(pictures) == len(index["photos"]) * (1 + len(index["baselines"]) + len(index["criteria"]) * (len(index["sparsities"]) - 1))
    for name in pictures:
        assert (DATA / name).stat().st_size < MAX_FILE, name
        with Image.open(DATA / name) as picture:
            assert picture.format == "WEBP" and picture.size == (index["size"], index["size"])
    assert sum((DATA / p).stat().st_size for p in named) < MAX_TOTAL


def test_the_index_matches_the_cache_numbers(sources):
    """Independent of :func:`explorer.index`'s code path: the numbers straight from the arrays."""
    index = json.loads((DATA / "index.json").read_text())
    maps = sources["map_explorer"]
    assert [p["name"] for p in index["photos"]] == [str(n) for n in maps["names"]]
    assert index["sparsities"] == [0.0, *(float(s) for s in maps["sparsities"])]
    for i, photo in enumerate(index["photos"]):
        for m, criterion in enumerate(str(c) for c in maps["methods"]):
            entries = photo["maps"][criterion][1:]
            np.testing.assert_allclose([e["realized"] for e in entries], maps["realized"][i, m], atol=0.006)
            np.testing.assert_allclose([e["output_change"] for e in entries], 100 * maps["output_change"][i, m], atol=0.006)
            assert photo["maps"][criterion][0]["src"] == photo["baselines"]["Gradients"]  # 0 %: the plain gradient


def _matplotlib_overlay(values: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """What the chapters' map_grid draws for one map, rendered by matplotlib at one pixel per value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = values.shape
    top = np.percentile(np.abs(values), 99)
    fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(np.clip(values / top, -1, 1), cmap="RdBu_r", vmin=-1, vmax=1, alpha=0.75, interpolation="nearest")
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out


def test_render_map_is_the_chapters_overlay():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(32, 32)).astype(np.float32)
    grey = rng.uniform(0.35, 1.0, size=(32, 32)).astype(np.float32)
    rendered = explorer.render_map(values, grey)
    assert rendered.shape == (32, 32, 3) and rendered.dtype == np.uint8
    assert np.abs(rendered.astype(int) - _matplotlib_overlay(values, grey).astype(int)).max() <= 2
    # red where the map is positive, blue where it is negative, the photo where it is 0
    big = np.abs(values) > np.percentile(np.abs(values), 90)
    r, b = rendered[..., 0].astype(int), rendered[..., 2].astype(int)
    assert (r[big & (values > 0)] > b[big & (values > 0)]).all() and (b[big & (values < 0)] > r[big & (values < 0)]).all()
    with pytest.raises(ValueError, match="values and grey"):
        explorer.render_map(values, grey[:16])


def _results(name: str, names: list[str], predicted: list[int], model: str = "mobilenet_v2") -> cache.Results:
    arrays = {"names": np.array(names), "predicted": np.array(predicted)}
    return cache.Results(name, {"inputs": {"model": model, "size": 8}}, {"profile": "smoke"}, arrays)


def test_the_baselines_must_explain_the_same_photos_and_class():
    maps = _results("map_explorer", ["a", "b"], [1, 2])
    with pytest.raises(ValueError, match="same photos"):
        explorer.index(maps, _results("qualitative", ["b", "a"], [[2, 2], [1, 1]]))
    with pytest.raises(ValueError, match="same class"):
        explorer.index(maps, _results("qualitative", ["a", "b"], [[1, 1], [3, 3]]))
    with pytest.raises(ValueError, match="same model"):
        explorer.index(maps, _results("qualitative", ["a", "b"], [[1, 1], [2, 2]], model="vgg16"))


def _fake_build(monkeypatch, images):
    monkeypatch.setattr(explorer, "load_sources", lambda profile: dict.fromkeys(("map_explorer", "qualitative", "paths", "lerf", "lerf_digits", "roar")))
    monkeypatch.setattr(explorer, "images", images)
    monkeypatch.setattr(explorer, "index", lambda maps, qualitative: {"photos": []})
    monkeypatch.setattr(explorer, "curves", lambda *sources: {"figures": []})
    monkeypatch.setattr(explorer, "figure_png", lambda maps: b"png")


def test_build_replaces_the_folder_whole_or_not_at_all(tmp_path, monkeypatch):
    old = tmp_path / explorer.DATA_DIR
    old.mkdir(parents=True)
    (old / "index.json").write_text("old")

    def failing(maps, qualitative):
        raise RuntimeError("interrupted")

    _fake_build(monkeypatch, failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        explorer.build(tmp_path)
    assert (old / "index.json").read_text() == "old"
    assert sorted(p.name for p in old.parent.iterdir()) == ["data"]  # no half-written folder left
    pixel = np.zeros((4, 4, 3), dtype=np.uint8)
    _fake_build(monkeypatch, lambda maps, qualitative: {"maps/a/photo.webp": pixel})
    target = explorer.build(tmp_path)
    assert target == old and sorted(p.name for p in old.parent.iterdir()) == ["data"]
    assert json.loads((old / "index.json").read_text()) == {"photos": []}
    assert (old / "figure.png").read_bytes() == b"png" and (old / "maps" / "a" / "photo.webp").stat().st_size > 0


def test_a_missing_cache_is_named_with_the_command(monkeypatch):
    monkeypatch.setattr(experiments, "is_cached", lambda name, profile: name != "roar")
    with pytest.raises(FileNotFoundError, match=r"\['roar'\].*python -m pathlib_pw run roar --profile book"):
        explorer.load_sources("book")


def test_the_page_holds_the_controls_the_script_drives():
    page = (ROOT / "book" / "explorer.md").read_text()
    script = (ROOT / "_static" / "explorer" / "explorer.js").read_text()
    for tag, element in (
        ("select", "explorer-photo"),
        ("select", "explorer-criterion"),
        ("input", "explorer-sparsity"),
        ("img", "explorer-map"),
        ("p", "explorer-readout"),
    ):
        assert re.search(rf'<{tag}[^>]*id="{element}"', page), element
        assert f'"{element}"' in script, element
    assert 'type="range" id="explorer-sparsity"' in page
    for figure in json.loads((DATA / "curves.json").read_text())["figures"]:
        assert f'id="explorer-curves-{figure["id"]}"' in page
    # nothing fetched from elsewhere (the one address is SVG's namespace name, never requested)
    assert re.search(r"https?://", script.replace('"http://www.w3.org/2000/svg"', "")) is None
    toc = (ROOT / "_toc.yml").read_text()
    assert "book/qualitative\n      - file: book/explorer\n" in toc
