"""The json-workflow command: `main`, with every subcommand registered on it."""

from json_workflow.cli import operations, processing, rules, statistics  # noqa: F401  (each registers its commands)
from json_workflow.cli.app import main

__all__ = ["main"]
