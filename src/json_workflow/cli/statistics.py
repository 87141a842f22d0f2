"""The commands that read the statistics: report and stats."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from json_workflow.cli.app import (
    BadConfiguration,
    Exit,
    config_option,
    day_option,
    existing_root,
    load_config,
    main,
    operator_errors,
    root_option,
)
from json_workflow.config import Config
from json_workflow.errors import WorkflowError

if TYPE_CHECKING:
    from json_workflow.reporting.reporter import Reporter


def _open_statistics(config: Config) -> Reporter:
    """The Reporter over the store, or exit 1 when nothing was ever recorded."""
    from json_workflow.reporting.reporter import Reporter
    from json_workflow.store import has_store, no_statistics

    existing_root(config)
    if not has_store(config):
        raise Exit(no_statistics(config))
    with operator_errors():
        return Reporter(config)


def _day(day: datetime.date | None, config: Config) -> datetime.date:
    import time

    from json_workflow.reporting.figures import local_day

    return local_day(time.time(), config.email.zone) if day is None else day


date_option = click.option(
    "--date",
    "date",
    callback=day_option,
    metavar="YYYY-MM-DD",
    help="The day, in the configured time zone (email.timezone); default today.",
)


@main.command()
@date_option
@click.option("--output", type=click.Path(dir_okay=False), help="Write the HTML here (the text beside it, .txt).")
@click.option("--send", is_flag=True, help="Also mail it through the configured SMTP server.")
@config_option
@root_option
def report(
    date: datetime.date | None, output: str | None, send: bool, config_path: str | None, root: str | None
) -> None:
    """Write (and with --send, mail) the HTML report of a day."""
    import os
    import time

    config = load_config(config_path, root, sends_mail=send)
    day = _day(date, config)
    if send and not config.email.enabled:
        raise BadConfiguration("--send needs [email] enabled = true in the configuration")
    target = Path(os.path.abspath(output)) if output else None
    if target is not None:  # said before anything is computed or sent
        _check_output(target, config)
        if not target.parent.is_dir():
            raise Exit(f"cannot write the report to {target}: the folder {target.parent} does not exist")
    reporter = _open_statistics(config)
    try:
        click.echo(f"Report for {day}: " + reporter.deliver(day, time.time(), send, target))
    except WorkflowError as e:
        raise Exit(f"report for {day} not sent: {e}") from None
    except OSError as e:
        raise Exit(f"cannot write the report to {e.filename or target}: {e.strerror or e}") from None
    finally:
        reporter.close()


def _check_output(target: Path, config: Config) -> None:
    """A report is HTML with its text beside it, never written into json-workflow's own folders (but the logs')."""
    from json_workflow import layout

    if target.suffix.lower() not in (".html", ".htm"):
        raise click.BadParameter(
            f"{target}: expected a file name ending .html (its text goes beside it, .txt)", param_hint="--output"
        )
    own = [o for o in config.own_folders if o.key != "paths.logs"]  # reports/ in the logs folder is theirs
    met = layout.trespass(target.parent, own, inside_only=True)
    met = met or (found[0] if (found := layout.trespass_on_disk(target.parent, own, inside_only=True)) else None)
    if met is not None:
        raise click.BadParameter(
            f"{target} is in the {met.name} {met.path} ({met.key}): a report never goes into json-workflow's own "
            "folders; choose another folder",
            param_hint="--output",
        )


@main.command()
@date_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@config_option
@root_option
def stats(date: datetime.date | None, as_json: bool, config_path: str | None, root: str | None) -> None:
    """Print the figures of a day (default today)."""
    import json
    import time

    from json_workflow.reporting import figures, render

    config = load_config(config_path, root)
    day = _day(date, config)
    reporter = _open_statistics(config)
    try:
        with operator_errors():  # a store that stops answering: said in a line, no traceback
            fig = figures.build(
                reporter.store, day, config.email.zone, time.time(), reporter.present, config.highlight,
                config.fleet,
            )  # fmt: skip
    finally:
        reporter.close()
    click.echo(json.dumps(fig.as_dict(), indent=2) if as_json else render.text(fig, config.report.title))
