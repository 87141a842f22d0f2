"""The daily report, sent once per day whatever restarts and downtime happen, and throttled failure alerts.

`tick(now)` is all there is: the service calls it every half minute from a thread of its own, tests
call it with the time they want. What was sent is recorded in the store, so a restart neither repeats
nor skips a report: each day up to yesterday whose report time has passed and that is not marked
sent is sent, oldest first, at most the last CATCH_UP_DAYS of them.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

from json_workflow import durable
from json_workflow.config import Config
from json_workflow.errors import MailError, StoreError
from json_workflow.logs import log
from json_workflow.names import unshown
from json_workflow.plural import count
from json_workflow.reporting import figures, mail, render
from json_workflow.settings import Email
from json_workflow.store import Store, open_store
from json_workflow.store.rows import AlertState, Failure, TroubleCount

CATCH_UP_DAYS = 7
TICK_SECONDS = 30
RETRY_FIRST, RETRY_MAX = 60.0, 3600.0
ALERT_FILES = 50  # files listed by name in one alert; the rest are counted


class Reporter:
    """Owns its own store (its own connection: it runs beside the pipeline's thread), unless given one."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        send: Callable[[Email, EmailMessage], None] = mail.send,
        store: Store | None = None,
    ):
        self.config, self.clock, self.send = config, clock, send
        self.store = store if store is not None else open_store(config, "reporter")
        self.retry = {"report": (0.0, RETRY_FIRST), "alert": (0.0, RETRY_FIRST)}  # next attempt, next delay
        self.pruned = 0.0
        self.on_sent: Callable[[str, float], None] | None = None  # told (day, when) after each report
        self._left_to: str | None = None  # the instance the report was last left to (said once)
        # Another instance was sending a report due here: look again once its lease could have run out, rather
        # than at the next tick (a sender that died mid-send leaves the report to this one within a lease).
        self.sooner = False

    def close(self) -> None:
        self.store.close()

    def tick(self, now: float | None = None) -> None:
        """Send what is due; a failure is logged and retried later, never raised."""
        now = self.clock() if now is None else now
        if now - self.pruned >= 86400:
            self.pruned = now
            self.store.prune(self.config.retention_days, now)
        for what, step in (("report", self._reports), ("alert", self._alerts)):
            if now < self.retry[what][0]:
                continue
            try:
                step(now)
            except (MailError, OSError, StoreError) as e:
                delay = self.retry[what][1]
                self.retry[what] = (now + delay, min(delay * 2, RETRY_MAX))
                log.error("Cannot send the %s, trying again in %s: %s", what, figures.duration(delay), e)
            else:
                self.retry[what] = (0.0, RETRY_FIRST)

    # --- the daily report ----------------------------------------------------------------------
    def _due_at(self, day: datetime.date) -> datetime.datetime:
        """When the report of `day` is due: report_time on the next day, local time."""
        hour, minute = map(int, self.config.email.report_time.split(":"))
        return datetime.datetime.combine(
            day + datetime.timedelta(days=1), datetime.time(hour, minute), self.config.email.zone
        )

    def plan(self, now: float) -> str:
        """What happens to today's report, for the log."""
        email = self.config.email
        today = figures.local_day(now, email.zone)
        how = (
            f"mailed to {', '.join(email.recipients)}"
            if email.enabled
            else f"written to {self.report_file(today).parent} (email is not enabled)"
        )
        if self.config.fleet and not self.config.report_settings["mails"]:
            how = "mailed by an instance of the fleet that can mail it (this one cannot; " + how + " when none can)"
        return f"Daily report for {today} due at {self._due_at(today):%Y-%m-%d %H:%M %Z}, {how}"

    def due_days(self, now: float) -> list[datetime.date]:
        """Days whose report is due and not yet sent, oldest first."""
        zone = self.config.email.zone
        first = self.store.first_run()
        if first is None:
            return []
        today = figures.local_day(now, zone)
        day = max(figures.local_day(first, zone), today - datetime.timedelta(days=CATCH_UP_DAYS))
        sent = self.store.reports_sent()
        due = []
        while day < today:
            if self._due_at(day).timestamp() <= now and day.isoformat() not in sent:
                due.append(day)
            day += datetime.timedelta(days=1)
        return due

    @contextlib.contextmanager
    def _sending(self, what: str) -> Iterator[bool]:
        """Whether this instance is the fleet's one sender of `what` now (always, alone)."""
        taken = self.store.take_send(what, self.config.store.lease_seconds)
        try:
            yield taken
        finally:
            if taken:  # after the write that records the send there is nothing left to release
                self.store.release_send(what)

    def mailer(self) -> str | None:
        """In a fleet, the instance this one (which cannot mail the report) leaves it to: one that can, seen within
        the days a report is caught up on (longer ago, it is taken for retired). None: this one sends it."""
        if not self.config.fleet or self.config.report_settings["mails"]:
            return None
        now = self.store.now()
        return next(
            (
                m.name
                for m in self.store.members()
                if m.name != self.config.instance
                and now - m.beat < CATCH_UP_DAYS * 86400
                and json.loads(m.report or "{}").get("mails")
            ),
            None,
        )

    def differences(self) -> str | None:
        """In a fleet, the running instances whose report settings differ from this one's, in one line."""
        if not self.config.fleet:
            return None
        mine, now, differ = self.config.report_settings, self.store.now(), []
        for m in self.store.members():
            if m.name == self.config.instance or m.report is None or now - m.beat >= self.config.store.lease_seconds:
                continue
            theirs = json.loads(m.report)
            if changed := [f"{key} {theirs.get(key)!r}" for key, value in mine.items() if theirs.get(key) != value]:
                differ.append(f"{m.name} has {', '.join(changed)}")
        if not differ:
            return None
        here = ", ".join(f"{key} {value!r}" for key, value in mine.items())
        return f"{'; '.join(differ)} ({self.config.instance} here: {here})"

    def _reports(self, now: float) -> None:
        due = self.due_days(now)
        if due and (mailer := self.mailer()) is not None:
            if self._left_to != mailer:
                log.info("Daily reports are left to instance %s, which can mail them (this one cannot)", mailer)
                self._left_to = mailer
            return
        self.sooner = False
        for day in due:
            with self._sending(f"report {day.isoformat()}") as mine:
                # Another instance sends it; or it has, since the days due were read.
                self.sooner |= not mine
                if not mine or day.isoformat() in self.store.reports_sent():
                    continue
                delivery = self.deliver(day, now, send=self.config.email.enabled)
                self.store.mark_report_sent(day.isoformat(), now, delivery)
            log.info("Daily report for %s: %s", day.isoformat(), delivery)
            if self.on_sent is not None:
                self.on_sent(day.isoformat(), now)

    def deliver(self, day: datetime.date, now: float, send: bool, output: Path | None = None) -> str:
        """Write one day's report (HTML and text) to `output` or the reports folder, and mail it."""
        config = self.config
        fig = figures.build(self.store, day, config.email.zone, now, self.present, config.highlight, config.fleet)
        title = config.report.title
        html, text = render.html(fig, title), render.text(fig, title)
        try:
            written = self._write(day, html, text, output)
        except OSError as e:
            if not send or output is not None:  # the file is what was asked for
                raise
            # The copy in the logs folder is a convenience; a full or read-only disk must not stop the mail.
            log.warning("Cannot keep a copy of the report for %s: %s", day.isoformat(), e)
            written = None
        if not send:
            return f"written to {written}"
        self.send(config.email, mail.message(config.email, render.subject(fig, title), text, html))
        return f"mailed to {', '.join(config.email.recipients)}" + (f" (copy in {written})" if written else "")

    def report_file(self, day: datetime.date) -> Path:
        """Where the day's scheduled report is kept: JSON_PARSER_LOGS/reports/YYYY-MM-DD.html."""
        return self.config.logs / "reports" / f"{day.isoformat()}.html"

    def _write(self, day: datetime.date, html: str, text: str, output: Path | None) -> Path:
        config = self.config
        if output is None:
            output = self.report_file(day)
            durable.make_folder(output.parent, config.permissions.dir_mode, config.root)
        durable.replace_file(output, html.encode(), config.permissions.file_mode)
        durable.replace_file(output.with_suffix(".txt"), text.encode(), config.permissions.file_mode)
        return output

    def present(self, name: str, claim: str | None) -> bool:
        """Is a received, unfinished file still waiting (in the claim area or the hot folder)?"""
        return bool(claim and os.path.lexists(claim)) or os.path.lexists(self.config.hot / unshown(name))

    # --- alerts --------------------------------------------------------------------------------
    def _alerts(self, now: float) -> None:
        email = self.config.email
        if not (email.enabled and email.alerts):
            return
        with self._sending("alert") as mine:
            if mine:  # one instance of a fleet mails each round, from the fleet's shared alert state
                self._alert_round(now)

    def _alert_round(self, now: float) -> None:
        email = self.config.email
        state = self.store.alert_state()
        if state is None:  # first start: only what happens from now on is news
            self.store.save_alert_state(AlertState(since=now, sent=0.0))
            return
        if now - state.sent < email.alert_interval_minutes * 60:
            return
        failed, troubles = self.store.failures(state.since, now), self.store.trouble_counts(state.since, now)
        if failed or troubles:
            subject, text = self._alert_text(failed, troubles, state.since)
            self.send(email, mail.message(email, subject, text))
            log.info("Alert mailed to %s: %s", ", ".join(email.recipients), subject)
        self.store.save_alert_state(AlertState(since=now, sent=now if failed or troubles else state.sent))

    def _alert_text(self, failed: list[Failure], troubles: list[TroubleCount], since: float) -> tuple[str, str]:
        zone = self.config.email.zone

        def at(ts: float) -> str:
            return datetime.datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")

        parts = [f"{count(len(failed), 'file')} failed"] * bool(failed)
        parts += [f"{count(len(troubles), 'destination')} in trouble"] * bool(troubles)
        lines = [f"json-workflow on {self.config.hot}, since {at(since)} {self.config.email.timezone}:", ""]
        if troubles:
            lines.append("Destinations in trouble (their files wait in the hot folder and are retried):")
            lines += [
                f"  {folder}: {error} (first at {at(first)}, {count(times, 'time')})"
                for folder, times, first, error in troubles
            ]
            lines.append("")
        if failed:
            lines.append(
                f"Failed files (in {self.config.failed}, each with a .reason.txt; "
                "`json-workflow retry` puts them back):"
            )
            lines += [f"  {at(f.finished)}  {f.name}  {f.stage}: {f.reason}" for f in failed[:ALERT_FILES]]
            if len(failed) > ALERT_FILES:
                lines.append(f"  ... and {len(failed) - ALERT_FILES} more")
        return "json-workflow alert: " + ", ".join(parts), "\n".join(lines) + "\n"


