"""`newsletter ...`: one Typer app; each feature adds its commands from its own module."""

from __future__ import annotations

import typer

from newsletter.cli import (
    bounces,
    core,
    fields,
    issues,
    lists,
    segments,
    sends,
    subscribers,
    suppressions,
    users,
    welcome,
)

app = typer.Typer(help="Self-hosted newsletter delivery.", no_args_is_help=True, pretty_exceptions_enable=False)

for module in (core, issues, lists, fields, segments, subscribers, suppressions, sends, welcome, bounces, users):
    module.register(app)


def main() -> None:
    app()
