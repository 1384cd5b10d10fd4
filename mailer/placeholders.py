"""Per-recipient placeholders that survive MJML and premailer and are filled after rendering.

Two spellings per value: ``__NLH_KEY__`` in the HTML part takes an HTML-escaped value, ``__NLT_KEY__`` in the text
part takes it raw. SendGrid applies one substitution table to both parts, so the parts need distinct keys.
Plain ASCII letters and underscores pass untouched through Jinja2, MJML, lxml/premailer, URLs and quoted-printable.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from enum import StrEnum


class Key(StrEnum):
    NAME = "NAME"
    EMAIL = "EMAIL"
    UNSUBSCRIBE_URL = "UNSUBSCRIBE_URL"
    PREFERENCES_URL = "PREFERENCES_URL"
    WEB_URL = "WEB_URL"


def html_token(key: Key) -> str:
    return f"__NLH_{key.value}__"


def text_token(key: Key) -> str:
    return f"__NLT_{key.value}__"


def substitutions(values: Mapping[Key, str]) -> dict[str, str]:
    """The token -> value table for one recipient, escaped for the part each token lives in."""
    table: dict[str, str] = {}
    for key in Key:
        raw = values.get(key, "")
        table[html_token(key)] = html.escape(raw, quote=True)
        table[text_token(key)] = raw
    return table
