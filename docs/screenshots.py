"""Render the sample daily report and photograph it in headless Chromium, 600 and 375 px wide.

Run `python docs/screenshots.py`; it writes docs/report-600.png and docs/report-375.png.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from json_workflow.reporting import render
from json_workflow.reporting.sample import sample_figures

DOCS = Path(__file__).resolve().parent
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
# Headless Chromium never lays out narrower than 500 px whatever --window-size says, so the report is
# shown in an iframe of the wanted width: its media queries see that width, as a phone's would.
FRAME = """<!DOCTYPE html><html><body style="margin:0;background:#eeeeee">
<iframe src="report.html" width="{width}" height="{height}" style="border:0;display:block"></iframe>
<pre id="probe"></pre>
<script>addEventListener("message", e => document.getElementById("probe").textContent = e.data);</script>
</body></html>"""
MEASURE = """<script>addEventListener("load", () =>
  parent.postMessage(JSON.stringify(document.documentElement.scrollHeight), "*"));</script>"""


def chromium(folder: Path, *args: str) -> str:
    return subprocess.run([*CHROMIUM, f"--user-data-dir={folder / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=True).stdout


def shoot(folder: Path, width: int, out: Path) -> None:
    """Measure the report's height at this width, then photograph all of it."""
    frame = folder / "frame.html"
    frame.write_text(FRAME.format(width=width, height=900))
    dom = chromium(folder, f"--window-size={width},900", "--virtual-time-budget=2000", "--dump-dom", frame.as_uri())
    height = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1))
    frame.write_text(FRAME.format(width=width, height=height))
    chromium(folder, f"--window-size={width},{height}", f"--screenshot={out}", frame.as_uri())
    print(f"{out.relative_to(DOCS.parent)}: {width} x {height}")


def main() -> None:
    if not shutil.which("chromium"):
        sys.exit("chromium is not installed (apt-get install chromium)")
    html = render.html(sample_figures(), "JSON Workflow Daily Report")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "report.html").write_text(html + MEASURE)
        for width in (600, 375):
            shoot(folder, width, DOCS / f"report-{width}.png")


if __name__ == "__main__":
    main()
