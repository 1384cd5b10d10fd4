"""Per-recipient placeholders that survive MJML and premailer and are filled after rendering.

Two spellings per value: ``__NLH_KEY__`` in the HTML part takes an HTML-escaped value, ``__NLT_KEY__`` in the text
part takes it raw. SendGrid applies one substitution table to both parts, so the parts need distinct keys.
Plain ASCII letters, digits and underscores pass untouched through Jinja2, MJML, lxml/premailer, URLs and
quoted-printable.

Besides the fixed keys, an issue's merge tags (mailer/merge_tags.py) are numbered slots: ``__NLH_TAG0__`` /
``__NLT_TAG0__`` and so on, filled from a recipient's ``tags`` (one value per slot, in slot order).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class Key(StrEnum):
    NAME = "NAME"
    EMAIL = "EMAIL"
    UNSUBSCRIBE_URL = "UNSUBSCRIBE_URL"
    PREFERENCES_URL = "PREFERENCES_URL"
    WEB_URL = "WEB_URL"
    TRACK = "TRACK"  # the signed tracking token of a message (mailer/tracking.py)


def html_token(key: Key) -> str:
    return f"__NLH_{key.value}__"


def text_token(key: Key) -> str:
    return f"__NLT_{key.value}__"


def tag_html_token(slot: int) -> str:
    return f"__NLH_TAG{slot}__"


def tag_text_token(slot: int) -> str:
    return f"__NLT_TAG{slot}__"


_TOKENS = tuple((key, f"__NLH_{key.value}__", f"__NLT_{key.value}__") for key in Key)
_NEEDS_ESCAPE = re.compile(r"[&<>\"']")


def escape_html(raw: str) -> str:
    return html.escape(raw, quote=True) if _NEEDS_ESCAPE.search(raw) else raw


def substitutions(values: Mapping[Key, str], tags: Sequence[str] = ()) -> dict[str, str]:
    """The token -> value table for one recipient, escaped for the part each token lives in.

    `tags`: the recipient's merge-tag values in slot order, raw (mailer.merge_tags has already made them one line
    and, for a slot inside a link, URL-escaped them)."""
    table: dict[str, str] = {}
    for key, html_key, text_key in _TOKENS:
        raw = values.get(key, "")
        table[html_key] = escape_html(raw)
        table[text_key] = raw
    for slot, raw in enumerate(tags):
        table[tag_html_token(slot)] = escape_html(raw)
        table[tag_text_token(slot)] = raw
    return table


_TOKEN = re.compile(r"(__NL[HT]_[A-Z0-9_]+?__)")
PLACEHOLDER = re.compile(r"__NL[HT]_[A-Z0-9_]+?__")


def has_placeholder(text: str) -> bool:
    return PLACEHOLDER.search(text) is not None


def html_twin(text: str) -> str:
    """The text-part tokens of `text` spelled as their HTML-part twins (a subject shown in the HTML <title>)."""
    return text.replace("__NLT_", "__NLH_")


@lru_cache(maxsize=16)
def _split(template: str) -> tuple[str, ...]:
    """Static text and token names, alternating. Cached: a send fills the same document for every recipient,
    and a str caches its own hash, so the lookup costs no rescan of the document."""
    return tuple(_TOKEN.split(template))


def fill(template: str, table: Mapping[str, str]) -> str:
    """Every placeholder replaced by its value; unknown tokens stay as they are. One join, no rescanning."""
    parts = list(_split(template))
    for index in range(1, len(parts), 2):
        parts[index] = table.get(parts[index], parts[index])
    return "".join(parts)


@dataclass(frozen=True)
class Folded:
    """A batch's content and substitution tables after fold_constants."""

    subject: str
    html: str
    text: str
    tables: list[dict[str, str]]


def fold_constants(subject: str, html_part: str, text_part: str, tables: Sequence[Mapping[str, str]]) -> Folded:
    """Shrink a batch's substitution tables before they travel (SendGrid: one table per recipient, in one request).

    A token with the same value for every recipient (the web-archive URL) is filled into the content once and
    dropped from the tables; an HTML token whose escaped value equals its raw value for every recipient (URLs,
    most addresses) is renamed to its text twin in the HTML, so one entry serves both parts. What each recipient
    finally reads is unchanged.
    """
    if not tables:
        return Folded(subject, html_part, text_part, [])
    first = tables[0]
    constant: dict[str, str] = {}
    shared: list[tuple[str, str]] = []
    pairs = [(token, "__NLT_" + token.removeprefix("__NLH_")) for token in first if token.startswith("__NLH_")]
    for html_key, text_key in pairs:
        if text_key not in first:
            continue
        if all(t[html_key] == first[html_key] and t[text_key] == first[text_key] for t in tables):
            constant[html_key], constant[text_key] = first[html_key], first[text_key]
        elif all(t[html_key] == t[text_key] for t in tables):
            shared.append((html_key, text_key))
    if constant:
        subject, html_part, text_part = fill(subject, constant), fill(html_part, constant), fill(text_part, constant)
    for html_key, text_key in shared:
        html_part = html_part.replace(html_key, text_key)
    dropped = set(constant) | {html_key for html_key, _ in shared}
    return Folded(subject, html_part, text_part,
                  [{k: v for k, v in t.items() if k not in dropped} for t in tables])
