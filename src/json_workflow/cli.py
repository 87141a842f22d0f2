"""The json-workflow command: parse arguments, build the pieces, call them, print the outcome.

Subcommands import the modules they use when they run: every import is paid at each start, and
`run --once` from cron, `explain` or `stats` need neither the service (watchdog) nor the report
(Jinja2, css-inline): importing everything would add about 80 ms to each of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from json_workflow import config as config_module
from json_workflow import logs
from json_workflow.config import CONFIG_ENV, ROOT_ENV, Config
from json_workflow.errors import ConfigError, Rejected, StillWriting, WorkflowError
from json_workflow.intake.scan import scan
from json_workflow.names import shown

if TYPE_CHECKING:
    from json_workflow.reporting.reporter import Reporter

# A backlog at least this large gets a progress bar when stderr is a terminal.
PROGRESS_MIN_FILES = 500

config_option = click.option(
    "--config",
    "config_path",
    envvar=CONFIG_ENV,
    type=click.Path(dir_okay=False),
    help=f"TOML configuration file (default: built-in; env {CONFIG_ENV}).",
)
root_option = click.option(
    "--root",
    envvar=ROOT_ENV,
    type=click.Path(file_okay=False),
    help=f"Data root, overriding the configuration's root (env {ROOT_ENV}).",
)


class Exit(click.ClickException):
    """An error the operator can act on, shown as `json-workflow: ...`; exit 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"json-workflow: {self.format_message()}", err=True)


class BadConfiguration(Exit):
    """A configuration that does not validate; exit 2, before anything is touched."""

    exit_code = 2


@contextlib.contextmanager
def operator_errors(prefix: str = "") -> Iterator[None]:
    """Turn a WorkflowError (a missing hot folder, a damaged journal, a lock held) into exit 1."""
    try:
        yield
    except WorkflowError as e:
        raise Exit(prefix + str(e)) from None


def load_config(config_path: str | None, root: str | None = None, sends_mail: bool = False) -> Config:
    """The validated configuration, or exit 2 saying what is wrong; `sends_mail` also checks the password."""
    try:
        config = config_module.load(config_path, root)
        if sends_mail and (problems := config.email.secret_problems()):
            raise ConfigError(config_path or "built-in configuration", problems)
        return config
    except ConfigError as e:
        raise BadConfiguration(str(e)) from None


@click.group()
@click.version_option(package_name="json-workflow")
def main() -> None:
    """Route TWIST job files from hot folders to the archive and downstream folders."""


@main.command()
@click.option("--once", is_flag=True, help="Process everything in the hot folder, then exit.")
@config_option
@root_option
def run(once: bool, config_path: str | None, root: str | None) -> None:
    """Run the service (watch the hot folder), or with --once process it and exit."""
    from json_workflow.run import check_hot_folder, run_once

    config = load_config(config_path, root, sends_mail=not once)
    if not once:
        from json_workflow.service import Service

        with operator_errors():
            _setup_logging(config, logging.INFO)
            sys.exit(Service(config, config_path, root).run())
    with operator_errors():
        check_hot_folder(config)
        backlog = _count_backlog(config) if sys.stderr.isatty() else 0
        show_bar = backlog >= PROGRESS_MIN_FILES
        _setup_logging(config, logging.WARNING if show_bar else logging.INFO)
        if show_bar:
            with click.progressbar(length=backlog, label="Processing", file=sys.stderr) as bar:
                summary = run_once(config, bar.update)
        else:
            summary = run_once(config)
    click.echo(summary.line())


def _count_backlog(config: Config) -> int:
    return sum(1 for _ in scan(config.hot))


def _setup_logging(config: Config, console_level: int) -> None:
    from json_workflow.delivery.durable import make_folder

    try:
        make_folder(config.logs, config.permissions.dir_mode, config.root)
    except OSError as e:
        logs.setup(None, console_level)
        logs.log.warning("Cannot write the log file in %s (%s); logging to stderr only", config.logs, e)
        return
    logs.setup(config.logs, console_level)


@main.command()
@config_option
@root_option
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def explain(config_path: str | None, root: str | None, files: tuple[str, ...]) -> None:
    """Show each file's fields and every place it would go, and why. Changes nothing."""
    from json_workflow.explain import Explanation, client_folder, explain
    from json_workflow.intake.scan import read_job_file

    config = load_config(config_path, root)
    unreadable = 0
    for file in files:
        path = Path(os.path.abspath(file))
        folder = client_folder(path, config.hot)
        click.echo(shown(str(path)))
        try:
            found = explain(read_job_file(str(path), config.max_file_bytes).data, folder, config)
        except Rejected as r:  # too large, or not a regular file
            found = Explanation(rejection=r, failed_folder=config.failed_folder(folder))
        except StillWriting as e:
            click.echo(f"  still being written ({e}): it is taken once complete")
            continue
        except OSError as e:
            click.echo(f"  cannot read: {e.strerror}")
            unreadable += 1
            continue
        if found.rejection is not None:
            click.echo(f"  rejected at {found.rejection.stage}: {found.rejection.reason}")
            click.echo(f"  -> {shown(str(found.failed_folder))}/  (failed folder, with a reason file)")
            continue
        for key, value in found.fields:
            click.echo(f"  {key + ':':13}{value if value is not None else '-'}")
        for dest in found.destinations:
            why = "archive" if dest.is_archive else "rule " + ", rule ".join(f'"{r}"' for r in dest.reasons)
            click.echo(f"  -> {shown(str(dest.folder / path.name))}  ({why})")
    sys.exit(1 if unreadable else 0)


