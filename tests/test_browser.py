"""The built book in a real browser (issue 30): headless Chromium opens every page of the site built
from this checkout and checks what a reader sees at 1400 px with the network off: no request leaves
the page, nothing is wider than the text column, no table breaks a number across lines, no checked
print is on the page; and the explorer's slider changes the map it shows. The build itself must
report no warning (CI runs `make test`, not `make book`).

Needs Chromium and its driver (Debian: `apt-get install chromium chromium-driver`) and selenium
(requirements.txt); without them the tests are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_book_style import MACHINERY, _code, _source, _stream_text

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "install them with `apt-get install chromium chromium-driver` (Debian) and `pip install selenium`"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1400,1000",
]
# what a page may load: its own files and inline data
LOCAL = ("file://", "data:")
# a pixel of slack for sub-pixel layout
SLACK = 1.0


def _pages() -> list[str]:
    """The book's pages, in the order of the table of contents (book/NAME, without a suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [chapter["file"] for chapter in part.get("chapters", [])]
    return [str(Path(p).with_suffix("")) for p in pages]


PAGES = _pages()

# CI (.ci/run) sets PATHLIB_PW_BROWSER=required: there a missing browser fails the tests, elsewhere skips them
REQUIRED = os.environ.get("PATHLIB_PW_BROWSER") == "required"


def _missing(what: str) -> None:
    (pytest.fail if REQUIRED else pytest.skip)(f"{what}: {INSTALL}")


@pytest.fixture(scope="module")
def browser_installed():
    if CHROMIUM is None or CHROMEDRIVER is None:
        _missing("no chromium or chromedriver on PATH")


@pytest.fixture(scope="module")
def webdriver(browser_installed):
    try:
        import selenium.webdriver as selenium
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")

    options = selenium.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"pathlib_pw-chromium-{os.getpid()}"
    options.add_argument(f"--user-data-dir={profile}")
    # the performance log carries the DevTools Network events: every request a page makes
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = selenium.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get("about:blank")
        driver.get_log("performance")  # the browser's own start-up requests (its new-tab page) are not a page's
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


ANSI = re.compile(r"\x1b\[[0-9;]*m")
# what Sphinx reports as a problem (`make book` fails on it: --warningiserror)
PROBLEM = re.compile(r"WARNING|ERROR|InputError")


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[Path, str]:
    """The book built from this checkout (what the commit contains, not a stale _build), and its log.
    Built without --warningiserror, so that a page with a problem can still be looked at."""
    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "--path-output", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    html, log = out / "_build" / "html", ANSI.sub("", done.stdout + done.stderr)
    if done.returncode != 0 or not (html / "index.html").exists():
        pytest.fail(f"the book did not build ({' '.join(command)}):\n{log[-3000:]}")
    return html, log


@pytest.fixture(scope="module")
def site(build) -> Path:
    return build[0]


def test_the_book_builds_without_warnings(build):
    problems = [line for line in build[1].splitlines() if PROBLEM.search(line)]
    assert not problems, "the book's build reports problems (`make book` fails on them):\n" + "\n".join(problems[:20])


