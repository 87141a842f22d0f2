"""The commands that process files: run (the service, or --once), explain, check-config, retry, demo."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import click

from json_workflow import logs
from json_workflow.cli.app import (
    Exit,
    config_option,
    console_level,
    existing_root,
    load_config,
    log_level_option,
    main,
    operator_errors,
    quiet_option,
    root_option,
    setup_logging,
)
from json_workflow.config import Config
from json_workflow.errors import Rejected, StillWriting
from json_workflow.intake.scan import scan
from json_workflow.names import printable, shown
from json_workflow.plural import count
from json_workflow.routing.rules import Rule

# A backlog at least this large gets a progress bar when stderr is a terminal.
PROGRESS_MIN_FILES = 500


@main.command()
@click.option("--once", is_flag=True, help="Process everything in the hot folder, then exit.")
@quiet_option
@log_level_option
@config_option
@root_option
def run(once: bool, quiet: bool, log_level: str | None, config_path: str | None, root: str | None) -> None:
    """Run the service (watch the hot folder), or with --once process it and exit.

    On a terminal at most 40 INFO lines a second are shown (a large backlog gets a progress bar instead),
    unless --log-level is given; warnings always are, and the log file keeps every line.
    """
    from json_workflow.run import check_hot_folder, run_once

    level = console_level(quiet, log_level)
    config = load_config(config_path, root, sends_mail=not once, serves_http=not once, delivers=True)
    terminal = sys.stderr.isatty() and log_level is None
    if not once:
        from json_workflow.service import Service

        with operator_errors():
            check_hot_folder(config)  # before the log: a missing root is said once, not also as an unwritable log
            setup_logging(config, level, terminal)
            sys.exit(Service(config, config_path, root).run())
    with operator_errors():
        check_hot_folder(config)
        backlog = _count_backlog(config) if terminal and not quiet else 0
        show_bar = backlog >= PROGRESS_MIN_FILES
        setup_logging(config, logging.WARNING if show_bar else level, terminal, show_bar)
        if show_bar:
            with click.progressbar(length=backlog, label="Processing", file=sys.stderr) as bar:
                summary = run_once(config, bar.update)
        else:
            summary = run_once(config)
    logs.settle()  # the terminal's held-back note before the summary, the last line
    click.echo(summary.line())
    if summary.stopped:
        raise Exit(summary.stopped)


def _count_backlog(config: Config) -> int:
    return sum(1 for _ in scan(config.hot))


def _say(text: str) -> None:
    """A line of text from the configuration or a job: nothing in it reaches the terminal as a control."""
    click.echo(printable(text))


@main.command()
@config_option
@root_option
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def explain(config_path: str | None, root: str | None, files: tuple[str, ...]) -> None:
    """Show each file's fields and every place it would go, and why. Changes nothing."""
    from json_workflow.intake.scan import read_job_file
    from json_workflow.routing.explain import Explanation, client_folder, explain

    config = load_config(config_path, root)
    router = config.router()
    unreadable = 0
    for file in files:
        path = Path(os.path.abspath(file))
        folder = client_folder(path, config.hot, config.failed)
        click.echo(shown(str(path)))
        try:
            found = explain(
                read_job_file(str(path), config.max_file_bytes).data, folder, router, config.failed_folder(folder)
            )
        except Rejected as r:  # too large, or not a regular file
            found = Explanation(rejection=r, failed_folder=config.failed_folder(folder))
        except StillWriting as e:
            click.echo(f"  still being written ({e}): it is taken once complete")
            continue
        except OSError as e:
            click.echo(f"  cannot read: {e.strerror}")
            unreadable += 1
            continue
        for key, value in found.fields:
            click.echo(f"  {key + ':':13}{shown(value) if value is not None else '-'}")  # no escape reaches a terminal
        if found.rejection is not None:
            _say(f"  rejected at {found.rejection.stage}: {found.rejection.reason}")
            click.echo(f"  -> {shown(str(found.failed_folder))}/  (failed folder, with a reason file)")
        for dest in found.destinations:
            why = "archive" if dest.is_archive else "rule " + ", rule ".join(f'"{r}"' for r in dest.reasons)
            where = dest.shown if dest.remote and dest.remote[1].is_http else f"{dest.shown}/{path.name}"
            _say(f"  -> {shown(where)}  ({why})")
        for note in found.skipped:
            _say(f"  no copy: {note}")
        if found.rules:
            click.echo("  rules:")
        for name, failed in found.rules:
            _say(f"    {name}: " + ("matched" if failed is None else f"no, {failed}"))
    sys.exit(1 if unreadable else 0)


