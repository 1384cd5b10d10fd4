"""The words around an issue (email chrome, public pages) in the reader's language: gettext catalogs read with Babel.

Catalogs are the .po files under templates/locale/<locale>/LC_MESSAGES/messages.po, compiled in memory the first
time a language is used: no build step, nothing fetched. English is the source language and needs no catalog.
docs/languages.md says how to add one.
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

import templates as templates_pkg

LOCALE_DIR = Path(templates_pkg.__file__).parent / "locale"
DEFAULT_LANGUAGE = "en"


def _locale_name(tag: str) -> str:
    """A BCP 47 tag as Babel spells it: 'zh-Hans' -> 'zh_Hans', 'de-AT' -> 'de_AT'."""
    return tag.replace("-", "_")


def catalog_names() -> list[str]:
    """The locales with a catalog, English first (it is the source language)."""
    found = sorted(p.parent.parent.name for p in LOCALE_DIR.glob("*/LC_MESSAGES/messages.po"))
    return [DEFAULT_LANGUAGE, *(name for name in found if name != DEFAULT_LANGUAGE)]


def supported_languages() -> list[str]:
    """The language tags a list may choose (BCP 47 spelling)."""
    return [name.replace("_", "-") for name in catalog_names()]


def _candidates(tag: str) -> list[str]:
    """Most to least specific: zh-Hans-CN -> zh_Hans_CN, zh_Hans, zh."""
    parts = _locale_name(tag).split("_")
    return ["_".join(parts[:n]) for n in range(len(parts), 0, -1)]


def catalog_for(tag: str) -> str | None:
    """The catalog that serves a language tag, or None (English, or a language without a catalog)."""
    available = set(catalog_names())
    lowered = {name.lower(): name for name in available}
    for candidate in _candidates(tag):
        if candidate.lower() in lowered:
            name = lowered[candidate.lower()]
            return None if name == DEFAULT_LANGUAGE else name
    if tag.lower().startswith("zh"):  # plain "zh" and zh-CN/zh-SG mean Simplified Chinese
        return lowered.get("zh_hans")
    return None


@lru_cache(maxsize=32)
def translations(tag: str) -> gettext.NullTranslations:
    name = catalog_for(tag)
    if name is None:
        return gettext.NullTranslations()
    with (LOCALE_DIR / name / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=name)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def is_known_language(tag: str) -> bool:
    try:
        Locale.parse(_locale_name(tag))
    except (ValueError, UnknownLocaleError):
        return False
    return True


@lru_cache(maxsize=32)
def _babel_locale(tag: str) -> Locale:
    if tag.lower() == "en":
        return Locale.parse("en_GB")  # the house style: 22 September 2023
    try:
        return Locale.parse(_locale_name(tag))
    except (ValueError, UnknownLocaleError):
        return Locale.parse(DEFAULT_LANGUAGE)


def long_date(value: dt.date | dt.datetime, tag: str) -> str:
    """'22 September 2023', '22. September 2023', '2023年9月22日'."""
    if isinstance(value, dt.datetime):
        value = value.date()
    return format_date(value, format="long", locale=_babel_locale(tag or DEFAULT_LANGUAGE))