@main.command("check-config")
@config_option
@root_option
def check_config(config_path: str | None, root: str | None) -> None:
    """Validate the configuration and print the effective folders and routing table."""
    config = load_config(config_path, root)
    click.echo(f"configuration: {config_path or 'built-in'} (valid)")
    for problem in config.email.secret_problems():
        click.echo(f"warning: {problem}")
    click.echo(f"root:    {config.root}")
    for key in ("hot", "archive", "failed", "logs", "state"):
        click.echo(f"{key + ':':8} {getattr(config, key)}")
    click.echo(f"permissions: files {config.permissions.file_mode:04o}, folders {config.permissions.dir_mode:04o}")
    click.echo(f"max_file_bytes: {config.max_file_bytes}  workers: {config.workers}  flush: {config.flush}")
    email = config.email
    mailed = (
        f"mailed to {', '.join(email.recipients)} via {email.smtp_host}:{email.smtp_port}"
        if email.enabled
        else "written to the logs folder only (email not enabled)"
    )
    click.echo(
        f"daily report: {email.report_time} {email.timezone}, {mailed}; statistics kept {config.retention_days} days"
    )
    click.echo(f"routes ({len(config.routes)}), every matching rule fires; every file is also archived:")
    for rule in config.routes:
        when = " and ".join(f"{k} in {', '.join(v)}" if len(v) > 1 else f"{k} = {v[0]}" for k, v in rule.when.items())
        click.echo(f"  {rule.name}: {when}\n      -> {config.folder(rule.destination)}")


@main.command()
@root_option
@config_option
@click.argument("clients", nargs=-1)
def retry(root: str | None, config_path: str | None, clients: tuple[str, ...]) -> None:
    """Move failed files (of CLIENTS, or all) back into the hot folder under their original names."""
    from json_workflow.delivery.retry import retry as retry_files

    config = load_config(config_path, root)
    moved = skipped = 0
    for item in retry_files(config, clients):
        if item.target is None:
            skipped += 1
            click.echo(f"skipped {shown(str(item.source))}: a file of that name is already waiting in the hot folder")
        else:
            moved += 1
            click.echo(f"{shown(str(item.source))} -> {shown(str(item.target))}")
    click.echo(f"Retried {moved} files" + (f", skipped {skipped}" if skipped else ""))


@main.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def demo(directory: str | None) -> None:
    """Build a sandbox with sample jobs, process it, and show where every file went."""
    from json_workflow.demo import run_demo

    sys.exit(run_demo(directory))


def _open_statistics(config: Config) -> Reporter:
    """The Reporter over the store, or exit 1 when nothing was ever recorded."""
    from json_workflow.reporting.reporter import Reporter
    from json_workflow.store import DATABASE

    if not (config.state / DATABASE).is_file():
        raise Exit(f"no statistics yet: {config.state / DATABASE} does not exist (nothing has run on this root)")
    with operator_errors():
        return Reporter(config)


def _day(value: str | None, config: Config):
    import datetime
    import time

    from json_workflow.reporting.figures import local_day

    if value is None:
        return local_day(time.time(), config.email.zone)
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date as YYYY-MM-DD, got {value!r}", param_hint="--date") from None


date_option = click.option(
    "--date", "date", metavar="YYYY-MM-DD", help="The day, in the configured time zone (email.timezone); default today."
)


@main.command()
@date_option
@click.option("--output", type=click.Path(dir_okay=False), help="Write the HTML here (the text beside it, .txt).")
@click.option("--send", is_flag=True, help="Also mail it through the configured SMTP server.")
@config_option
@root_option
def report(date: str | None, output: str | None, send: bool, config_path: str | None, root: str | None) -> None:
    """Write (and with --send, mail) the HTML report of a day."""
    import time

    config = load_config(config_path, root, sends_mail=send)
    day = _day(date, config)
    if send and not config.email.enabled:
        raise BadConfiguration("--send needs [email] enabled = true in the configuration")
    reporter = _open_statistics(config)
    try:
        click.echo(f"Report for {day}: " + reporter.deliver(day, time.time(), send, Path(output) if output else None))
    except WorkflowError as e:
        raise Exit(f"report for {day} not sent: {e}") from None
    except OSError as e:
        raise Exit(f"cannot write the report: {e}") from None
    finally:
        reporter.close()


@main.command()
@date_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@config_option
@root_option
def stats(date: str | None, as_json: bool, config_path: str | None, root: str | None) -> None:
    """Print the figures of a day (default today)."""
    import json
    import time

    from json_workflow.reporting import figures, render

    config = load_config(config_path, root)
    day = _day(date, config)
    reporter = _open_statistics(config)
    try:
        fig = figures.build(
            reporter.store, day, config.email.zone, time.time(), reporter.present, config.report.highlight
        )
    finally:
        reporter.close()
    click.echo(json.dumps(fig.as_dict(), indent=2) if as_json else render.text(fig, config.report.title))
