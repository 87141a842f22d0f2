"""Watching the service itself: its live state and counters, health checks, the status of a data root."""