def _requests(driver) -> list[str]:
    """The URLs of every request made since the last look (DevTools Network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    return urls


# resolves once MathJax (where the page has it) has typeset the page and loaded its fonts
TYPESET = """
const done = arguments[arguments.length - 1];
const ready = window.MathJax && MathJax.startup && MathJax.startup.promise;
(ready || Promise.resolve()).then(() => done(true), () => done(false));
"""


def _open(driver, url: str) -> list[str]:
    """Load a page and let it settle; the URLs of every request it made."""
    driver.get(url)  # returns after the load event
    driver.set_script_timeout(10)
    driver.execute_async_script(TYPESET)
    time.sleep(0.2)
    return _requests(driver)


def outgoing(requests: list[str]) -> list[str]:
    return sorted({url[:120] for url in requests if not url.startswith(LOCAL)})


# every block of the article that must fit its text column; `scrollWidth > clientWidth` catches content
# cut off behind a scrollbar or spilling out of a box that itself fits, and an image's natural width
# one drawn wider than the column and shown shrunk
WIDTH_CHECK = """
const article = document.querySelector('article.bd-article') || document.querySelector('.bd-article');
if (!article) return {error: 'no article column (.bd-article) on the page'};
const style = getComputedStyle(article), box = article.getBoundingClientRect();
const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
const page = (document.querySelector('.bd-content') || document.body).getBoundingClientRect();
const heading = el => {
  let node = el.closest('section');
  const h = node && node.querySelector('h1, h2, h3, h4');
  return h ? h.textContent.replace('#', '').trim().slice(0, 60) : '';
};
const wide = [];
const blocks = 'p, li, dd, blockquote, pre, table, figure, img, div.highlight, div.output, div.cell_output, mjx-container[display="true"]';
for (const el of article.querySelectorAll(blocks)) {
  if (!el.checkVisibility()) continue;
  const r = el.getBoundingClientRect();
  if (r.width === 0) continue;
  // a cell tagged full-width (the intro's claims table) may use the margin beside the column, no more
  const frame = el.closest('.full-width, .tag_full-width');
  const edge = frame ? Math.min(frame.getBoundingClientRect().right, page.right) : right;
  const beyond = Math.max(r.right - edge, left - r.left);
  // an image drawn wider than it is shown is scaled down, and its text with it
  const hidden = el.tagName === 'IMG' ? el.naturalWidth - r.width : el.scrollWidth - el.clientWidth;
  if (beyond > arguments[0] || hidden > arguments[0]) {
    wide.push({what: el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : ''),
               text: (el.innerText || el.getAttribute('src') || '').trim().slice(0, 60).replace(/\\s+/g, ' '),
               section: heading(el), width: Math.round(r.width), column: Math.round(right - left),
               beyond: Math.round(beyond), hidden: Math.round(hidden)});
  }
}
return {column: right - left, wide: wide};
"""

# the text of every plain-text output a reader can see
VISIBLE_TEXT_OUTPUTS = """
return Array.from(document.querySelectorAll('div.cell_output .output.stream, div.cell_output .output.text_plain'))
  .filter(el => el.checkVisibility() && el.getBoundingClientRect().height > 0)
  .map(el => el.innerText);
"""


# words of a table that the layout breaks across lines ("3.67" over "1"): a column squeezed below its
# content's width; code names may break (they are long dotted paths)
BROKEN_WORDS = """
const broken = [];
for (const cell of document.querySelectorAll('.bd-article td, .bd-article th')) {
  if (!cell.checkVisibility()) continue;
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest('code')) continue;
    // a break after a hyphen ("Grad-" over "CAM") is where text may break
    for (const word of node.data.matchAll(/[^\\s-]+-?/g)) {
      const range = document.createRange();
      range.setStart(node, word.index);
      range.setEnd(node, word.index + word[0].length);
      const lines = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
      if (lines.size > 1) broken.push(word[0]);
    }
  }
}
return broken;
"""


def _normal(text: str) -> str:
    return " ".join(text.split())


def checked_prints(notebook: Path) -> list[str]:
    """What the notebook's checked cells print (test_book_style: a cell nbval compares)."""
    if not notebook.exists():
        return []
    prints = [_stream_text(cell) for _, cell in _code(notebook) if MACHINERY["an nbval marker"].search(_source(cell))]
    return [_normal(p) for p in prints if p.strip()]


def visible_checked_prints(driver, prints: list[str]) -> list[str]:
    shown = [_normal(t) for t in driver.execute_script(VISIBLE_TEXT_OUTPUTS)]
    # a short print ("3") would match inside any text: only whole prints, or long parts of them
    def same(a: str, b: str) -> bool:
        return a == b or (len(b) >= 20 and b in a) or (len(a) >= 20 and a in b)

    return [text[:100] for text in shown if text and any(same(text, p) for p in prints)]


def read_page(driver, url: str, prints: list[str]) -> dict:
    requests = _open(driver, url)
    widths = driver.execute_script(WIDTH_CHECK, SLACK)
    return {
        "outgoing": outgoing(requests),
        "widths": widths,
        "broken words": driver.execute_script(BROKEN_WORDS),
        "checked prints": visible_checked_prints(driver, prints),
    }


@pytest.fixture(scope="module")
def pages(site, webdriver):
    """Each page read once, on first use."""
    cache: dict[str, dict] = {}

    def read(page: str) -> dict:
        if page not in cache:
            html = site / f"{page}.html"
            assert html.exists(), f"{page}.html is not in the built site"
            cache[page] = read_page(webdriver, html.as_uri(), checked_prints(ROOT / f"{page}.ipynb"))
        return cache[page]

    return read


@pytest.mark.parametrize("page", PAGES)
def test_a_page_makes_no_request_off_the_site(pages, page):
    sent = pages(page)["outgoing"]
    assert not sent, f"{page}: the page requests what is not in the site (it must read offline):\n" + "\n".join(sent)


