"""``lrbench report`` end to end: the page, its files, and a real browser rendering it.

The page is rendered by headless Chromium (Debian's ``chromium``, which .ci/run
installs): every image must decode, and the tables must be in the rendered DOM.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
from browser import seen_by_browser
from conftest import run_lrbench

REPO = Path(__file__).resolve().parents[2]
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.slow

# Appended to a copy of the page, never to the page itself: counts what the browser drew.
PROBE = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.tables = document.querySelectorAll('table').length;
  document.body.dataset.rows = document.querySelectorAll('table.leaderboard tbody tr').length;
});</script>"""


@pytest.fixture(scope="module")
def page(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    done = run_lrbench("report", "--results", str(results), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert str(out / "index.html") in done.stdout.replace("\n", "")
    return out / "index.html"


def test_report_writes_page_csvs_and_one_png_per_figure(page: Path) -> None:
    folder = page.parent
    assert (folder / "trials.csv").stat().st_size > 0
    assert (folder / "epochs.csv").stat().st_size > 0
    pngs = sorted((folder / "figures").glob("*.png"))
    assert len(pngs) >= 7  # 7 figures for smoke; dlwizard draws those it has data for
    for png in pngs:
        pixels = matplotlib.image.imread(png)
        assert pixels.shape[0] > 100 and pixels.std() > 0  # a drawing, not a blank


def test_page_holds_leaderboards_verdicts_and_the_tutorial_table(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    board = re.search(r'<table class="leaderboard" id="leaderboard-smoke">(.*?)</table>', html,
                      re.S)
    assert board is not None
    for family in ("step", "cosine", "onecycle"):
        assert f'<td class="left">{family}</td>' in board.group(1)
    assert "mean ± 95% CI over 3 seeds" in html  # smoke has confirm runs
    assert "These are single runs" in html  # dlwizard has none
    tutorial = re.search(r'id="reproduction-dlwizard">(.*?)</table>', html, re.S)
    assert tutorial is not None
    for published in ("97.0%", "98.04%", "98.01%"):
        assert published in tutorial.group(1)
    # the published numbers were picked on the test set, and the page says so
    assert "measured — and chosen — on the 10,000-image test set" in tutorial_note(html)
    assert "git revision" in html and "lrbench sweep" in html  # provenance, reproduce


def test_page_is_self_contained(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in html and "https://" not in html  # opens offline


@pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (.ci/run installs it)")
def test_chromium_decodes_every_image_and_renders_the_tables(page: Path,
                                                             tmp_path: Path) -> None:
    # The page alone, copied elsewhere: what a mail attachment would be.
    probe = tmp_path / "index.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                     encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--virtual-time-budget=10000"]
    dom = subprocess.run([BROWSER, *flags, "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    counts = dict(re.findall(r'data-(images|decoded|tables|rows)="(\d+)"', dom))
    assert int(counts["images"]) >= 7
    assert counts["decoded"] == counts["images"]
    assert int(counts["tables"]) >= 4  # two leaderboards, the tutorial's, provenance
    assert int(counts["rows"]) >= 3 + 2  # smoke's three families, dlwizard's two

    shot = tmp_path / "page.png"  # a screenshot, kept only as this test's evidence
    subprocess.run([BROWSER, *flags, "--window-size=1200,2400", f"--screenshot={shot}",
                    probe.as_uri()], capture_output=True, timeout=120)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1200) and pixels.std() > 0


# What a reader at a given window width sees: does anything stick out of the page, can the
# leaderboard's last column be scrolled to, is every image at least 2x sharp, and do the
# figures fit the window.
LAYOUT = """<script>window.addEventListener('load', () => {
  const body = document.body, page = document.documentElement;
  body.dataset.viewport = window.innerWidth;
  body.dataset.overflow = Math.max(0, page.scrollWidth - window.innerWidth);
  const boards = [...document.querySelectorAll('table.leaderboard')];
  body.dataset.boards = boards.length;
  body.dataset.scrollable = boards.filter(t => {
    const box = t.parentElement, style = getComputedStyle(box);
    return style.overflowX === 'auto' && box.clientWidth <= window.innerWidth
      && (t.scrollWidth <= box.clientWidth || box.scrollWidth > box.clientWidth);
  }).length;
  const images = [...document.images].filter(i => i.naturalWidth > 0);
  body.dataset.density = Math.min(...images.map(i => i.naturalWidth / i.width)).toFixed(2);
  body.dataset.widest = Math.max(...images.map(i => i.getBoundingClientRect().right));
});</script>"""


@pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("width", [1400, 800])
def test_page_reads_at_desktop_and_narrow_widths(page: Path, tmp_path: Path,
                                                  width: int) -> None:
    """The leaderboard was cut off below 800 px and images were 100 dpi: now nothing sticks
    out of the window, wide tables scroll in their own box, and images are >= 2x sharp."""
    seen = seen_by_browser(page, LAYOUT, tmp_path, width, screenshot=f"page-{width}.png")
    assert int(seen["viewport"]) == width
    assert int(seen["overflow"]) == 0  # no horizontal scrolling of the page itself
    assert int(seen["boards"]) == 2 and seen["scrollable"] == seen["boards"]
    assert float(seen["density"]) >= 2.0
    assert float(seen["widest"]) <= width
    # the screenshot: evidence, as a reader would see it
    assert matplotlib.image.imread(tmp_path / f"page-{width}.png").shape[1] == width


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no lrbench storage"),
    (lambda d: (d / "lrbench.journal").touch(), "holds no study"),
])
def test_missing_or_empty_storage_exits_2(tmp_path: Path, make, message: str) -> None:
    make(tmp_path)
    done = run_lrbench("report", "--results", str(tmp_path))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_unknown_study_exits_2(results: Path, tmp_path: Path) -> None:
    done = run_lrbench("report", "--results", str(results), "--study", "nope", "--out",
                   str(tmp_path))
    assert done.returncode == 2 and "no study 'nope'" in done.stderr


def tutorial_note(html: str) -> str:
    """The paragraph under the reproduction table, whitespace collapsed."""
    match = re.search(r'id="reproduction-dlwizard">.*?</table></div>\s*<p class="meta">(.*?)</p>',
                      html, re.S)
    assert match is not None
    return " ".join(match.group(1).split())


def section(html: str, slug: str) -> str:
    found = re.search(rf'<section id="study-{slug}">(.*?)</section>', html, re.S)
    assert found is not None
    return found.group(1)


def test_fixed_trial_studies_get_only_sections_that_mean_something(page: Path) -> None:
    """dlwizard's five fixed runs searched nothing: no "widen the range" advice, no
    sensitivity or importance figures; smoke, which searched, keeps them."""
    html = page.read_text(encoding="utf-8")
    tutorial, smoke = section(html, "dlwizard"), section(html, "smoke")
    for title in ("Sensitivity: validation accuracy", "Optimisation history and parameter"):
        assert title not in tutorial and title in smoke
    assert "widen the range" not in tutorial
    assert "Reproducing the tutorial" in tutorial
