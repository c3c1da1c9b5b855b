"""The report in a real headless browser (Debian's chromium; .ci/run installs it): it renders with
no script error, shows its three plots, runs none of the suite's HTML, and the screenshot is not
blank."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="needs Debian's chromium (`apt-get install chromium`)")
# as root, offline: no sandbox, no GPU, none of the background connections a closed network refuses
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium(profile: Path, *args: str) -> str:
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout


def test_report_renders_in_a_browser(hostile_run, tmp_path):
    url = (hostile_run / "report.html").as_uri()
    dom = chromium(tmp_path / "profile", "--dump-dom", url)
    assert 'data-qbench-ready="yes"' in dom  # the page's script ran to its end
    assert '<pre id="js-errors"></pre>' in dom  # and no script error was caught
    assert dom.count("<svg") == 3
    assert "&lt;script&gt;alert" in dom and '<script>alert("x")' not in dom
    shot = tmp_path / "report.png"
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1600", url)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200) and pixels.std() > 0.05
