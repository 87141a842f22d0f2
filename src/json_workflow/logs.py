"""Seed-style log lines, to stderr and to a log file that logrotate can rotate.

Four lines per file add up (40,000 for a 10,000-file backlog), so each line is formatted once for
both outputs and the file gets one write per batch (at once for warnings). Right before each write
the path is checked, so no line goes into a file that logrotate has renamed away.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from json_workflow.plural import count

LOGGER = "json_workflow"
LOG_FILE = "json_workflow.log"
FORMAT = "%(asctime)s - %(levelname)s - [%(worker)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# Pending log text is written out at the end of every batch, or once it reaches this size.
WRITE_OUT_CHARS = 1 << 16
# On a terminal, INFO lines past this many in a second are summed up in one line (the file has them all).
CONSOLE_LINES = 40

log = logging.getLogger(LOGGER)


def _escaped(error: UnicodeError) -> tuple[str, int]:
    """A name's bytes that are not UTF-8 (surrogate escapes) as \\xNN, as names.shown writes them."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(
        f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}" for c in text
    ), error.end


# Every line is written with it: a path in a message that was not passed through names.shown first
# still reads as the README promises, never fails a line, never reaches a terminal raw.
ESCAPED = "json_workflow.escaped"
codecs.register_error(ESCAPED, _escaped)


