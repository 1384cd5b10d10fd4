"""Issue -> email: Jinja2 renders MJML, mjml-python compiles it, premailer inlines the CSS. Once per issue.

The result still holds the per-recipient placeholders (mailer.placeholders); filling them is a string substitution
per recipient (mailer.message.personalize), so sending a million copies never runs MJML or premailer again.
Nothing here touches the network: mjml-python gets an empty font table (no Google Fonts link) and premailer runs
with allow_network=False.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import mjml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from premailer import Premailer

import templates as templates_pkg
from mailer.brand import DEFAULT_ACCENT, Audience, dark_tint
from mailer.i18n import DEFAULT_LANGUAGE, long_date, translations
from mailer.issue import Issue
from mailer.merge_tags import Slot, with_defaults
from mailer.placeholders import html_twin
from mailer.settings import Settings, get_settings

EMAIL_TEMPLATES = Path(templates_pkg.__file__).parent / "email"
_HEAD_META = (
    '<meta name="color-scheme" content="light dark">'
    '<meta name="supported-color-schemes" content="light dark">'
    '<meta name="x-apple-disable-message-reformatting">'
)


class RenderError(ValueError):
    """The issue rendered, but must not be sent as is (e.g. Gmail would clip it)."""


@dataclass(frozen=True)
class RenderedEmail:
    html: str
    text: str


@dataclass(frozen=True)
class RenderedIssue:
    subject: str
    preheader: str
    html: str
    text: str
    web_html: str
    warnings: list[str] = field(default_factory=list)
    web_subject: str = ""  # the subject with each merge tag's default (the archive's); `subject` holds the slots
    slots: tuple[Slot, ...] = ()  # the merge-tag slots of subject, html and text (mailer/merge_tags.py)

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode())


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(EMAIL_TEMPLATES)),
        # HTML-escape in the MJML templates; the .txt.j2 twins are plain text and must not be escaped.
        autoescape=select_autoescape(enabled_extensions=("mjml.j2",), default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=get_settings().development,  # else no stat of each template per render
    )


_PERSONAL = re.compile(r"<!--nl:personal-->.*?<!--/nl:personal-->", re.S)
_MARKERS = re.compile(r"<!--/?nl:personal-->")


def compile_mjml(source: str) -> str:
    # fonts={} stops mjml-python from linking Google Fonts for the default font families. Comments are kept for
    # our nl:personal markers (removed again in _finish / web_variant).
    return str(mjml.mjml2html(source, fonts={}, disable_comments=False))


def web_variant(html: str) -> str:
    """The archive copy: the mailed HTML without the parts that only make sense for one recipient."""
    return _PERSONAL.sub("", html)


def inline_css(html: str) -> str:
    return str(Premailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        keep_style_tags=True,  # media queries (phones, dark mode) only work from a <style> block
        strip_important=False,
        remove_classes=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform())


def _finish(html: str, lang: str) -> str:
    """Make sure the document carries the language and the dark-mode hints, whatever the compiler emitted."""
    if re.search(r"<html[^>]*\blang=", html) is None:
        html = re.sub(r"<html\b", f'<html lang="{lang}"', html, count=1)
    if 'name="color-scheme"' not in html:
        html = html.replace("<head>", "<head>" + _HEAD_META, 1)
    return html


def render_mjml_template(name: str, context: dict[str, Any], lang: str) -> str:
    """The HTML with the nl:personal markers still in (see web_variant)."""
    mjml_source = _environment().get_template(f"{name}.mjml.j2").render(**context)
    return _finish(inline_css(compile_mjml(mjml_source)), lang)


def render_text_template(name: str, context: dict[str, Any]) -> str:
    text = _environment().get_template(f"{name}.txt.j2").render(**context)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _base_context(settings: Settings, audience: Audience, lang: str) -> dict[str, Any]:
    brand = audience.brand
    accent = brand.accent or DEFAULT_ACCENT
    return {"postal_address": brand.postal_address or settings.postal_address,
            "brand_name": brand.name, "logo_url": brand.logo_url, "accent": accent, "accent_dark": dark_tint(accent),
            "masthead": brand.name or settings.from_name, "dateline": "", "preheader": "",
            "list_name": audience.list_name, "web": False, "lang": lang, "_": translations(lang).gettext}


def render_email(name: str, context: dict[str, Any], *, audience: Audience | None = None,
                 settings: Settings | None = None) -> RenderedEmail:
    """Render a transactional email pair (templates/email/{name}.mjml.j2 and .txt.j2) in the shared layout."""
    audience = audience or Audience()
    ctx = _base_context(settings or get_settings(), audience, audience.lang) | context
    html = _MARKERS.sub("", render_mjml_template(name, ctx, audience.lang))
    return RenderedEmail(html=html, text=render_text_template(name, ctx))


def why_sentence(masthead: str, list_name: str, lang: str) -> str:
    """The footer's reason for the email, in both parts (a text-only reader is owed it as much)."""
    _ = translations(lang).gettext
    if list_name and list_name != masthead:
        return _("You are receiving %(masthead)s because you subscribed to %(list)s.") % {
            "masthead": masthead, "list": list_name}
    return _("You are receiving %(masthead)s because you subscribed.") % {"masthead": masthead}


