"""CLI commands: segments (saved filters on a list) and their live counts."""

from __future__ import annotations

import typer
from rich.table import Table

from newsletter.cli.common import console, db, fail
from subscribers import audience, mailing_lists
from subscribers.segments import SegmentError

segments_app = typer.Typer(help="Segments: saved filters on a list (see docs/segments.md).", no_args_is_help=True)


@segments_app.command("create")
def create(name: str, list_slug: str = typer.Option(..., "--list"),
           where: str = typer.Option(..., "--where", help='e.g. fields.city = "Berlin" and subscribed_at >= 2024-01-01')
           ) -> None:
    """Save a segment; the expression is checked now, and the matching count shown."""
    try:
        with db() as session:
            mailing_list = mailing_lists.get_list(session, list_slug)
            segment = audience.create_segment(session, mailing_list, name, where, created_by="cli")
            matching = audience.count(session, mailing_list.id, segment.expression)
    except SegmentError as exc:
        raise fail(str(exc)) from exc
    console.print(f"segment {name} on {list_slug}: {matching} subscribers match", highlight=False)


@segments_app.command("ls")
def ls(list_slug: str = typer.Option(None, "--list")) -> None:
    """Segments with their expressions and how many they match now."""
    table = Table("list", "segment", "matching", "expression")
    with db() as session:
        list_id = mailing_lists.get_list(session, list_slug).id if list_slug else None
        for segment, slug in audience.segments_of(session, list_id):
            table.add_row(slug, segment.name, str(audience.count(session, segment.list_id,
                                                                                  segment.expression)),
                          segment.expression)
    console.print(table)


@segments_app.command("set")
def set_where(name: str, list_slug: str = typer.Option(..., "--list"),
              where: str = typer.Option(..., "--where", help="The segment's new expression.")) -> None:
    """Change a segment's expression (checked now); sends already made keep the one they were made with."""
    try:
        with db() as session:
            mailing_list = mailing_lists.get_list(session, list_slug)
            segment = audience.change_segment(session, mailing_list, name, where)
            matching = audience.count(session, mailing_list.id, segment.expression)
    except SegmentError as exc:
        raise fail(str(exc)) from exc
    console.print(f"segment {name} on {list_slug}: {matching} subscribers match", highlight=False)


@segments_app.command("rm")
def rm(name: str, list_slug: str = typer.Option(..., "--list")) -> None:
    """Forget a segment; sends already made with it keep its expression."""
    with db() as session:
        audience.delete_segment(session, mailing_lists.get_list(session, list_slug).id, name)
    console.print(f"segment {name} removed from {list_slug}", highlight=False)


@segments_app.command("count")
def count(name: str = typer.Argument(None, help="A saved segment (or give --where)."),
          list_slug: str = typer.Option(..., "--list"),
          where: str = typer.Option(None, "--where", help="Count an expression without saving it.")) -> None:
    """How many confirmed, unsuppressed subscribers a segment (or an expression) reaches now."""
    if not name and not where:
        raise fail("Name a segment or give --where.")
    try:
        with db() as session:
            mailing_list = mailing_lists.get_list(session, list_slug)
            expression = where or audience.get_segment(session, mailing_list.id, name).expression
            matching = audience.count(session, mailing_list.id, expression)
    except SegmentError as exc:
        raise fail(str(exc)) from exc
    console.print(str(matching))


def register(app: typer.Typer) -> None:
    app.add_typer(segments_app, name="segments")