@pytest.mark.parametrize("page", PAGES)
def test_nothing_on_a_page_is_wider_than_the_text_column(pages, page):
    widths = pages(page)["widths"]
    assert "error" not in widths, f"{page}: {widths.get('error')}"
    wide = [f"{w['what']} in '{w['section']}' ({w['width']} px, {w['beyond']} px beyond, {w['hidden']} px cut off): {w['text']}" for w in widths["wide"]]
    assert not wide, f"{page}: wider than the {widths['column']:.0f} px text column:\n" + "\n".join(wide)


@pytest.mark.parametrize("page", PAGES)
def test_no_table_breaks_a_number_or_word_across_lines(pages, page):
    broken = pages(page)["broken words"]
    assert not broken, (
        f"{page}: {len(broken)} words of tables are broken across lines (the column is squeezed; split or "
        f"transpose the table): {', '.join(broken[:12])}"
    )


@pytest.mark.parametrize("page", PAGES)
def test_no_checked_print_is_on_the_page(pages, page):
    shown = pages(page)["checked prints"]
    assert not shown, f"{page}: checked prints are visible (tag their cells remove-cell):\n" + "\n".join(shown)


def test_the_checks_catch_a_page_that_breaks_every_rule(webdriver, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        """<html><body><main><article class="bd-article" style="width: 400px; padding: 0 20px">
        <p>fits</p>
        <img src="http://127.0.0.1:9/remote.png" style="width: 10px">
        <img src="data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' width='800' height='10'/>" style="max-width: 100%">
        <table><tr><td style="white-space: nowrap">a table cell far wider than the column of four hundred px, far wider</td></tr></table>
        <pre style="overflow-x: auto">a printed line that runs on behind a scrollbar, much longer than the four hundred px column</pre>
        <table style="width: 60px"><tr><td style="overflow-wrap: anywhere">3.14159265358979</td><td>fits</td></tr></table>
        <div class="cell_output"><div class="output stream"><pre>accuracy 0.91</pre></div></div>
        <div class="cell_output" style="display: none"><div class="output stream"><pre>removed 3</pre></div></div>
        </article></main></body></html>"""
    )
    report = read_page(webdriver, page.as_uri(), ["accuracy 0.91", "removed 3"])
    assert report["outgoing"] == ["http://127.0.0.1:9/remote.png"]
    assert sorted(w["what"] for w in report["widths"]["wide"]) == ["img", "pre", "table"]
    assert report["checked prints"] == ["accuracy 0.91"]  # the hidden one is not on the page
    assert report["broken words"] == ["3.14159265358979"]


EXPLORER = "book/explorer.html"
SHOWN_MAP = """
const img = document.getElementById('explorer-map');
return img ? {src: img.src, loaded: img.complete && img.naturalWidth > 0,
              readout: (document.getElementById('explorer-readout') || {}).textContent || ''} : null;
"""


def _map_after(driver, before: str | None, timeout: float = 10.0) -> dict:
    """The shown map once it has loaded (and, given `before`, once its source differs from it)."""
    end = time.monotonic() + timeout
    state = driver.execute_script(SHOWN_MAP)
    while time.monotonic() < end and not (state and state["loaded"] and state["src"] != before):
        time.sleep(0.1)
        state = driver.execute_script(SHOWN_MAP)
    return state


def test_the_explorer_slider_changes_the_shown_map(site, webdriver):
    html = site / EXPLORER
    assert html.exists(), f"{EXPLORER} is not in the built site (the explorer, issue 30 item 4)"
    requests = _open(webdriver, html.as_uri())
    for element in ("explorer-photo", "explorer-criterion", "explorer-sparsity", "explorer-map", "explorer-readout"):
        assert webdriver.execute_script(f"return document.getElementById('{element}') !== null"), f"{EXPLORER} has no #{element}"
    first = _map_after(webdriver, None)
    assert first["loaded"], f"{EXPLORER}: the first map did not load (src: {first['src'][:80] or 'empty'})"
    moved_to = webdriver.execute_script(
        """const s = document.getElementById('explorer-sparsity');
        s.value = s.value === s.max ? s.min : s.max;
        s.dispatchEvent(new Event('input', {bubbles: true}));
        return s.value;"""
    )
    after = _map_after(webdriver, first["src"])
    assert after["src"] != first["src"], f"{EXPLORER}: moving the slider to {moved_to} left the map as it was"
    assert after["loaded"], f"{EXPLORER}: the map at slider value {moved_to} did not load ({after['src'][:80]})"
    requests += _requests(webdriver)
    assert not outgoing(requests), f"{EXPLORER} requests what is not in the site:\n" + "\n".join(outgoing(requests))

