"""The command for changing rules safely: replay (what would a new configuration do to the archive), --apply."""

from __future__ import annotations

import csv
import datetime
import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from json_workflow.cli.app import BadConfiguration, day_option, existing_root, load_config, main, root_option
from json_workflow.config import CONFIG_ENV, Config
from json_workflow.errors import WorkflowError
from json_workflow.plural import count

if TYPE_CHECKING:
    from json_workflow.redeliver import Applied, Placed
    from json_workflow.replay import Change, Totals
    from json_workflow.store import Store


@main.command()
@click.option("--config", "new_path", required=True, type=click.Path(dir_okay=False), help="The NEW configuration.")
@click.option(
    "--from",
    "old_path",
    type=click.Path(dir_okay=False),
    help=f"The OLD configuration (default: the one in force: ${CONFIG_ENV}, else the built-in one).",
)
@click.option(
    "--since", callback=day_option, metavar="YYYY-MM-DD", help="Archived files modified on or after this day."
)
@click.option(
    "--until", callback=day_option, metavar="YYYY-MM-DD", help="... and on or before this day (email.timezone)."
)
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

    Writes nothing. A copy already delivered (by `--apply`, or by the pipeline under the rules now in
    force) counts as delivered. Exit 0 when nothing would change, 1 when something would, 2 when replay
    cannot run (an invalid configuration, a missing archive, a store it cannot read). With --apply, the
    added copies are delivered, each exactly once whatever was interrupted: exit 0 when every one is in
    place, 1 when some could not be (a file of that name with other bytes is never overwritten).
    """
    from json_workflow.replay import Totals, archived, day_start
    from json_workflow.replay import replay as run_replay

    if since and until and since > until:
        raise click.UsageError(f"--since {since} is later than --until {until}: no day is in between")
    new = load_config(new_path, root)
    # Both route the same archive: OLD takes NEW's root (the built-in configuration's would be elsewhere).
    old_path = old_path or os.environ.get(CONFIG_ENV) or None
    old = load_config(old_path, root or str(new.root))
    if old.archive != new.archive:
        raise BadConfiguration(f"OLD and NEW archive different folders ({old.archive}, {new.archive}): use --root")
    # What was delivered is known from one store, NEW's: one that OLD names too.
    if old_path is not None and (old.store.url, old.state) != (new.store.url, new.state):
        raise BadConfiguration(
            f"OLD and NEW keep their statistics in different stores ({old.store.shown()} in {old.state}, "
            f"{new.store.shown()} in {new.state}): give NEW the [store] and paths.state of the configuration in force"
        )
    # Exit 1 means "changes": whatever keeps replay from reading the archive exits 2.
    existing_root(new, BadConfiguration)
    if not new.archive.is_dir():
        raise BadConfiguration(f"the archive {new.archive} does not exist (paths.archive): nothing was archived here")
    known = {entry.name.casefold() for entry in new.archive.iterdir() if entry.is_dir()}
    if unknown := [c for c in clients if c.casefold() not in known]:
        raise click.BadParameter(f"no client folder {', '.join(unknown)} in {new.archive}", param_hint="--client")
    start = day_start(since, new) if since else None
    end = day_start(until + datetime.timedelta(days=1), new) if until else None
    store = _store(new, deliver)
    try:
        totals = Totals()
        delivered = None
        if store is not None:
            from json_workflow.redeliver import delivered_by

            delivered = delivered_by(new, store)
        changes = run_replay(archived(new, start, end, clients), old, new, totals, delivered)
        if deliver:
            assert store is not None
            _apply(changes, new, store, totals, form)
        else:
            _report(changes, new, totals, form)
    except WorkflowError as e:  # the store failed on the way: what was done is recorded, a rerun goes on
        raise BadConfiguration(f"replay stopped: {e}") from None
    finally:
        if store is not None:
            store.close()


def _store(config: Config, deliver: bool) -> Store | None:
    """The store (what was delivered): made for --apply, read when there is one; exit 2 when it cannot be."""
    from json_workflow.durable import make_folder
    from json_workflow.store import has_store, open_store

    if not deliver and not has_store(config):
        return None
    try:
        if deliver:
            make_folder(config.state, config.permissions.dir_mode, config.root)  # the statistics record it
        store = open_store(config, "command")
    except (OSError, WorkflowError) as e:
        raise BadConfiguration(f"cannot use the store: {e}") from None
    if deliver and not store.exclusive("replay"):
        store.close()
        raise BadConfiguration("another `replay --apply` is running on this root: wait for it, then run again")
    return store


def _relative(config: Config) -> Any:
    """A path as every format shows it: relative to the data root when below it, printable (names.shown)."""
    from json_workflow.names import shown

    return lambda path: shown(config.relative(path))


def _report(changes: Iterator[Change], config: Config, totals: Totals, form: str) -> None:
    """What would change, as text, JSON or CSV (paths relative to the data root); exit 1 when something would."""
    rel = _relative(config)
    if form == "json":
        rows = [
            {
                "file": rel(c.path),
                "client": c.client,
                **{
                    key: [{"folder": rel(d.shown), "rules": list(d.reasons)} for d in places]
                    for key, places in (("added", c.added), ("removed", c.removed), ("delivered", c.delivered))
                },
            }
            for c in changes
        ]
        summary = {
            "files": totals.files,
            "changed": totals.changed,
            "delivered": totals.delivered,
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
            for sign, places in (("added", c.added), ("removed", c.removed), ("delivered", c.delivered)):
                for d in places:
                    writer.writerow([rel(c.path), c.client, sign, rel(d.shown), " + ".join(d.reasons)])
    else:
        for c in changes:
            click.echo(rel(c.path))
            for sign, places in (("+", c.added), ("-", c.removed), ("=", c.delivered)):
                for d in places:
                    rules = ", ".join(f'"{r}"' for r in d.reasons)
                    done = ", delivered already" if sign == "=" else ""
                    click.echo(f"  {sign} {rel(d.shown)}  (rule {rules}{done})")
        click.echo(
            f"{count(totals.files, 'archived file')} read, {totals.changed} would change"
            + (
                f", {count(totals.delivered, 'added copy', 'added copies')} delivered already"
                if totals.delivered
                else ""
            )
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


def _apply(changes: Iterator[Change], config: Config, store: Store, totals: Totals, form: str) -> None:
    """Deliver the added copies and say what was done, and what was left alone and why; exit 1 when some were."""
    from json_workflow.redeliver import Applied, apply

    applied = Applied()
    apply(changes, config, store, applied)
    rel = _relative(config)
    if form == "json":
        click.echo(json.dumps(_applied_json(applied, totals, rel), indent=2))
    elif form == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["file", "action", "folder", "rules", "reason"])
        for action, placed in _actions(applied):
            writer.writerow([rel(placed.source), action, rel(placed.folder), " + ".join(placed.rules), placed.why])
        for problem in totals.unreadable:  # "file: why"
            file, _, why = problem.partition(": ")
            writer.writerow([file, "cannot route", "", "", why])
    else:
        for placed in applied.delivered:
            click.echo(f"delivered {rel(os.path.join(placed.folder, os.path.basename(placed.source)))}")
        for placed in applied.left:
            click.echo(f"left alone {rel(os.path.join(placed.folder, os.path.basename(placed.source)))}: {placed.why}")
        for problem in totals.unreadable:
            click.echo(f"cannot route {problem}")
        click.echo(
            f"{count(totals.files, 'archived file')} read, {totals.changed} with other folders: delivered "
            f"{count(len(applied.delivered), 'copy')}, {totals.delivered} delivered before, "
            f"{len(applied.already)} already there, {len(applied.left)} left alone"
        )
    sys.exit(1 if applied.left or totals.unreadable else 0)


def _actions(applied: Applied) -> Iterator[tuple[str, Placed]]:
    yield from (("delivered", p) for p in applied.delivered)
    yield from (("already there", p) for p in applied.already)
    yield from (("left alone", p) for p in applied.left)


def _applied_json(applied: Applied, totals: Totals, rel: Any) -> dict[str, Any]:
    def rows(placed: list[Placed]) -> list[dict[str, Any]]:
        return [
            {
                "file": rel(p.source),
                "folder": rel(p.folder),
                "rules": list(p.rules),
                **({"reason": p.why} if p.why else {}),
            }
            for p in placed
        ]

    return {
        "delivered": rows(applied.delivered),
        "already_there": rows(applied.already),
        "left_alone": rows(applied.left),
        "unreadable": totals.unreadable,
        "totals": {
            "files": totals.files,
            "changed": totals.changed,
            "delivered": len(applied.delivered),
            "already_there": len(applied.already),
            "delivered_before": totals.delivered,
            "left_alone": len(applied.left),
        },
    }