def issue_context(issue: Issue, settings: Settings, *, web: bool, audience: Audience | None = None) -> dict[str, Any]:
    audience = audience or Audience()
    lang = issue.lang or audience.lang or DEFAULT_LANGUAGE
    return _base_context(settings, audience, lang) | {
        "subject": html_twin(issue.subject_for_mail),  # <title>: the HTML part's slots
        "preheader": issue.preheader,
        "masthead": issue.title,
        "why_sentence": why_sentence(issue.title, audience.list_name, lang),
        "dateline": long_date(issue.date, lang) if issue.date else "",
        "intro_html": Markup(issue.intro.html),  # noqa: S704 - markdown-it output with raw HTML disabled
        "intro_text": issue.intro.text,
        "stories": [{"number": s.number, "headline": html_twin(s.headline), "headline_text": s.headline,
                     "html": Markup(s.body.html), "text": s.body.text} for s in issue.stories],  # noqa: S704
        "outro_heading": issue.outro_heading,
        "outro_html": Markup(issue.outro.html) if issue.outro else "",  # noqa: S704
        "outro_text": issue.outro.text if issue.outro else "",
        "cta": issue.cta,
        "web": web,
    }


def issue_mjml(issue: Issue, settings: Settings | None = None, *, web: bool = False,
               audience: Audience | None = None) -> str:
    """The MJML document for an issue (what mjml-python compiles; tests validate it with the reference compiler)."""
    context = issue_context(issue, settings or get_settings(), web=web, audience=audience)
    return _environment().get_template("issue.mjml.j2").render(**context)


def render_issue(issue: Issue, settings: Settings | None = None, *, force: bool = False,
                 audience: Audience | None = None) -> RenderedIssue:
    """The issue as mailed to an audience (a list's name, language and brand; the service's when None)."""
    settings = settings or get_settings()
    email_ctx = issue_context(issue, settings, web=False, audience=audience)
    marked = render_mjml_template("issue", email_ctx, email_ctx["lang"])  # MJML and premailer: once
    html, web_html = _MARKERS.sub("", marked), with_defaults(web_variant(marked), issue.slots, html=True)
    text = render_text_template("issue", email_ctx)
    size = len(html.encode())
    warnings: list[str] = []
    if size > settings.html_max_bytes:
        message = (f"HTML is {size / 1024:.1f} KB; Gmail clips messages over "
                   f"{settings.html_max_bytes / 1024:.0f} KB. Shorten the issue or force it.")
        if not force:
            raise RenderError(message)
        warnings.append(message)
    elif size > settings.html_warn_bytes:
        warnings.append(f"HTML is {size / 1024:.1f} KB, close to Gmail's clipping limit "
                        f"({settings.html_max_bytes / 1024:.0f} KB).")
    return RenderedIssue(issue.subject_for_mail, issue.preheader, html, text, web_html, warnings,
                         web_subject=issue.subject, slots=issue.slots)
