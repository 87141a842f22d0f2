"""Watching the service itself: its live state and counters, health checks, the status of a data root."""

from __future__ import annotations

import socket


def instance_name() -> str:
    """This host's name, as the live state, status and metrics name the instance."""
    return socket.gethostname() or "localhost"
