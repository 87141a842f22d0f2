"""/metrics: the Prometheus text format, made at scrape time from counters and gauges already in memory.

The service's figures are its Monitor's (counters from 0 at each start, as Prometheus expects of a
process); `json-workflow dashboard`, which has no pipeline, exports the store's totals instead.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from json_workflow.monitor.fleet import Instance
from json_workflow.monitor.live import BUCKETS, Monitor
from json_workflow.monitor.state import Live

PREFIX = "json_workflow_"
CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class Figures:
    """What one scrape exports."""

    live: Live | None
    files: dict[tuple[str, str], int]  # (client, outcome) -> files
    copies: dict[str, int]  # rule -> copies
    buckets: list[int] | None = None  # file_seconds per bucket (not cumulative), +Inf last; None: not known
    seconds_sum: float = 0.0
    scans: dict[str, int] = field(default_factory=dict)
    instance: str = ""  # this process's instance
    store: str = "sqlite"
    fleet: list[Instance] = field(default_factory=list)  # a fleet's instances (none alone)
    last_scan: float = 0.0  # when the last periodic scan ended; 0 before the first (an alert on its age fires)
    report_sent: float = 0.0  # when the last daily report was sent; 0 before the first
    sends: dict[str, list[float]] = field(default_factory=dict)  # rule -> send_seconds' bucket counts, then sum

    def at(self, scan: dict[str, Any] | None, report: dict[str, Any] | None) -> Figures:
        """With the last scan's end and the last report's sending (as the live state holds them)."""
        self.last_scan, self.report_sent = (scan or {}).get("at", 0.0), (report or {}).get("sent", 0.0)
        return self


def service_figures(monitor: Monitor) -> Figures:
    files, copies, buckets, seconds_sum = monitor.counters()
    live = monitor.snapshot()
    figures = Figures(live, files, copies, buckets, seconds_sum, live.scans, sends=monitor.send_counters())
    return figures.at(live.last_scan, live.report)


class _Collector(Collector):
    def __init__(self, figures: Callable[[], Figures]):
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        yield from families(self.figures())


def registry(figures: Callable[[], Figures]) -> CollectorRegistry:
    """A registry of our own (not the process-wide default, which would add Python's own metrics twice)."""
    owned = CollectorRegistry(auto_describe=False)
    owned.register(_Collector(figures))
    return owned


def exposition(owned: CollectorRegistry) -> bytes:
    return generate_latest(owned)


def families(f: Figures) -> Iterator[Metric]:
    files = CounterMetricFamily(
        PREFIX + "files", "Files finished, by client folder and outcome.", labels=["client", "outcome"]
    )
    for (client, outcome), count in sorted(f.files.items()):
        files.add_metric([client, outcome], count)
    yield files
    copies = CounterMetricFamily(PREFIX + "copies", "Copies delivered, by the rule that sent them.", labels=["rule"])
    for rule, count in sorted(f.copies.items()):
        copies.add_metric([rule], count)
    yield copies
    if f.buckets is not None:
        yield HistogramMetricFamily(
            PREFIX + "file_seconds",
            "Processing time of a file, from its claim to its finish.",
            buckets=_cumulative(f.buckets),
            sum_value=f.seconds_sum,
        )
    if f.sends:
        sends = HistogramMetricFamily(
            PREFIX + "send_seconds",
            "Time of one request to a URL destination, answered or not, by rule.",
            labels=["rule"],
        )
        for rule, counts in sorted(f.sends.items()):
            sends.add_metric([rule], _cumulative(counts[:-1]), sum_value=counts[-1])
        yield sends
    scans = CounterMetricFamily(PREFIX + "scans", "Periodic scans of the hot folder, by outcome.", labels=["outcome"])
    for outcome in ("completed", "skipped", "abandoned"):
        scans.add_metric([outcome], f.scans.get(outcome, 0))
    yield scans
    live = f.live
    if live is not None:
        yield _gauge("waiting_files", "Files back in the hot folder, waiting for a destination.", live.pending)
        yield _gauge("claimed_files", "Files in the claim area, being processed.", live.claimed)
        yield _gauge("hot_files", "Files seen in the hot folder and not yet taken.", live.waiting)
        up = GaugeMetricFamily(
            PREFIX + "destination_up", "1 while a destination can be written, else 0.", labels=["rule"]
        )
        held = GaugeMetricFamily(
            PREFIX + "destination_waiting_files", "Files waiting in the hot folder for a destination.", labels=["rule"]
        )
        for destination in live.destinations:
            for rule in destination.rules:
                up.add_metric([rule], 1 if destination.state == "ok" else 0)
                held.add_metric([rule], destination.held)
        yield up
        yield held
        yield _gauge("heartbeat_timestamp_seconds", "When the main loop last turned (Unix time).", live.beat)
    never = " (Unix time; 0: never)."
    yield _gauge("last_scan_timestamp_seconds", "When the last periodic scan ended" + never, f.last_scan)
    yield _gauge("report_last_sent_timestamp_seconds", "When the last daily report was sent" + never, f.report_sent)
    info = GaugeMetricFamily(
        PREFIX + "build_info", "The json-workflow version, as a label; always 1.", labels=["version"]
    )
    info.add_metric([_version()], 1)
    yield info
    if f.instance:
        me = GaugeMetricFamily(
            PREFIX + "instance_info",
            "This instance's name and store kind, as labels; always 1.",
            labels=["name", "store"],
        )
        me.add_metric([f.instance, f.store], 1)
        yield me
    if f.fleet:
        yield from _fleet(f.fleet)


def _fleet(fleet: list[Instance]) -> Iterator[Metric]:
    """Every instance of the fleet, as the store's lease rows say (any instance's /metrics gives them all)."""
    up = GaugeMetricFamily(PREFIX + "fleet_instance_up", "1 while the instance renews its lease.", labels=["name"])
    age = GaugeMetricFamily(
        PREFIX + "fleet_instance_lease_age_seconds", "Seconds since the instance renewed its lease.", labels=["name"]
    )
    today = GaugeMetricFamily(
        PREFIX + "fleet_instance_files_today",
        "Files the instance processed today, by outcome.",
        labels=["name", "outcome"],
    )
    for i in fleet:
        up.add_metric([i.name], int(i.alive))
        age.add_metric([i.name], i.beat_age)
        today.add_metric([i.name, "archived"], i.processed_today - i.failed_today)
        today.add_metric([i.name, "failed"], i.failed_today)
    yield from (up, age, today)


def _cumulative(counts: list[int] | list[float]) -> list[tuple[str, float]]:
    """Bucket counts (not cumulative, +Inf last) as Prometheus' cumulative buckets."""
    cumulative, running = [], 0.0
    for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
        running += count
        cumulative.append((bound, running))
    return cumulative


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


@functools.cache  # importlib.metadata reads the installed files at each call
def _version() -> str:
    try:
        return importlib.metadata.version("json-workflow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