def _buffered(stream: TextIO) -> TextIO:
    """A block-buffered writer on the stream's descriptor (stderr is line-buffered: a write per line)."""
    try:
        fd = os.dup(stream.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        return stream  # not a real file (a test harness): write through it
    return io.TextIOWrapper(io.FileIO(fd, "w"), encoding="utf-8", errors=ESCAPED)


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
    """One formatted line to stderr (from `console_level` up) and to the log file (everything).

    `terminal`: the console is a terminal, where a backlog's lines would scroll everything away: it
    shows at most CONSOLE_LINES INFO lines a second, and how many more the file has (warnings always).
    `bar`: a progress bar holds the terminal's last line; a line shown clears it first.
    """

    def __init__(
        self,
        file: Path | None,
        console_level: int,
        terminal: bool = False,
        bar: bool = False,
        show: Callable[[str, bool], None] | None = None,
    ):
        """`show`: where console lines go instead (a worker process's: to the parent, whose console it is)."""
        super().__init__(min(logging.INFO, console_level))
        self.show = show
        self.console_level = console_level
        self.terminal = terminal
        self.clear = "\r\x1b[K" if bar else ""
        self._second = 0.0  # when the current second of the terminal's budget ends
        self._budget = 0  # INFO lines the terminal may still show in it
        self._held = 0  # INFO lines not shown on the terminal, not yet said
        self.console = _buffered(sys.stderr)
        self.path = file
        self.file: TextIO | None = None
        self._identity: tuple[int, int] | None = None
        self._pending: list[str] = []  # lines not yet in the file, written out in one write
        self._pending_chars = 0
        if file is not None:
            self._open()
        self.setFormatter(_Formatter())

    def _open(self) -> TextIO:
        assert self.path is not None  # only a handler with a file opens one
        if self.file is not None:
            self.file.close()
            self.file = None
        # A file name that is not UTF-8 (surrogate escapes) must not fail a line.
        self.file = open(self.path, "a", encoding="utf-8", errors=ESCAPED)
        info = os.fstat(self.file.fileno())
        self._identity = (info.st_dev, info.st_ino)
        return self.file

    def _moved(self) -> bool:
        """Whether the path no longer names the open file (logrotate renamed or deleted it)."""
        assert self.path is not None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (info.st_dev, info.st_ino) != self._identity

    def _write_out(self) -> None:
        """The pending lines in one write, into the file the path names right now."""
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_chars = 0
        # Checked just before writing, not when the lines were logged: a line written into a file
        # logrotate renamed is lost when it compresses and deletes that file.
        file = self._open() if self.file is None or self._moved() else self.file
        file.write(text)
        file.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not hasattr(record, "worker"):
                record.worker = record.threadName
            line = self.format(record) + "\n"
            if self.path is not None:
                self._pending.append(line)
                self._pending_chars += len(line)
            if record.levelno >= self.console_level or (self.console_level <= logging.WARNING and summary(record)):
                (self.show or self._show)(line, record.levelno >= logging.WARNING or summary(record))
            if record.levelno >= logging.WARNING or self._pending_chars >= WRITE_OUT_CHARS:
                self.flush()
        except Exception:
            self.handleError(record)

    def _show(self, line: str, always: bool) -> None:
        """A record's lines to the console: within the terminal's budget, unless `always` (a problem, a summary)."""
        if not self.terminal or always:
            self.console.write(self.clear + line)
            return
        now = time.monotonic()
        if now >= self._second:
            self._say_held()
            self._second, self._budget = now + 1.0, CONSOLE_LINES
        lines = line.count("\n")
        shown = min(lines, self._budget)
        if shown:
            cut = 0
            for _ in range(shown):
                cut = line.index("\n", cut) + 1
            self.console.write(self.clear + line[:cut])
        self._budget -= shown
        self._held += lines - shown

    def _say_held(self) -> None:
        if self._held:
            where = f"in {self.path}" if self.path is not None else "not shown"
            self.console.write(f"{self.clear}    ... {count(self._held, 'more line')} {where}\n")
            self._held = 0

    def flush(self) -> None:
        self.acquire()
        try:
            if self._held and time.monotonic() >= self._second:
                self._say_held()
            if self._pending:
                try:
                    self._write_out()
                except (OSError, ValueError) as e:
                    # The pipeline flushes after every batch: a log it cannot write must not stop it.
                    self.console.write(f"json-workflow: cannot write {self.path}: {e}\n")
            self.console.flush()
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            self._say_held()
            self.flush()
            if self.file is not None:
                self.file.close()
            self.console.close()
        finally:
            self.release()
        super().close()


SUMMARY = {"summary": True}  # `extra` of an INFO line that --quiet still shows: start, stop, the minutely stats


def summary(record: logging.LogRecord) -> bool:
    return getattr(record, "summary", False)


def _lean() -> None:
    """Skip what our format never shows (logging HOWTO, "Optimization")."""
    logging.logMultiprocessing = False
    logging.logProcesses = False
    logging._srcfile = None  # no caller lookup: file and line are not in the format


def setup(folder: Path | None, console_level: int = logging.INFO, terminal: bool = False, bar: bool = False) -> None:
    """Send json_workflow's log to stderr and, when `folder` is given, to folder/json_workflow.log."""
    _lean()
    for handler in log.handlers:
        handler.close()
    log.handlers.clear()
    log.setLevel(min(logging.INFO, console_level))
    log.propagate = False
    log.addHandler(_Tee(folder / LOG_FILE if folder is not None else None, console_level, terminal, bar))


_INHERITED: list[logging.Handler] = []  # a worker process's parent's handlers: never closed there, never used


# How a process logs, for a worker process it starts to follow: its log file, its console level, whether
# its console is a terminal, and its logger's level.
Following = tuple[Path | None, int, bool, int]


def following() -> Following | None:
    """How this process logs (None: not through setup, as a test's or a bench's handlers)."""
    tees = [h for h in log.handlers if isinstance(h, _Tee)]
    return (tees[0].path, tees[0].console_level, tees[0].terminal, log.level) if tees else None


def for_worker_process(
    show: Callable[[str, bool], None], otherwise: logging.Handler, parent: Following | None = None
) -> None:
    """In a worker process: write the log file and the console itself, but on a terminal send console lines
    to `show` (the parent's terminal: its budget, its progress bar); with no log set up to follow (a test's,
    a bench's), log to `otherwise`. `parent`: how the parent logs (a forked worker finds it in its handlers)."""
    parent = parent or following()
    _INHERITED.extend(log.handlers)
    log.propagate = False
    if parent is None:
        log.handlers[:] = [otherwise]
        return
    path, console_level, terminal, level = parent
    _lean()
    log.setLevel(level)
    log.handlers[:] = [_Tee(path, console_level, show=show if terminal else None)]


def show(line: str, always: bool) -> None:
    """A worker process's console line, formatted there: on this process's console, within its budget."""
    for handler in log.handlers:
        if isinstance(handler, _Tee):
            with handler.lock or contextlib.nullcontext():
                handler._show(line, always)


def flush() -> None:
    """Write out buffered lines (the pipeline calls this after every batch)."""
    for handler in log.handlers:
        handler.flush()


def settle() -> None:
    """Say what the terminal held back, then write out: before a command's closing line."""
    for handler in log.handlers:
        if isinstance(handler, _Tee):
            with handler.lock or contextlib.nullcontext():
                handler._say_held()
        handler.flush()


def by_worker(lines: Iterable[tuple[str, str | None]], at: float | None = None) -> None:
    """Log a batch's (worker, lines) as one INFO record per worker; the formatter heads every line.

    The seed's log has four lines per file; a record costs more than the lines in it, and the log is
    written out once per batch anyway. `at`: the time the lines are true of (a commit's), when they
    are logged after it: a process stopped in between must not seem to have worked once woken.
    """
    by_worker: dict[str, list[str]] = {}
    for worker, text in lines:
        if text:
            by_worker.setdefault(worker, []).append(text)
    if not by_worker or not log.isEnabledFor(logging.INFO):
        return
    at = time.time() if at is None else at
    for worker, texts in by_worker.items():  # made here: logging's own call would stamp them now
        record = log.makeRecord(log.name, logging.INFO, "", 0, "\n".join(texts), (), None, extra={"worker": worker})
        record.created, record.msecs = at, (at % 1) * 1000
        log.handle(record)
