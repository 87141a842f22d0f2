"""Photograph a fleet's overview: three instances on one root and PostgreSQL, one killed and taken over.

Run `python docs/fleet_screenshot.py` (needs Debian's chromium and postgresql, Playwright for Python);
it writes docs/dashboard-fleet-{1280,390}.png, the top of the overview.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))
from conftest import Service, wait_for  # noqa: E402
from pg_server import PgServer  # noqa: E402
from test_fleet import archived, burst, fleet_config  # noqa: E402


def main() -> None:
    top = Path(tempfile.mkdtemp(prefix="jw-fleet-shot-"))
    root = top / "root"
    (root / "JSON").mkdir(parents=True)
    server = PgServer()
    services = []
    try:
        url = server.database()
        for name in ("press-1", "press-2", "press-3"):
            services.append(Service(root, fleet_config(top, root, url, name), log=top / f"{name}.log").start())
        good, _, _ = burst(root, 300)
        wait_for(lambda: archived(root) >= len(good), timeout=60, what="the burst")
        services[2].stop(signal.SIGKILL)
        wait_for(lambda: "Took over instance press-3" in services[0].text() + services[1].text(), timeout=60)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            for width, height in ((1280, 460), (390, 760)):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(services[0].url)
                page.screenshot(
                    path=DOCS / f"dashboard-fleet-{width}.png", clip={"x": 0, "y": 0, "width": width, "height": height}
                )
            browser.close()
    finally:
        for service in services:
            service.stop(signal.SIGKILL)
        server.close()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
