"""Merge tags: `{{ subscriber.name }}`, `{{ subscriber.email }}`, `{{ subscriber.fields.city }}`, each with an
optional `| default("...")`, written in an issue's subject or Markdown body.

They are read by the small grammar below, never by a template engine: the issue body reaches Jinja2 only as a
finished value (mailer/render.py passes rendered Markdown in as Markup), and a tag is replaced before that by a
numbered substitution slot (mailer/placeholders.py `__NLH_TAG0__` / `__NLT_TAG0__`). So the issue is still rendered
once per send, and each recipient pays for a string substitution per slot, as for the greeting's name.

A slot is a tag in one context: inside a link or image URL its value is also URL-escaped (`%20`, `%26`), so a value
can never end the URL or add a parameter; anywhere else it is text (HTML-escaped in the HTML part, raw in the text
part). Every value is made one line, so a subject holding a tag cannot grow a header.
"""

from __future__ import annotations

import difflib
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from mailer.placeholders import escape_html, fill, tag_html_token, tag_text_token

MAX_DEFAULT = 200  # characters of a default("...") literal
MAX_VALUE = 500  # characters of a filled value: SendGrid refuses a recipient's table over 10,000 bytes
MAX_TAG = 300  # characters between {{ and }}
MAX_DISTINCT = 40  # different tags in one issue: each is a value per recipient (SendGrid: in a 10,000-byte table)
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ATTRIBUTES = ("name", "email", "fields")
_REFERENCE = re.compile(r"subscriber\.(?:(name|email)|fields\.(" + IDENT.pattern + r"))")
_DEFAULT = re.compile(r"default\s*\(\s*(?:\"([^\"\\\r\n]*)\"|'([^'\\\r\n]*)')\s*\)")
_OPEN = re.compile(r"\\?\{[{%]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


class Ref(StrEnum):
    NAME = "name"
    EMAIL = "email"
    FIELD = "field"


@dataclass(frozen=True)
class Tag:
    ref: Ref
    field: str = ""  # the custom field's name, for Ref.FIELD
    default: str = ""

    def __str__(self) -> str:
        target = f"subscriber.fields.{self.field}" if self.ref is Ref.FIELD else f"subscriber.{self.ref.value}"
        return "{{ " + target + (f' | default("{self.default}")' if self.default else "") + " }}"


@dataclass(frozen=True)
class Slot:
    """A tag as one substitution slot: `url` when it stands inside a link or image address."""

    tag: Tag
    url: bool = False


@dataclass(frozen=True)
class Found:
    """One `{{ ... }}` in a text: where it starts and ends, and the tag, or why it is not one."""

    start: int
    end: int
    tag: Tag | None
    problem: str | None = None


def parse_tag(inner: str) -> Tag | str:
    """The tag between `{{` and `}}`, or a message saying what is wrong with it. Nothing here evaluates anything."""
    reference, bar, rest = inner.strip().partition("|")
    reference = reference.strip()
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        return _reference_problem(reference)
    tag = Tag(Ref(match.group(1)) if match.group(1) else Ref.FIELD, match.group(2) or "")
    if not bar:
        return tag
    wanted = rest.strip()
    found = _DEFAULT.fullmatch(wanted)
    if found is None:
        name = re.match(r"[A-Za-z_]\w*", wanted)
        if name is None or name.group(0) != "default":
            return (f"unsupported filter '{name.group(0) if name else wanted[:40]}': "
                    "the only filter is | default(\"text\")")
        return "write the default as one quoted string: | default(\"text\")"
    default = found.group(1) if found.group(1) is not None else found.group(2)
    if len(default) > MAX_DEFAULT:
        return f"the default is longer than {MAX_DEFAULT} characters"
    return Tag(tag.ref, tag.field, default)


def _reference_problem(reference: str) -> str:
    head = "not a merge tag: use {{ subscriber.name }}, {{ subscriber.email }} or {{ subscriber.fields.NAME }}"
    if not reference.startswith("subscriber."):
        return head
    attribute = reference.removeprefix("subscriber.")
    if attribute.startswith("fields."):
        return (f"'{attribute.removeprefix('fields.')[:64]}' is not a field name "
                "(letters, digits and underscores, not starting with a digit)")
    guess = difflib.get_close_matches(attribute.split(".")[0], _ATTRIBUTES, n=1)
    hint = f" (did you mean '{guess[0]}'?)" if guess else ""
    return f"unknown subscriber attribute '{attribute[:64]}'{hint}: use name, email or fields.NAME"


def scan(text: str) -> list[Found]:
    """Every `{{ ... }}` (and `{% ... %}`, which is refused) of `text`. A backslash before the braces (`\\{{`) keeps
    them as written. A tag ends on its own line, within MAX_TAG characters; past an unclosed one the rest of its line
    is not scanned, so any text, however hostile, is read in one pass."""
    found: list[Found] = []
    position = 0
    line_end = -1
    while (opening := _OPEN.search(text, position)) is not None:
        start = opening.start()
        if opening.group(0).startswith("\\"):
            position = opening.end()
            continue
        if line_end < start:
            line_end = text.find("\n", start)
            line_end = len(text) if line_end < 0 else line_end
        statement = opening.group(0) == "{%"
        closing = "%}" if statement else "}}"
        end = text.find(closing, opening.end(), min(line_end, opening.end() + MAX_TAG + 2))
        if end < 0:
            found.append(Found(start, opening.end(), None, f"'{opening.group(0)}' is not closed by '{closing}' "
                                                           f"within {MAX_TAG} characters on the same line "
                                                           "(write \\{{ for literal braces)"))
            position = line_end
            continue
        inner = text[opening.end():end]
        problem = ("template statements ({% ... %}) are not supported: only {{ subscriber... }} merge tags"
                   if statement else parse_tag(inner))
        end += 2
        found.append(Found(start, end, problem) if isinstance(problem, Tag) else Found(start, end, None, problem))
        position = end
    return found


MAX_PROBLEMS = 100  # per text: a file of nothing but broken tags gets a readable list, not a million lines


# Filling ------------------------------------------------------------------------------------------------------

def display(value: Any) -> str:
    """A stored value as a reader sees it: JSON strings as they are (dates included), numbers as written, booleans
    as true/false, a list as its items joined with commas; null, objects and non-finite numbers as missing ("")."""
    if value is None or isinstance(value, dict):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, list | tuple):
        return ", ".join(shown for shown in (display(item) for item in value) if shown)
    return str(value)


