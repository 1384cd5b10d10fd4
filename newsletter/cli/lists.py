"""CLI commands: lists."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from newsletter.cli.common import console, db, fail
from subscribers import mailing_lists, queries, service
from subscribers.models import MailingList

lists_app = typer.Typer(help="Mailing lists.", no_args_is_help=True)


_LANGUAGE = typer.Option(None, "--language", help="Language of the email chrome and the list's pages (en, de, "
                                                     "zh-Hans, ...).")
_BRAND_NAME = typer.Option(None, "--brand-name", help="Name shown on the list's pages and as the logo's text.")
_LOGO = typer.Option(None, "--logo", help="An https:// URL, or an image file (PNG, JPEG, GIF; <= 256 KB) the app "
                                          "serves; '' removes it.")
_ACCENT = typer.Option(None, "--accent", help="Accent colour (#rrggbb) for links and buttons; refused below 4.5:1 "
                                              "contrast.")
_POSTAL = typer.Option(None, "--postal-address", help="Footer address (default: NEWSLETTER_POSTAL_ADDRESS).")


def _look(session: Session, mailing_list: MailingList, language: str | None, brand_name: str | None,
          logo: str | None, accent: str | None, postal_address: str | None) -> None:
    is_url = logo is None or logo == "" or logo.startswith(("https:", "http:"))
    mailing_lists.apply_look(mailing_list, mailing_lists.ListLook(
        language=language, brand_name=brand_name, logo_url=logo if is_url else "", accent_colour=accent,
        postal_address=postal_address))
    if logo is not None and not is_url:
        try:
            data = Path(logo).read_bytes()
        except OSError as exc:
            raise fail(f"--logo {logo}: {exc.strerror or exc}") from exc
        mailing_lists.set_logo_image(mailing_list, data)
    elif logo is not None:
        mailing_lists.set_logo_image(mailing_list, None)
    session.flush()


@lists_app.command("create")
def create(slug: str, name: str = typer.Option(..., "--name", help="Name shown to subscribers."),
           double_opt_in: bool = typer.Option(True, "--double-opt-in/--no-double-opt-in",
                                              help="Ask new subscribers to confirm by email (default)."),
           from_name: str = typer.Option(None), from_email: str = typer.Option(None),
           reply_to: str = typer.Option(None), welcome: bool = typer.Option(False, help="Send a welcome email."),
           description: str = typer.Option(""),
           allow_international: bool = typer.Option(
               False, help="Accept addresses whose local part mixes alphabets (refused by default: look-alikes)."),
           embeddable: bool = typer.Option(True, "--embeddable/--not-embeddable",
                                           help="Take sign-ups from forms on other sites (default)."),
           embed_origin: list[str] = typer.Option([], "--embed-origin",
                                                  help="Only this site may embed the form (repeatable)."),
           thank_you_url: str = typer.Option("", help="Where an embedded form sends people after signing up."),
           archive_private: bool = typer.Option(False, "--archive-private/--archive-public",
                                                help="Keep this list's issues out of the public archive and RSS."),
           language: str = _LANGUAGE, brand_name: str = _BRAND_NAME, logo: str = _LOGO, accent: str = _ACCENT,
           postal_address: str = _POSTAL) -> None:
    """Create a list."""
    with db() as session:
        created = mailing_lists.create_list(session, slug, name, double_opt_in=double_opt_in, from_name=from_name,
                                            from_email=from_email, reply_to=reply_to, welcome=welcome,
                                            description=description, allow_international=allow_international)
        mailing_lists.configure_signup(created, embeddable=embeddable, origins=embed_origin,
                                       thank_you_url=thank_you_url,
                                       archive_private=archive_private)
        _look(session, created, language, brand_name, logo, accent, postal_address)
        console.print(f"created list {created.slug} ({'double opt-in' if double_opt_in else 'single opt-in'}, "
                      f"language {created.language})")


@lists_app.command("set")
def set_options(slug: str,
                embeddable: bool | None = typer.Option(None, "--embeddable/--not-embeddable",
                                                       help="Take sign-ups from forms on other sites."),
                embed_origin: list[str] | None = typer.Option(None, "--embed-origin",
                                                              help="Only these sites may embed the form "
                                                                   "(repeatable; replaces the list)."),
                any_origin: bool = typer.Option(False, "--any-origin", help="Let any site embed the form."),
                thank_you_url: str | None = typer.Option(None, help="Where an embedded form sends people ('' = "
                                                                    "our own page)."),
                archive_private: bool | None = typer.Option(None, "--archive-private/--archive-public",
                                                            help="Keep this list's issues out of the public "
                                                                 "archive and RSS."),
                language: str = _LANGUAGE, brand_name: str = _BRAND_NAME, logo: str = _LOGO, accent: str = _ACCENT,
                postal_address: str = _POSTAL,
                reply_to: str = typer.Option(None, help="Reply-To for the list's mail ('' for the default).")
                ) -> None:
    """Change a list: sign-ups from other sites, a private archive, language, brand, Reply-To. Sends already
    planned keep what they were planned with."""
    if any_origin and embed_origin:
        raise typer.BadParameter("--any-origin and --embed-origin contradict each other")
    with db() as session:
        mailing_list = mailing_lists.get_list(session, slug)
        mailing_lists.configure_signup(mailing_list, embeddable=embeddable,
                                       origins=[] if any_origin else embed_origin or None,
                                       thank_you_url=thank_you_url, archive_private=archive_private)
        _look(session, mailing_list, language, brand_name, logo, accent, postal_address)
        if reply_to is not None:
            if reply_to:
                service.normalise_email(reply_to, check_deliverability=False)
            mailing_list.reply_to = reply_to or None
        _print_signup(mailing_list)


def _print_signup(mailing_list: MailingList) -> None:
    origins = ", ".join(mailing_list.allowed_origins) or "any site"
    console.print(f"embeddable: {'yes, from ' + origins if mailing_list.embeddable else 'no (hosted page only)'}  "
                  f"thank-you page: {mailing_list.thank_you_url or 'ours'}  "
                  f"archive: {'private' if mailing_list.archive_private else 'public'}", highlight=False)


@lists_app.command("ls")
def ls() -> None:
    """All lists with their subscriber counts."""
    table = Table("slug", "name", "confirmed", "pending", "unsubscribed", "opt-in")
    with db() as session:
        for row in queries.lists_with_counts(session, queries.ListOrder.SLUG):
            mailing_list, counts = row.mailing_list, row.counts
            table.add_row(mailing_list.slug, mailing_list.name, str(counts["confirmed"]), str(counts["pending"]),
                          str(counts["unsubscribed"]), "double" if mailing_list.double_opt_in else "single")
    console.print(table)


@lists_app.command("show")
def show(slug: str) -> None:
    """One list: identity and counts by status."""
    with db() as session:
        mailing_list = mailing_lists.get_list(session, slug)
        counts = mailing_lists.list_counts(session, mailing_list.id)
        console.print(Text.assemble((mailing_list.name, "bold"), f" ({mailing_list.slug})"), highlight=False)
        console.print(f"language: {mailing_list.language}  brand: {mailing_list.brand_name or '-'}  accent: "
                      f"{mailing_list.accent_colour or 'default'}  logo: "
                      f"{'uploaded' if mailing_list.logo_type else mailing_list.logo_url or '-'}", markup=False,
                      highlight=False)
        console.print(f"from: {mailing_list.from_name or '-'} <{mailing_list.from_email or 'default'}>  "
                      f"double opt-in: {'yes' if mailing_list.double_opt_in else 'no'}  "
                      f"welcome: {'yes' if mailing_list.welcome_enabled else 'no'}", highlight=False)
        _print_signup(mailing_list)
        for status, count in counts.items():
            console.print(f"  {status:<13} {count}")


@lists_app.command("tracking")
def tracking(slug: str,
             clicks: bool = typer.Option(None, "--clicks/--no-clicks", help="Route links through our redirect."),
             opens: bool = typer.Option(None, "--opens/--no-opens", help="Add an open pixel.")) -> None:
    """Show or set a list's click and open tracking (new lists track both; sends planned later follow)."""
    with db() as session:
        mailing_list = mailing_lists.set_list_tracking(session, mailing_lists.get_list(session, slug),
                                                       clicks=clicks, opens=opens)
        console.print(f"{mailing_list.slug}: clicks {'on' if mailing_list.track_clicks else 'off'}, "
                      f"opens {'on' if mailing_list.track_opens else 'off'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(lists_app, name="lists")