@main.command("check-config")
@config_option
@root_option
def check_config(config_path: str | None, root: str | None) -> None:
    """Validate the configuration as `run` and `dashboard` do and print the effective folders and routing table."""
    config = load_config(config_path, root, sends_mail=True, serves_http=True, delivers=True)  # every check run applies
    _say(f"configuration: {config_path or 'built-in'} (valid)")
    for folder in ("root", "hot"):
        if not getattr(config, folder).is_dir():
            _say(f"warning: the {folder} folder {getattr(config, folder)} does not exist (yet): run exits 1")
    _say(f"root:    {config.root}")
    for key in ("hot", "archive", "failed", "logs", "state"):
        _say(f"{key + ':':8} {getattr(config, key)}")
    _say(f"permissions: files {config.permissions.file_mode:04o}, folders {config.permissions.dir_mode:04o}")
    _say(
        f"max_file_bytes: {config.max_file_bytes}  workers: {config.workers}  "
        f"processes: {config.processes} ({config.process_count})  flush: {config.flush}"
    )
    if config.fleet:
        password = "set" if config.store.password() else "not set"
        _say(
            f"store: {config.store.url} (password from {config.store.password_env}: {password}); instance "
            f"{config.instance}, claims in {config.claim_area}, taken over after {config.store.lease_seconds:g}s"
        )
    else:
        _say(f"store: SQLite in {config.state}; instance {config.instance}")
    email = config.email
    mailed = (
        f"mailed to {', '.join(email.recipients)} via {email.smtp_host}:{email.smtp_port}"
        if email.enabled
        else "written to the logs folder only (email not enabled)"
    )
    kept = count(config.retention_days, "day")
    _say(f"daily report: {email.report_time} {email.timezone}, {mailed}; statistics kept {kept}")
    http = config.http
    if http.enabled:
        token = f"token from {http.token_env}" if http.token() else f"no token ({http.token_env} not set)"
        reach = "this host only" if http.loopback else "the network"
        _say(f"dashboard: http://{http.listen}/ ({reach}; {token})")
    else:
        _say("dashboard: off (http.enabled = false)")
    _say(f"routes ({len(config.routes)}), every matching rule fires; every file is also archived:")
    for rule in config.routes:
        skip = "  (a missing field: no copy)" if rule.on_missing == "skip" and rule.placeholders else ""
        _say(f"  {rule.name}: {rule.describe()}")
        _say(f"      -> {_destination(config, rule)}{skip}")


def _destination(config: Config, rule: Rule) -> str:
    """A rule's destination as check-config shows it: the folder, or the URL (no query values) and its options."""
    endpoint = rule.endpoint
    if endpoint is None:
        return str(config.folder(rule.destination))
    if endpoint.is_http:
        token = f"token from {rule.token_env}" if rule.token_env else "no token"
        how = f"{rule.method}, {token}" + (f", CAs from {rule.ca_file}" if rule.ca_file else "")
    else:
        how = (f"key {rule.key_file}" if rule.key_file else "password") + f", host keys from {rule.known_hosts}"
    return f"{endpoint.shown()}  ({how}; timeout {rule.timeout:g}s, {count(rule.concurrency, 'copy')} at once)"


@main.command()
@root_option
@config_option
@click.argument("clients", nargs=-1)
def retry(root: str | None, config_path: str | None, clients: tuple[str, ...]) -> None:
    """Move failed files (of CLIENTS, or all) back into the hot folder under their original names."""
    from json_workflow.delivery.retry import failed_clients
    from json_workflow.delivery.retry import retry as retry_files
    from json_workflow.store import has_store, open_store

    config = load_config(config_path, root)
    existing_root(config)
    present = failed_clients(config)
    if unknown := [c for c in clients if c.casefold() not in {p.casefold() for p in present}]:  # before anything moves
        raise Exit(
            f"no failed files of {', '.join(unknown)} in {config.failed}"
            + (f" (clients with failed files: {', '.join(present)})" if present else " (it holds none)")
        )
    store = None
    if has_store(config):  # the file history shows when each went back; opened before anything moves
        with operator_errors():
            store = open_store(config, "command")
    moved: list[str] = []
    skipped = 0
    try:
        for item in retry_files(config, clients):
            if item.target is None:
                skipped += 1
                click.echo(f"skipped {shown(str(item.source))}: {item.skipped}")
            else:
                moved.append(str(item.source))
                click.echo(f"{shown(str(item.source))} -> {shown(str(item.target))}")
        if moved and store is not None:
            store.mark_retried(moved, time.time())
    finally:
        if store is not None:
            store.close()
    if not moved and not skipped:
        click.echo(f"No failed files in {config.failed}: nothing to retry")
        return
    click.echo(f"Retried {count(len(moved), 'file')}" + (f", skipped {skipped}" if skipped else ""))


@main.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def demo(directory: str | None) -> None:
    """Build a sandbox with sample jobs, process it, and show where every file went."""
    from json_workflow.demo import run_demo

    if directory is not None and os.path.isdir(directory) and os.listdir(directory):  # never a real data root
        raise Exit(f"{directory} is not empty: the demo builds its sandbox in a new or empty folder")

    sys.exit(run_demo(directory))
