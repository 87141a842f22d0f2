"""`json-workflow demo`: a sandbox with one job per routing row and a few bad files, processed once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from json_workflow import config as config_module
from json_workflow import logs
from json_workflow.run import run_once
from json_workflow.samples import job

# (client folder or None for the top of the hot folder, file name, bytes, what the demo shows)
SAMPLES = [
    ("RANK", "5903771.json", job("RANK", "PRODUCTION", 5903771), "RANK -> Monday Rank"),
    ("RECKITTBENCKISER", "rb_1001.json", job("RECKITTBENCKISER", "SOCIAL", 1001), "RB -> Monday RB"),
    ("BISSELL", "order_5555.json", job("BISSELL", "ORDER", 5555), "BISSELL -> Wrike"),
    ("LOREAL", "campaign_001.json", job("LOREAL", "CAMPAIGN", 1), "LOREAL -> LOREAL/IN"),
    ("CELTRA", "celtra_77.json", job("CELTRA", "DIGITAL", 77), "CELTRA -> Celtra"),
    ("OLIVER", "oliver_celtra.json", job("OLIVER", "CELTRA", 12), "eligible client, CELTRA job -> Celtra"),
    ("RANK", "rank_celtra.json", job("RANK", "CELTRA", 5903772), "RANK + CELTRA job -> three places"),
    ("ADIDAS", "adidas_print.json", job("ADIDAS", "PRODUCTION", 3), "eligible, not CELTRA -> archive only"),
    ("ACME", "acme_1.json", job("ACME", "CELTRA", 9), "unlisted client -> archive only"),
    (None, "dropped_at_top.json", job("LOREAL", "CAMPAIGN", 2), "top of hot folder, client from ClientCode"),
    ("RANK", "broken.json", b'{"JobSpecification": {"JobDetails": ', "invalid JSON -> failed"),
    (
        "BISSELL",
        "no_client.json",
        b'{"JobSpecification": {"JobDetails": {"JobCategory": "ORDER"}}}',
        "missing ClientCode -> failed",
    ),
    ("LOREAL", "wrong_folder.json", job("RANK", "PRODUCTION", 4), "ClientCode not its folder -> failed"),
    (None, "escape.json", job("../../etc", "PRODUCTION", 5), "unsafe ClientCode -> failed (_unknown)"),
    ("RANK", "notes.txt", b"not a job file", "other extension -> left alone"),
]


def build_sandbox(root: Path) -> None:
    hot = root / "JSON"
    for folder, name, data, _ in SAMPLES:
        target = hot / folder if folder else hot
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)


def where_it_went(root: Path, name: str) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            if f == name or (f.endswith("_" + name) and not f.endswith(".reason.txt")):
                found.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(found)


def run_demo(directory: str | None) -> int:
    root = Path(directory or tempfile.mkdtemp(prefix="json-workflow-demo-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    build_sandbox(root)
    config = config_module.load(None, root)
    click.echo(f"Sandbox: {root}  (built-in configuration: the seed's routing matrix)\n")
    config.logs.mkdir(parents=True, exist_ok=True)
    logs.setup(config.logs, console_level=100)  # the table below says it all; the log file has the detail
    summary = run_once(config)
    for folder, name, _, what in SAMPLES:
        source = f"{folder}/{name}" if folder else name
        click.echo(f"JSON/{source}   [{what}]")
        for place in where_it_went(root, name):
            reason = root / (place + ".reason.txt")
            suffix = f"   reason: {_reason(reason)}" if reason.exists() else ""
            click.echo(f"    {place}{suffix}")
    click.echo(f"\n{summary.line()}")
    click.echo(f"Log: {config.logs / logs.LOG_FILE}")
    click.echo(f"Report: {_todays_report(config)}  (json-workflow stats --root {root})")
    click.echo(f"Try: json-workflow explain --root {root} '{root}/JSON_STORE/RANK/rank_celtra.json'")
    click.echo(f"     json-workflow history rank --root {root}")
    click.echo(f"     json-workflow dashboard --root {root}   (then open http://127.0.0.1:8787/failed)")
    return 0


def _todays_report(config) -> Path:
    """Write today's report of the sandbox, as the service would at midnight."""
    import time

    from json_workflow.reporting.figures import local_day
    from json_workflow.reporting.reporter import Reporter

    reporter = Reporter(config)
    try:
        day = local_day(time.time(), config.email.zone)
        reporter.deliver(day, time.time(), send=False)
        return reporter.report_file(day)
    finally:
        reporter.close()


def _reason(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("reason: "):
            return line.removeprefix("reason: ")
    return "?"
