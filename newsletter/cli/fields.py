"""CLI commands: a list's custom fields (see docs/fields.md)."""

from __future__ import annotations

import typer
from rich.table import Table

from newsletter.cli.common import console, db
from subscribers import fields, mailing_lists

fields_app = typer.Typer(help="Custom fields of a list: typed values per subscriber (see docs/fields.md).",
                         no_args_is_help=True)


@fields_app.command("add")
def add(list_slug: str = typer.Argument(..., metavar="LIST"), name: str = typer.Argument(...),
        type_: str = typer.Option("text", "--type", help=f"One of: {fields.TYPES}."),
        option: list[str] = typer.Option([], "--option", help="An allowed value of a oneof field (repeat)."),
        default: str = typer.Option(None, "--default", help="The value when a subscriber has none."),
        editable: bool = typer.Option(False, "--editable", help="Subscribers may edit it on their preferences page.")
        ) -> None:
    """Define a field on a list."""
    with db() as session:
        field = fields.define_field(session, mailing_lists.get_list(session, list_slug), name, type_,
                                    options=option, default=default, editable=editable)
        described = f"{field.name} ({field.type}) on {list_slug}"
    console.print(f"field {described}", highlight=False)


@fields_app.command("ls")
def ls(list_slug: str = typer.Argument(..., metavar="LIST")) -> None:
    """A list's fields in order, with their type, options, default and whether subscribers may edit them."""
    table = Table("field", "type", "options", "default", "editable")
    with db() as session:
        for field in fields.fields_of(session, mailing_lists.get_list(session, list_slug).id):
            table.add_row(field.name, field.type, ", ".join(field.options or ()), fields.display(field.default),
                          "yes" if field.subscriber_editable else "no")
    console.print(table)


@fields_app.command("rm")
def rm(list_slug: str = typer.Argument(..., metavar="LIST"), name: str = typer.Argument(...)) -> None:
    """Remove a field's definition; subscribers' values stay (the export shows them as other attributes)."""
    with db() as session:
        fields.remove_field(session, mailing_lists.get_list(session, list_slug), name)
    console.print(f"field {name} removed from {list_slug}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(fields_app, name="fields")
