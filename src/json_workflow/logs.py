"""Seed-style log lines, to stderr and to a log file that logrotate can rotate."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

LOGGER = "json_workflow"
LOG_FILE = "json_workflow.log"
FORMAT = "%(asctime)s - %(levelname)s - [%(worker)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

log = logging.getLogger(LOGGER)


class _WorkerName(logging.Filter):
    """Tag each line with the worker that handled the file (default: the logging thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = record.threadName
        return True


def setup(folder: Path | None, console_level: int = logging.INFO) -> None:
    """Send json_workflow's log to stderr and, when `folder` is given, to folder/json_workflow.log."""
    # Four lines per file: skip what our format never shows (logging HOWTO, "Optimization").
    logging.logMultiprocessing = False
    logging.logProcesses = False
    logging._srcfile = None  # no caller lookup: file and line are not in the format
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level)
    handlers: list[logging.Handler] = [console]
    if folder is not None:
        # WatchedFileHandler reopens the file after logrotate renames it; no rotation of our own.
        handlers.append(logging.handlers.WatchedFileHandler(folder / LOG_FILE, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_WorkerName())
        log.addHandler(handler)
