"""The daily report as a person sees it: the page rendered by headless Chromium, and its charts.

The screenshots stay in the test's tmp dir (``page.png``, ``empty.png``) for a look; the assertions check
that the page laid out at full length with the charts loaded, and that each chart has drawn content.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from airflow_provider_gridaware.ledger.file import InMemoryLedger
from airflow_provider_gridaware.reporting.daily import ZoneCurve, build_daily_report, day_bounds
from airflow_provider_gridaware.reporting.render import render_report_files, write_report_files
from airflow_provider_gridaware.signals.units import CarbonMetric
from tests.support.grid_events import make_event, simple_signal
from tests.support.ledger_day import at, fixed_day_records, half_hourly_actuals

Image = pytest.importorskip("PIL.Image", reason="matplotlib's Pillow is needed to read the PNGs")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DAY = date(2026, 12, 1)
WIDTH = 1100


def screenshot(page: Path, out: Path, height: int) -> Image.Image:
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={out.parent / 'chromium-profile'}",
            f"--window-size={WIDTH},{height}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Image.open(out).convert("RGB")


def ink_rows(image: Image.Image) -> list[int]:
    """The y of every pixel row holding something other than white."""
    grey = image.convert("L")
    width, height = grey.size
    pixels = grey.load()
    return [y for y in range(height) if any(pixels[x, y] < 235 for x in range(0, width, 4))]


def the_day(tmp_path: Path) -> Path:
    curves = [
        ZoneCurve(
            "CAISO_NORTH",
            "marginal",
            half_hourly_actuals(
                "CAISO_NORTH",
                {h / 2: 420 + 80 * math.sin(h / 8) for h in range(48)},
                metric=CarbonMetric.MARGINAL,
                source="watttime",
            ),
            "watttime",
        ),
        ZoneCurve(
            "FR", "average", half_hourly_actuals("FR", {h / 2: 45 + 10 * math.cos(h / 8) for h in range(48)}), "ukci"
        ),
        ZoneCurve(
            "GB",
            "average",
            half_hourly_actuals("GB", {h / 2: 150 + 60 * math.sin(h / 7.6) for h in range(48) if not 20 <= h < 22}),
            "ukci",
        ),
    ]
    records = InMemoryLedger(fixed_day_records()).records(*day_bounds(DAY))
    event = make_event(event_id="evening-peak", signals=(simple_signal(at(17), (2, 3)),))
    report = build_daily_report(DAY, records, curves=curves, events=[event], paused=[])
    write_report_files(render_report_files(report), tmp_path / "report")
    return tmp_path / "report"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_the_report_page_renders_with_its_charts(tmp_path: Path) -> None:
    folder = the_day(tmp_path)
    page = screenshot(folder / "report.html", tmp_path / "page.png", height=3600)
    rows = ink_rows(page)
    assert rows, "the page rendered blank"
    # Three charts of 380 px and the tables: the content runs well past 2,500 px, and ends before the window.
    assert 2500 < rows[-1] < 3600 - 20, rows[-1]
    # The charts loaded: their curve colour (#264653) appears in the screenshot.
    curve_pixels = sum(1 for pixel in page.get_flattened_data() if pixel == (38, 70, 83))
    assert curve_pixels > 1000, curve_pixels

    for chart in sorted((folder / "charts").glob("*.png")):
        image = Image.open(chart).convert("RGB")
        assert image.size == (1000, 380), (chart.name, image.size)
        run_shading = sum(1 for r, g, b in image.get_flattened_data() if g > r + 20 and b > r + 15)
        assert run_shading > 500, f"{chart.name}: no run window drawn"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_the_empty_day_page_is_short(tmp_path: Path) -> None:
    report = build_daily_report(date(2026, 12, 2), [])
    write_report_files(render_report_files(report), tmp_path / "empty")
    page = screenshot(tmp_path / "empty" / "report.html", tmp_path / "empty.png", height=1200)
    rows = ink_rows(page)
    assert rows and rows[-1] < 700, rows[-1] if rows else None
