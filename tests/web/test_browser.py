"""The dashboard in real Chromium (Debian's, driven by Playwright): Retry clicked, the overview live, phone widths."""

from __future__ import annotations

import shutil

import pytest

from conftest import Service, drop_atomically, wait_for, write_config
from json_workflow.samples import job
from web_client import request

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)"),
]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def service(root, tmp_path):
    running = Service(root, write_config(tmp_path / "c.toml", root)).start()
    yield running
    assert running.stop() == 0


def test_a_failed_file_fixed_by_an_operator_is_retried_with_the_button_and_archived(browser, service, root):
    drop_atomically(root, "RANK", "5903771.json", b'{"JobSpecification": {"JobDetails": {"ClientCode": "RANK"}}}')
    [failed] = wait_for(lambda: list((root / "JSON_FAILED/RANK").glob("*_5903771.json")), what="the failed file")
    failed.write_bytes(job("RANK", "PRODUCTION", 5903771))  # the operator fixes the JobCategory
    page = browser.new_page()
    page.goto(service.url + "failed")
    row = page.get_by_role("row").filter(has_text="RANK/5903771.json")
    assert "JobDetails.JobCategory is missing" in row.inner_text()
    row.get_by_role("button", name="Retry").click()
    page.wait_for_url("**/failed?result=*")
    assert "Retried 1 file" in page.get_by_role("status").inner_text()
    wait_for(lambda: (root / "JSON_STORE/RANK/5903771.json").exists(), what="the file archived")
    assert (root / "SYNC/MAKE/Monday Rank/5903771.json").read_bytes() == job("RANK", "PRODUCTION", 5903771)
    page.goto(service.url + "files?q=5903771")
    assert page.get_by_text("archived").count() >= 1 and page.get_by_text("failed").count() >= 1
    page.close()


def test_the_overview_shows_a_dropped_file_without_a_reload(browser, service, root):
    page = browser.new_page()
    page.goto(service.url)
    loaded = page.evaluate("performance.timeOrigin")
    drop_atomically(root, "LOREAL", "live-1.json", job("LOREAL", "PRODUCTION", 1))
    page.locator(".activity").get_by_text("LOREAL/live-1.json archived").wait_for(timeout=15_000)
    assert page.evaluate("performance.timeOrigin") == loaded  # the same page, refreshed in place
    page.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_fit_their_width(browser, service, root, width):
    drop_atomically(root, "LOREAL", "bad.json", b"{")
    wait_for(lambda: list((root / "JSON_FAILED").glob("LOREAL/*_bad.json")), what="the failed file")
    blocked = root / "CLIENT-STORES/LOREAL/IN"  # a destination in trouble: a long OS error on the overview
    blocked.parent.mkdir(parents=True)
    blocked.write_bytes(b"")
    drop_atomically(root, "LOREAL", "good.json", job("LOREAL", "PRODUCTION", 1))
    wait_for(lambda: "in trouble" in request(service.url).body, what="the destination in trouble")
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(service.url + "failed")
    failed_page = page.locator("a[href^='/failed/']").first.get_attribute("href").lstrip("/")
    for path in ("", "failed", failed_page, "files?q=bad", failed_page.replace("failed", "files"), "reports"):
        page.goto(service.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"/{path} scrolls sideways by {overflow}px at {width}px"
    page.close()
