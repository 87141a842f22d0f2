"""The report's HTML laid out by headless Chromium at 600 and 375 px: nothing scrolls sideways, nothing is missing.

Headless Chromium never lays a window out narrower than 500 px, whatever --window-size says, so the
report is loaded into an iframe of the wanted width (its media queries see that width, as a phone's
would). A probe script, appended to a test-only copy of the report, measures it after load and posts
the measurements to the frame page, which writes them into <pre id="probe"> for --dump-dom.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import SECTIONS, TITLE, figures, large_figures
from json_workflow.reporting import render

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)"),
]

PROBE = f"""<script>
addEventListener("load", function () {{
  var rects = {{}};
  {json.dumps(SECTIONS)}.forEach(function (id) {{
    rects[id] = document.getElementById(id).getBoundingClientRect().height;
  }});
  parent.postMessage(JSON.stringify({{
    scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
    innerWidth: window.innerWidth, heights: rects,
    cardTops: Array.prototype.map.call(document.querySelectorAll(".card-cell"),
                                       function (e) {{ return e.getBoundingClientRect().top; }})
  }}), "*");
}});
</script>"""
FRAME = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="report.html" width="%d" height="900" style="border:0;display:block"></iframe>
<pre id="probe"></pre>
<script>addEventListener("message", function (e) { document.getElementById("probe").textContent = e.data; });</script>
</body></html>"""


def measure(tmp_path, html: str, width: int) -> dict:
    """Lay the report out `width` px wide in Chromium and return what the probe saw."""
    (tmp_path / "report.html").write_text(html + PROBE, encoding="utf-8")
    frame = tmp_path / f"frame-{width}.html"
    frame.write_text(FRAME % width, encoding="utf-8")
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={width},900",
            "--virtual-time-budget=2000",
            "--dump-dom",
            frame.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    probe = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert probe and probe[1], f"the probe did not report; chromium printed:\n{dom[-2000:]}"
    return json.loads(probe[1])


@pytest.mark.parametrize("width", [600, 375])
@pytest.mark.parametrize("day", ["sample", "large"])
def test_nothing_scrolls_sideways_and_every_section_shows(tmp_path, width, day):
    f = figures() if day == "sample" else large_figures()
    seen = measure(tmp_path, render.html(f, TITLE), width)
    assert seen["innerWidth"] == width
    # clientWidth leaves out the frame's vertical scroll bar: the room the report really has.
    assert seen["scrollWidth"] <= seen["clientWidth"], f"{day} report scrolls sideways at {width} px: {seen}"
    assert all(seen["heights"][name] > 0 for name in SECTIONS), seen["heights"]


def test_cards_sit_in_a_row_on_a_desktop_and_stack_on_a_phone(tmp_path):
    html = render.html(figures(), TITLE)
    desktop = measure(tmp_path, html, 600)["cardTops"]
    phone = measure(tmp_path, html, 375)["cardTops"]
    assert len(desktop) == len(phone) == 4
    assert len(set(desktop)) == 1
    assert phone == sorted(phone) and len(set(phone)) == 4
