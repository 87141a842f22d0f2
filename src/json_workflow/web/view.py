"""What the pages show and do, from the service's Monitor, or from the store for `json-workflow dashboard`.

The web server has a store connection of its own, so a page never waits for the pipeline's.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from json_workflow.config import Config
from json_workflow.delivery.retry import retry_known
from json_workflow.errors import StoreError
from json_workflow.logs import log
from json_workflow.monitor import metrics
from json_workflow.monitor.fleet import Instance, instances
from json_workflow.monitor.live import Monitor
from json_workflow.monitor.metrics import Figures
from json_workflow.monitor.state import Live, last_scan_and_report
from json_workflow.monitor.status import waiting_failed
from json_workflow.plural import count
from json_workflow.reporting import figures
from json_workflow.run import lock_holder
from json_workflow.store import Store
from json_workflow.store.rows import FileRecord

# Today's figures are recomputed at most every TODAY_SECONDS, and never taking more than TODAY_SHARE of
# a core: a busy day's rows take a while to count (0.2 s for 100,000 files), and the files come first.
TODAY_SECONDS, TODAY_SHARE = 5.0, 0.01
CONTENT_BYTES = 256 * 1024  # of a failed file, shown on its page
REPORT_NAME = re.compile(r"\d{4}-\d{2}-\d{2}\.html")


@dataclass
class RetryResult:
    """What one Retry did, for the page that shows it."""

    moved: list[str]
    skipped: list[tuple[str, str]]  # (name, why)


class View:
    """The pages' data source; `monitor` is None for a dashboard run apart from the service."""

    def __init__(self, config: Callable[[], Config], store: Store, monitor: Monitor | None = None):
        self.config, self.store, self.monitor = config, store, monitor
        self._today: tuple[float, figures.Today] | None = None  # (refresh due, figures)
        self._refreshing = threading.Lock()

    # --- the overview -------------------------------------------------------------------------------
    def live(self, activity: int = 0) -> Live | None:
        """The service's live state: its own when in the service, else what a running service saved."""
        if self.monitor is not None:
            return self.monitor.snapshot(activity)
        config = self.config()
        if config.fleet:  # the instance this configuration names, while it renews its lease
            row = {r.instance: r for r in self.store.live()}.get(config.instance)
            alive = any(i.alive and i.name == config.instance for i in self.fleet())
            return Live.from_dict(json.loads(row.state)) if row is not None and alive else None
        pid = lock_holder(config)
        saved = {row.pid: row for row in self.store.live()} if pid is not None else {}
        return Live.from_dict(json.loads(saved[pid].state)) if pid in saved else None

    def today(self) -> figures.Today:
        """Today's figures, at most TODAY_SECONDS old: stale ones are served while a thread refreshes them."""
        cached = self._today
        if cached is None:
            return self._refresh_today()
        if time.monotonic() > cached[0] and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_today, args=(True,), daemon=True).start()
        return cached[1]

    def _refresh_today(self, locked: bool = False) -> figures.Today:
        try:
            config, began = self.config(), time.monotonic()
            today = figures.today(self.store, time.time(), config.email.zone, config.highlight)
            took = time.monotonic() - began
            self._today = (began + max(TODAY_SECONDS, took / TODAY_SHARE), today)
            return today
        finally:
            if locked:
                self._refreshing.release()

    def scan_and_report(self, live: Live | None) -> tuple[dict | None, dict | None]:
        if live is not None:
            return live.last_scan, live.report
        return last_scan_and_report(self.store)

    def metrics(self) -> Figures:
        figures, config = self._metrics(), self.config()
        figures.instance, figures.store = config.instance, "postgresql" if config.fleet else "sqlite"
        figures.fleet = self.fleet()
        return figures

    def _metrics(self) -> Figures:
        if self.monitor is not None:
            return metrics.service_figures(self.monitor)
        files: dict[tuple[str, str], int] = {}
        for client, outcome, n in self.store.outcome_totals():
            if outcome != "pending":
                key = (client or "_unknown", outcome)
                files[key] = files.get(key, 0) + n
        copies = {rule.name: 0 for rule in self.config().routes} | dict(self.store.copy_totals())
        live = self.live()
        figures = metrics.Figures(live, files, copies, None, 0.0, live.scans if live else {})
        return figures.at(*self.scan_and_report(live))

    def fleet(self) -> list[Instance]:
        """A fleet's instances (none alone); none either while the store cannot be read (logged)."""
        config = self.config()
        if not config.fleet:
            return []
        try:
            return instances(self.store, config, self.today().instances)
        except StoreError as e:
            log.error("Cannot read the fleet's instances: %s", e)
            return []

    # --- failed files and retry ---------------------------------------------------------------------
    def failed(self) -> list[FileRecord]:
        return waiting_failed(self.store, limit=1000)

    def failed_file(self, row: int) -> tuple[FileRecord, str] | None:
        """A failed file the store knows and its content (the start of it), decoded for display."""
        record = self.store.file_record(row)
        if record is None or record.failed_as is None:
            return None
        try:
            with open(record.failed_as, "rb") as f:
                data = f.read(CONTENT_BYTES + 1)
        except OSError as e:
            return record, f"(cannot read {record.failed_as}: {e.strerror})"
        text = data[:CONTENT_BYTES].decode("utf-8", "replace")
        return record, text + ("\n... (only the first 256 KB are shown)" if len(data) > CONTENT_BYTES else "")

    def retry(self, rows: Sequence[int] = (), client: str | None = None, every: bool = False) -> RetryResult:
        """Put failed files the store knows back into the hot folder: by row, by client, or all of them."""
        waiting = self.failed()
        if every:
            chosen = waiting
        elif client is not None:
            chosen = [r for r in waiting if (r.client or "_unknown").casefold() == client.casefold()]
        else:
            wanted = set(rows)
            chosen = [r for r in waiting if r.id in wanted]
        by_path = {r.failed_as: r for r in chosen if r.failed_as is not None}
        result, moved = RetryResult([], []), []
        for item in retry_known(self.config(), list(by_path)):
            name = by_path[str(item.source)].name
            if item.target is None:
                result.skipped.append((name, item.skipped))
            else:
                result.moved.append(name)
                moved.append(str(item.source))
        if moved:
            self.store.mark_retried(moved, time.time())
        # The operator's action, in the log beside what the files do next.
        log.info(
            "Dashboard retry: %s put back into the hot folder%s%s",
            count(len(result.moved), "failed file"),
            f" ({', '.join(result.moved[:20])}{', ...' if len(result.moved) > 20 else ''})" if result.moved else "",
            f"; {len(result.skipped)} skipped" if result.skipped else "",
        )
        return result

    # --- history and reports ------------------------------------------------------------------------
    def history(self, text: str) -> list[FileRecord]:
        return self.store.history(text, limit=200) if text.strip() else []

    def reception(self, row: int) -> tuple[FileRecord, list[FileRecord]] | None:
        """One reception and every reception of the same file."""
        record = self.store.file_record(row)
        return None if record is None else (record, self.store.receptions(record.name))

    def reports(self) -> list[str]:
        """The daily reports kept, newest first (file names: YYYY-MM-DD.html)."""
        try:
            names = os.listdir(self._reports_folder())
        except OSError:
            return []
        return sorted((n for n in names if REPORT_NAME.fullmatch(n)), reverse=True)

    def report(self, name: str) -> bytes | None:
        """A kept report, when `name` is one of those listed (never a path from the request)."""
        if name not in self.reports():
            return None
        try:
            return (self._reports_folder() / name).read_bytes()
        except OSError:
            return None

    def _reports_folder(self) -> Path:
        return self.config().logs / "reports"