def report_forever(
    config: Callable[[], Config], stopping: threading.Event, on_sent: Callable[[str, float], None]
) -> None:
    """The daily report and alerts, in a thread of their own: a slow mail server never holds up files.

    `config` gives the running configuration (a reload applies from the next tick); a store that cannot
    be opened yet (a fleet's, down) is tried again at each tick.
    """
    reporter: Reporter | None = None
    try:
        while True:
            try:
                if reporter is None:
                    reporter = Reporter(config())
                    reporter.on_sent = on_sent
                    if differ := reporter.differences():
                        log.warning(
                            "Report settings differ between the fleet's instances: %s. One report goes out for the "
                            "fleet, sent by an instance that can mail it",
                            differ,
                        )
                    reporter.tick()  # a report missed while the service was down goes out now
                    log.info("%s", reporter.plan(time.time()))
                else:
                    reporter.config = config()
                    reporter.tick()
            except StoreError as e:
                log.error("Reporter cannot open the store, trying again in %ds: %s", TICK_SECONDS, e)
            except Exception:  # a bug here must not end reporting for the rest of the service's life
                log.exception("Reporter failed; trying again in %ds", TICK_SECONDS)
            lease = float(config().store.lease_seconds) + 1
            if stopping.wait(min(TICK_SECONDS, lease) if reporter is not None and reporter.sooner else TICK_SECONDS):
                return
    finally:
        if reporter is not None:
            reporter.close()
