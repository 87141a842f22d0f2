"""Photograph the dashboard of a real service on a sandbox: the overview and the failed files, 1280 and 390 px wide.

Run `python docs/dashboard_screenshots.py` (needs Debian's chromium and Playwright for Python); it
writes docs/dashboard-overview-{1280,390}.png and docs/dashboard-failed-{1280,390}.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from json_workflow.samples import backlog

DOCS = Path(__file__).resolve().parent
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]


def drop(root: Path, client: str, name: str, data: bytes) -> None:
    """Write beside the hot folder, then rename in, as TWIST's export does."""
    (root / "JSON" / client).mkdir(parents=True, exist_ok=True)
    staging = root / "staging" / name
    staging.write_bytes(data)
    os.rename(staging, root / "JSON" / client / name)


def wait_for(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


def main() -> None:
    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "PRODUCTION"
        (root / "JSON").mkdir(parents=True)
        (root / "staging").mkdir()
        config = Path(tmp) / "json-workflow.toml"
        config.write_text(f'root = "{root}"\nscan_interval = 5\n[http]\nlisten = "127.0.0.1:0"\n')
        log = Path(tmp) / "service.log"
        service = subprocess.Popen(
            [sys.executable, "-m", "json_workflow", "run", "--config", str(config)],
            stderr=open(log, "wb"),
            stdout=subprocess.DEVNULL,
        )
        try:
            url = wait_for(lambda: re.search(r"checks at (http://\S+/)", log.read_text()), "the dashboard").group(1)
            # A destination in trouble (a file where its folder should be), then a morning's files.
            (root / "CLIENT-STORES/LOREAL").mkdir(parents=True)
            (root / "CLIENT-STORES/LOREAL/IN").write_bytes(b"")
            for client, name, data, _ in backlog(240, seed=7, bad_every=23):
                drop(root, client, name, data)
            wait_for(lambda: not any((root / "JSON").glob("*/*.json")) or _only_loreal(root), "the files processed")
            time.sleep(6)  # a periodic scan, and the live state saved
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
                for width in (1280, 390):
                    page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
                    for name, path in (("overview", ""), ("failed", "failed")):
                        page.goto(url + path)
                        out = DOCS / f"dashboard-{name}-{width}.png"
                        page.screenshot(path=out, full_page=True)
                        print(f"{out.relative_to(DOCS.parent)}")
                    page.close()
                browser.close()
        finally:
            service.terminate()
            service.wait(30)


def _only_loreal(root: Path) -> bool:
    """Everything processed but LOREAL's files, which wait for their destination."""
    return all(p.parent.name == "LOREAL" for p in (root / "JSON").glob("*/*.json"))


if __name__ == "__main__":
    main()
