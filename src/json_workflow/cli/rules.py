"""The command for changing rules safely: replay (what would a new configuration do to the archive)."""

from __future__ import annotations

import csv
import datetime
import json
import os
import sys

import click

from json_workflow.cli.app import BadConfiguration, existing_root, load_config, main, root_option
from json_workflow.config import CONFIG_ENV


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime.date | None:
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date as YYYY-MM-DD, got {value!r}") from None


@main.command()
@click.option("--config", "new_path", required=True, type=click.Path(dir_okay=False), help="The NEW configuration.")
@click.option(
    "--from",
    "old_path",
    type=click.Path(dir_okay=False),
    help=f"The OLD configuration (default: the one in force: ${CONFIG_ENV}, else the built-in one).",
)
@click.option("--since", callback=_date, metavar="YYYY-MM-DD", help="Archived files modified on or after this day.")
@click.option("--until", callback=_date, metavar="YYYY-MM-DD", help="... and on or before this day (email.timezone).")
@click.option("--client", "clients", multiple=True, help="Only this client's archive (repeatable).")
@click.option("--format", "form", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@click.option("--apply", "deliver", is_flag=True, help="Deliver the added copies (never removes anything).")
@root_option
def replay(
    new_path: str,
    old_path: str | None,
    since: datetime.date | None,
    until: datetime.date | None,
    clients: tuple[str, ...],
    form: str,
    deliver: bool,
    root: str | None,
) -> None:
    """Route every archived file by OLD and NEW rules; print each file whose folders would differ.

    Reads the archive only: nothing is written anywhere. Exit 0 when nothing would change, 1 when
    something would, 2 when a configuration is invalid. With --apply, the added copies are delivered
    (exactly once, even run again after an interruption): exit 0 when every one is in place, 1 when
    some could not be (a file of that name with other bytes is never overwritten).
    """
    from json_workflow.replay import Totals, archived, day_start
    from json_workflow.replay import replay as run_replay

    if since and until and since > until:
        raise click.UsageError(f"--since {since} is later than --until {until}: no day is in between")
    new = load_config(new_path, root)
    # Both route the same archive: OLD takes NEW's root (the built-in configuration's would be elsewhere).
    old = load_config(old_path or os.environ.get(CONFIG_ENV) or None, root or str(new.root))
    if old.archive != new.archive:
        raise BadConfiguration(f"OLD and NEW archive different folders ({old.archive}, {new.archive}): use --root")
    # Exit 1 means "changes": whatever keeps replay from reading the archive exits 2.
    existing_root(new, BadConfiguration)
    if not new.archive.is_dir():
        raise BadConfiguration(f"the archive {new.archive} does not exist (paths.archive): nothing was archived here")
    known = {entry.name.casefold() for entry in new.archive.iterdir() if entry.is_dir()}
    if unknown := [c for c in clients if c.casefold() not in known]:
        raise click.BadParameter(f"no client folder {', '.join(unknown)} in {new.archive}", param_hint="--client")
    start = day_start(since, new) if since else None
    end = day_start(until + datetime.timedelta(days=1), new) if until else None
    totals = Totals()
    changes = run_replay(archived(new, start, end, clients), old, new, totals)
    if deliver:
        _apply(changes, new, totals)
        return
    if form == "json":
        rows = [
            {
                "file": c.path,
                "client": c.client,
                "added": [{"folder": str(d.folder), "rules": list(d.reasons)} for d in c.added],
                "removed": [{"folder": str(d.folder), "rules": list(d.reasons)} for d in c.removed],
            }
            for c in changes
        ]
        summary = {
            "files": totals.files,
            "changed": totals.changed,
            "unreadable": totals.unreadable,
            "added_by_rule": dict(totals.added),
            "removed_by_rule": dict(totals.removed),
            "changed_by_client": dict(totals.clients),
        }
        click.echo(json.dumps({"changes": rows, "totals": summary}, indent=2))
    elif form == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["file", "client", "change", "folder", "rules"])
        for c in changes:
            for sign, places in (("added", c.added), ("removed", c.removed)):
                for d in places:
                    writer.writerow([c.path, c.client, sign, str(d.folder), " + ".join(d.reasons)])
    else:
        for c in changes:
            click.echo(new.relative(c.path))
            for sign, places in (("+", c.added), ("-", c.removed)):
                for d in places:
                    rules = ", ".join(f'"{r}"' for r in d.reasons)
                    click.echo(f"  {sign} {new.relative(d.folder)}  (rule {rules})")
        click.echo(
            f"{totals.files} archived files read, {totals.changed} would change"
            + (f", {len(totals.unreadable)} could not be routed" if totals.unreadable else "")
        )
        if totals.added or totals.removed:
            by_rule = [f"+{n} {r}" for r, n in sorted(totals.added.items())]
            by_rule += [f"-{n} {r}" for r, n in sorted(totals.removed.items())]
            click.echo("  by rule: " + "; ".join(by_rule))
            click.echo("  by client: " + ", ".join(f"{c} {n}" for c, n in sorted(totals.clients.items())))
        for problem in totals.unreadable[:20]:
            click.echo(f"  cannot route {problem}")
    sys.exit(1 if totals.changed else 0)


def _apply(changes, config, totals) -> None:
    """Deliver the added copies and say what was done; exit 1 when some could not be placed."""
    from json_workflow.cli.app import operator_errors
    from json_workflow.delivery.durable import make_folder
    from json_workflow.redeliver import Applied, apply
    from json_workflow.store import open_store

    applied = Applied()
    with operator_errors():
        make_folder(config.state, config.permissions.dir_mode, config.root)  # the statistics record it
        store = open_store(config, "command")
    try:
        apply(changes, config, store, applied)
    finally:
        store.close()
    for path in applied.delivered:
        click.echo(f"delivered {path}")
    for path in applied.conflicts:
        click.echo(f"left alone {path}: a file of that name with other bytes is there")
    for problem in applied.failed:
        click.echo(f"cannot deliver {problem}")
    click.echo(
        f"{totals.files} archived files read, {totals.changed} with other folders: delivered "
        f"{len(applied.delivered)} copies, {len(applied.present)} already there, "
        f"{len(applied.conflicts)} left alone, {len(applied.failed)} failed"
    )
    sys.exit(1 if applied.conflicts or applied.failed else 0)
