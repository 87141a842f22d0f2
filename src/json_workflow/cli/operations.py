"""The commands an operator watches the service with: status, history, dashboard."""

from __future__ import annotations

import datetime
import json
import logging
import sys

import click

from json_workflow import logs
from json_workflow.cli.app import (
    Exit,
    config_option,
    existing_root,
    load_config,
    main,
    operator_errors,
    root_option,
    setup_logging,
)
from json_workflow.config import Config
from json_workflow.names import shown
from json_workflow.plural import count


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@config_option
@root_option
def status(as_json: bool, config_path: str | None, root: str | None) -> None:
    """One screen: the service, its files and destinations, failed files, today's figures.

    Exit 0 when the service runs and nothing needs attention, 1 when something does, 3 when no service runs.
    """
    from json_workflow.monitor.status import read_status

    config = load_config(config_path, root)
    existing_root(config)
    with operator_errors():
        found = read_status(config)
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
    else:
        click.echo("\n".join(found.lines(config.email.zone)))
    sys.exit(found.exit_code)


@main.command()
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print the receptions as JSON.")
@click.option(
    "--limit", type=click.IntRange(1, 100_000), default=200, show_default=True, help="At most this many receptions."
)
@config_option
@root_option
def history(text: str, as_json: bool, limit: int, config_path: str | None, root: str | None) -> None:
    """Every reception of the files whose name or job number contains TEXT, newest first."""
    config = load_config(config_path, root)
    existing_root(config)
    # Paths as people read them: a byte that is not UTF-8 or an invisible character escaped (names.shown).
    records = [
        record._replace(
            failed_as=record.failed_as and shown(record.failed_as),
            routed=[(rule, shown(folder)) for rule, folder in record.routed],
        )._asdict()
        for record in _history(config, text, limit)
    ]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"No file whose name or job number contains {text!r} (within the statistics kept)")
        sys.exit(1)
    zone = config.email.zone
    for r in records:
        click.echo(
            f"{_when(r['received'], zone)}  {r['name']}  #{r['id']}  from {r['source'].lower()}: "
            + (r["outcome"] or "in progress")
            + (f"{' ' if r['outcome'] else ''}({_seconds(r['seconds'])})" if r["seconds"] is not None else "")
        )
        if r["job"]:
            click.echo(f"    job number {r['job']}")
        for rule, folder in r["routed"]:
            click.echo(f"    {rule} -> {folder}  at {_when(r['finished'], zone)}")
        for rule, url, status, at in r["sent"]:  # each copy to a URL when its endpoint acknowledged it
            click.echo(
                f"    {rule}: {url} acknowledged it"
                + (f" (HTTP {status})" if status else "")
                + f" at {_when(at, zone)}"
            )
        if r["outcome"] in ("failed", "pending"):
            click.echo(f"    {r['stage']}: {r['reason']}")
        if r["failed_as"]:
            click.echo(f"    failed file: {r['failed_as']}")
        if r["retried"]:
            click.echo(f"    put back into the hot folder at {_when(r['retried'], zone)}")


def _history(config: Config, text: str, limit: int):
    from json_workflow.store import has_store, no_statistics, open_store

    if not has_store(config):
        raise Exit(no_statistics(config))
    with operator_errors():
        store = open_store(config, "command")
        try:
            return store.history(text, limit)
        finally:
            store.close()


def _when(ts: float | None, zone: datetime.tzinfo) -> str:
    return "-" if ts is None else datetime.datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _listen(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from json_workflow.settings import checked_listen

    try:
        return None if value is None else str(checked_listen(value))
    except ValueError as e:
        raise click.BadParameter(f"{e}, got {value!r}") from None


@main.command()
@click.option(
    "--listen", metavar="HOST:PORT", callback=_listen, help="Listen here instead of [http] listen (same checks)."
)
@config_option
@root_option
def dashboard(listen: str | None, config_path: str | None, root: str | None) -> None:
    """Serve the dashboard, /metrics and the health checks alone, for sites that run `run --once` from cron.

    It reads the same store, and its Retry moves failed files back into the hot folder like `retry`.
    """
    import signal
    import threading

    from json_workflow.store import has_store, no_statistics
    from json_workflow.web import serve

    config = load_config(config_path, root, serves_http=True, listen=listen)
    if not config.http.enabled:
        raise Exit("the dashboard is disabled in the configuration ([http] enabled = false)")
    existing_root(config)
    if not has_store(config):
        raise Exit(no_statistics(config))
    setup_logging(config, logging.INFO)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with operator_errors():
        server = serve(config, None, lambda: config, "--listen" if listen else "http.listen")
    while not stop.wait(1.0):  # the log is buffered: written out every second
        logs.flush()
    server.stop()
    logs.flush()


@main.group()
def store() -> None:
    """The store: move one host's SQLite statistics into PostgreSQL, for a fleet."""


@store.command()
@click.option("--to", "url", required=True, metavar="URL", help="postgresql://user@host:port/database")
@config_option
@root_option
def migrate(url: str, config_path: str | None, root: str | None) -> None:
    """Copy this root's SQLite store (statistics, file history, reports sent) into an empty PostgreSQL database.

    Refused while a json-workflow runs on the root. The password comes from store.password_env.
    """
    from json_workflow.run import exclusive, lock_holder
    from json_workflow.settings import store_url
    from json_workflow.store import has_store, no_statistics
    from json_workflow.store.transfer import to_postgresql

    config = load_config(config_path, root)
    existing_root(config)
    if config.fleet:
        raise Exit("this configuration's store is PostgreSQL already (store.url); migrate copies a SQLite store")
    try:
        store_url(url)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--to") from None
    if not has_store(config):
        raise Exit(no_statistics(config))
    if (pid := lock_holder(config)) is not None:
        raise Exit(f"json-workflow (pid {pid}) is running on {config.root}: stop it (and every run on this root) first")
    with operator_errors("cannot migrate: "), exclusive(config):
        copied = to_postgresql(config, url, config.store.password())
    click.echo(f"Copied {config.state / 'journal.sqlite3'} into {url}:")
    click.echo("".join(f"  {table}: {count(rows, 'row')}\n" for table, rows in copied.items()), nl=False)
    click.echo(
        f'Next: set [store] url = "{url}" (and each host\'s instance) in the configuration, then start the units.'
    )
