"""The exceptions json-workflow raises; every message says what to fix."""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


def detached(error: E) -> E:
    """`error` without its traceback and context: kept with a file, their frames would hold its whole batch."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


class WorkflowError(Exception):
    """Base of every error json-workflow raises on purpose."""


class ConfigError(WorkflowError):
    """Raised when the configuration file is missing, unreadable or invalid."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"invalid configuration in {self.source}:"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def _text(message: str) -> str:
    """`message` as UTF-8 text, whatever bytes of a file name or a field it quotes."""
    return message.encode("utf-8", "backslashreplace").decode()


class Rejected(WorkflowError):
    """Raised when a job file itself is bad; it goes to the failed folder with this reason."""

    def __init__(self, reason: str, stage: str = "parse"):
        reason = _text(reason)
        self.reason = reason
        self.stage = stage
        super().__init__(reason)


class DestinationError(WorkflowError):
    """Raised when a folder cannot be written; the file waits in the hot folder, it is not at fault."""

    def __init__(self, folder: str, error: OSError):
        self.folder = folder
        self.error = detached(error)
        super().__init__(_text(f"cannot write to {folder}: {error.strerror or error} (errno {error.errno})"))

    def __reduce__(self) -> tuple[type, tuple[str, OSError]]:  # sent from a worker process to the service
        return (DestinationError, (self.folder, self.error))


class EndpointError(DestinationError):
    """Raised when a URL destination cannot take a copy now (no answer, 408, 429, 5xx); the file waits, at
    least `after` seconds when the endpoint said so (Retry-After)."""

    def __init__(self, url: str, reason: str, after: float | None = None):
        self.folder, self.error, self.after = url, None, after  # type: ignore[assignment]
        WorkflowError.__init__(self, _text(f"cannot send to {url}: {reason}"))
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str, float | None]]:  # type: ignore[override]
        return (EndpointError, (self.folder, self.reason, self.after))


class StillWriting(WorkflowError):
    """Raised when a job file is still being written; it waits in the hot folder until it is complete."""


class StoreError(WorkflowError):
    """Raised when the journal cannot be read or written; files wait until it can."""


class Fenced(StoreError):
    """Raised when another instance took over this one's claim area: it plans and publishes nothing more."""


class MailError(WorkflowError):
    """Raised when the SMTP server cannot be reached or refuses a message; says what it answered."""