def one_line(value: str) -> str:
    """Control characters and line breaks folded into one space, and a bounded length: a value is never a
    second header line, and never a table SendGrid refuses."""
    return _CONTROL.sub(" ", value).strip()[:MAX_VALUE]


def value_of(slot: Slot, name: str, email: str, fields: Mapping[str, Any] | None) -> str:
    """One recipient's value for a slot, raw (placeholders.substitutions HTML-escapes it for the HTML part)."""
    tag = slot.tag
    if tag.ref is Ref.NAME:
        raw = name
    elif tag.ref is Ref.EMAIL:
        raw = email
    else:
        raw = display(fields.get(tag.field)) if fields else ""
    value = one_line(raw or "") or one_line(tag.default)
    return quote(value, safe="") if slot.url else value


def with_defaults(text: str, slots: Sequence[Slot], *, html: bool) -> str:
    """`text` with every slot filled with its tag's default: for readers who are no one in particular (the archive's
    copy and subject). `html`: the HTML part's slots, escaped; else the text part's (a subject's)."""
    if not slots:
        return text
    defaults = (value_of(slot, "", "", None) for slot in slots)
    if html:
        return fill(text, {tag_html_token(i): escape_html(value) for i, value in enumerate(defaults)})
    return fill(text, {tag_text_token(i): value for i, value in enumerate(defaults)})


def values_for(slots: Sequence[Slot], name: str, email: str, fields: Mapping[str, Any] | None) -> tuple[str, ...]:
    return tuple(value_of(slot, name, email, fields) for slot in slots)


def field_names(slots: Sequence[Slot]) -> list[str]:
    """The custom fields the slots read, once each, in order."""
    return list(dict.fromkeys(slot.tag.field for slot in slots if slot.tag.ref is Ref.FIELD))


