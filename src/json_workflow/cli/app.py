"""The json-workflow command's frame: the group, the shared options, and how errors reach the operator.

The commands are in cli.processing (run, explain, check-config, retry, demo), cli.statistics (report,
stats) and cli.operations (status, history, dashboard). They import the modules they use when they
run: every import is paid at each start, and `run --once` from cron, `explain` or `stats` need neither
the service (watchdog) nor the report (Jinja2, css-inline) nor the web server: importing everything
would add about 80 ms to each of them.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
from collections.abc import Iterator
from typing import IO, Any

import click

from json_workflow import config as config_module
from json_workflow import logs
from json_workflow.config import CONFIG_ENV, ROOT_ENV, Config
from json_workflow.delivery import endpoints
from json_workflow.errors import ConfigError, WorkflowError

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


def load_config(
    config_path: str | None,
    root: str | None = None,
    sends_mail: bool = False,
    serves_http: bool = False,
    listen: str | None = None,
    delivers: bool = False,
) -> Config:
    """The validated configuration, or exit 2 saying what is wrong (the SMTP password and HTTP token too, if used;
    the URL destinations' secrets and files where it `delivers`).

    `listen` (HOST:PORT, checked) replaces [http] listen, before the token's check that depends on it.
    """
    try:
        config = config_module.load(config_path, root)
        if listen is not None:
            config = config.model_copy(update={"http": config.http.model_copy(update={"listen": listen})})
            if serves_http and (problems := config.http.secret_problems("--listen")):
                raise BadConfiguration("; ".join(problems))  # the command line's fault, not the file's
        problems = config.email.secret_problems() if sends_mail else []
        problems += config.http.secret_problems() if serves_http else []
        problems += endpoints.problems(config.routes) if delivers else []
        if problems:
            raise ConfigError(config_path or "built-in configuration", problems)
        return config
    except ConfigError as e:
        raise BadConfiguration(str(e)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(None, "-V", "--version", package_name="json-workflow", prog_name="json-workflow")
def main() -> None:
    """Route JSON job files from hot folders to the archive and downstream folders, each copy exactly once."""


def existing_root(config: Config, error: type[Exit] = Exit) -> None:
    """Exit (1, or `error`'s code) naming the data root when it is not there: a missing mount, a wrong --root."""
    if not config.root.is_dir():
        raise error(f"the data root {config.root} does not exist or is not a folder (root, --root, ${ROOT_ENV})")


# The days a date option takes: a day's window (and --until's next midnight) must be a real time.
FIRST_DAY, LAST_DAY = datetime.date(1970, 1, 2), datetime.date(9999, 12, 30)


def day_option(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> datetime.date | None:
    """A YYYY-MM-DD option's day (a click callback); a usage error (exit 2) saying what is expected."""
    if value is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d\d-\d\d", value):  # fromisoformat takes 20261207 too
            raise ValueError(value)
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date as YYYY-MM-DD, got {value!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise click.BadParameter(f"expected a day from {FIRST_DAY} to {LAST_DAY}, got {value}")
    return day


LOG_LEVELS = ("debug", "info", "warning", "error")

log_level_option = click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="What the console (stderr) shows: this level and above [default: info]. The log file keeps every line.",
)
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="Show only warnings, errors and the summary on the console."
)


def console_level(quiet: bool, log_level: str | None, default: int = logging.INFO) -> int:
    """The console's level from --quiet and --log-level (which may not both be given)."""
    if quiet and log_level is not None:
        raise click.UsageError("--quiet and --log-level cannot be used together")
    if quiet:
        return logging.WARNING
    return default if log_level is None else logging.getLevelName(log_level.upper())


def setup_logging(config: Config, console_level: int, terminal: bool = False, bar: bool = False) -> None:
    """Log to the log folder (or to stderr only, saying why, when it cannot be written) and to stderr.

    `terminal`: stderr is one, shown a few lines a second (the file keeps them all); `bar`: under a progress bar.
    """
    from json_workflow.durable import make_folder

    try:
        make_folder(config.log_folder, config.permissions.dir_mode, config.root)
    except OSError as e:
        logs.setup(None, console_level, terminal, bar)
        logs.log.warning("Cannot write the log file in %s (%s); logging to stderr only", config.log_folder, e)
        return
    logs.setup(config.log_folder, console_level, terminal, bar)
