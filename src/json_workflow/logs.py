"""Seed-style log lines, to stderr and to a log file that logrotate can rotate.

Four lines per file add up (40,000 for a 10,000-file backlog), so each line is formatted once for
both outputs, written buffered, and flushed at the end of every batch and at once for warnings.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from pathlib import Path

LOGGER = "json_workflow"
LOG_FILE = "json_workflow.log"
FORMAT = "%(asctime)s - %(levelname)s - [%(worker)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# How often to look for logrotate having moved the file (WatchedFileHandler looks at every line).
REOPEN_CHECK_SECONDS = 1.0

log = logging.getLogger(LOGGER)


def _buffered(stream):
    """A block-buffered writer on the stream's descriptor (stderr is line-buffered: a write per line)."""
    try:
        fd = os.dup(stream.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        return stream  # not a real file (a test harness): write through it
    return io.TextIOWrapper(io.FileIO(fd, "w"), encoding="utf-8", errors="replace")


class _Formatter(logging.Formatter):
    """The seed's line format, on every line of a message; the time text is made once a second."""

    def __init__(self) -> None:
        super().__init__(FORMAT, DATE_FORMAT)
        self._second: int | None = None
        self._text = ""

    def usesTime(self) -> bool:
        return True  # FORMAT has %(asctime)s; the base class searches for it on every line

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Every line of a multi-line message gets the line head (time, level, worker)."""
        text = super().formatMessage(record)
        if "\n" in record.message:
            head = text[: len(text) - len(record.message)]
            text = "\n".join(head + line for line in record.message.split("\n"))
        return text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:  # called under the handler's lock
            self._second, self._text = second, time.strftime(DATE_FORMAT, self.converter(second))
        return self._text


class _Tee(logging.Handler):
    """One formatted line to stderr (from `console_level` up) and to the log file (everything)."""

    def __init__(self, file: Path | None, console_level: int):
        super().__init__(logging.INFO)
        self.console_level = console_level
        self.console = _buffered(sys.stderr)
        self.path = file
        self.file = None
        self._identity = None
        self._checked = 0.0
        if file is not None:
            self._open()
        self.setFormatter(_Formatter())

    def _open(self) -> None:
        self.file = open(self.path, "a", encoding="utf-8", buffering=1 << 16)
        info = os.fstat(self.file.fileno())
        self._identity = (info.st_dev, info.st_ino)

    def _reopen_if_rotated(self) -> None:
        now = time.monotonic()
        if now - self._checked < REOPEN_CHECK_SECONDS:
            return
        self._checked = now
        try:
            info = os.stat(self.path)
            rotated = (info.st_dev, info.st_ino) != self._identity
        except FileNotFoundError:
            rotated = True
        if rotated:
            self.file.close()
            self._open()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not hasattr(record, "worker"):
                record.worker = record.threadName
            line = self.format(record) + "\n"
            if self.file is not None:
                self._reopen_if_rotated()
                self.file.write(line)
            if record.levelno >= self.console_level:
                self.console.write(line)
            if record.levelno >= logging.WARNING:
                self.flush()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.flush()
            self.console.flush()

    def close(self) -> None:
        with self.lock:
            self.flush()
            if self.file is not None:
                self.file.close()
            self.console.close()
        super().close()


def setup(folder: Path | None, console_level: int = logging.INFO) -> None:
    """Send json_workflow's log to stderr and, when `folder` is given, to folder/json_workflow.log."""
    # Skip what our format never shows (logging HOWTO, "Optimization").
    logging.logMultiprocessing = False
    logging.logProcesses = False
    logging._srcfile = None  # no caller lookup: file and line are not in the format
    for handler in log.handlers:
        handler.close()
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(_Tee(folder / LOG_FILE if folder is not None else None, console_level))


def flush() -> None:
    """Write out buffered lines (the pipeline calls this after every batch)."""
    for handler in log.handlers:
        handler.flush()