def sample_values(slots: Sequence[Slot], name: str, email: str) -> tuple[str, ...]:
    """The sample subscriber's values (`newsletter render`, test sends): their name and address; a field tag with
    a default shows the default, as a subscriber without the field sees it, and one without shows the field's name
    in brackets ("[city]"), so a proof shows where a value lands."""
    return tuple(value_of(slot, name, email, None) if slot.tag.ref is not Ref.FIELD or slot.tag.default
                 else value_of(slot, name, email, {slot.tag.field: f"[{slot.tag.field}]"}) for slot in slots)


# An issue's tags, from its source to its slots (used by mailer/issue.py) ---------------------------------------

class IssueTags:
    """The merge tags of one parse: each occurrence is a marker (letters and digits, which Markdown leaves alone)
    until the Markdown is rendered, then a slot token, numbered per (tag, URL or text) in order of appearance."""

    def __init__(self, source: str) -> None:
        marker = "NLMT" + uuid.uuid4().hex[:12]
        while marker in source:
            marker = "NLMT" + uuid.uuid4().hex[:12]
        self.marker = marker
        self.pattern = re.compile(marker + r"([xu])(\d+)x")
        self.tags: list[Tag] = []
        self.originals: list[str] = []
        self.slots: dict[Slot, int] = {}
        self.field_uses: list[tuple[str, int]] = []

    def mark(self, text: str, first_line: int, problems: list[tuple[int, str]]) -> str:
        """`text` with every tag replaced by its marker; a malformed tag is a (line, message) problem."""
        pieces: list[str] = []
        position = 0
        line, counted, reported = first_line, 0, 0
        for found in scan(text):
            line += text.count("\n", counted, found.start)  # counted once in all: lines are counted as we go
            counted = found.start
            if found.tag is None:
                reported += 1
                if reported <= MAX_PROBLEMS:
                    problems.append((line, f"{found.problem}: '{text[found.start:found.end][:80]}'"))
                continue
            pieces.append(text[position:found.start])
            pieces.append(f"{self.marker}x{len(self.tags)}x")
            self.tags.append(found.tag)
            self.originals.append(text[found.start:found.end])
            if found.tag.ref is Ref.FIELD:
                self.field_uses.append((found.tag.field, line))
            position = found.end
        pieces.append(text[position:])
        return "".join(pieces)

    def as_url(self, url: str) -> str:
        """Markers inside a link or image address become URL slots."""
        return url.replace(self.marker + "x", self.marker + "u")

    def as_written(self, text: str) -> str:
        return self.pattern.sub(lambda m: self.originals[int(m.group(2))], text)

    def to_slots(self, text: str, *, html: bool) -> str:
        token = tag_html_token if html else tag_text_token

        def slot(match: re.Match[str]) -> str:
            key = Slot(self.tags[int(match.group(2))], url=match.group(1) == "u")
            return token(self.slots.setdefault(key, len(self.slots)))

        return self.pattern.sub(slot, text) if self.tags else text

    def to_defaults(self, text: str) -> str:
        return self.pattern.sub(lambda m: value_of(Slot(self.tags[int(m.group(2))]), "", "", None), text)

    def unescape(self, text: str) -> str:
        """Outside Markdown (the subject), `\\{{` is only there to keep the braces: drop the backslash."""
        return re.sub(r"\\(\{[{%])", r"\1", text)


# Freezing on a send -----------------------------------------------------------------------------------------

def to_json(slots: Sequence[Slot]) -> list[dict[str, Any]] | None:
    """What a send stores (sends.merge_tags): None when the issue has no tags, so a batch reads no fields."""
    if not slots:
        return None
    return [{"ref": s.tag.ref.value, "field": s.tag.field, "default": s.tag.default, "url": s.url} for s in slots]


def from_json(data: Any) -> tuple[Slot, ...]:
    if not isinstance(data, list):
        return ()
    return tuple(Slot(Tag(Ref(item["ref"]), str(item.get("field") or ""), str(item.get("default") or "")),
                      bool(item.get("url"))) for item in data)
