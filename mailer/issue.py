"""An issue file (YAML front matter + Markdown) parsed into a typed structure, or a list of located problems.

Editors fix what they can see: every problem names the file and the line, and all problems are reported at once
instead of stopping at the first, so one `newsletter check` run gives the whole to-do list.
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from mailer.merge_tags import MAX_DISTINCT, IssueTags, Slot, scan

ALLOWED_KEYS = {"subject", "preheader", "date", "cta", "title", "lang", "list", "from_name", "outro_heading", "slug"}
DEFAULT_OUTRO = "Wrapping Up"
_ABSOLUTE_SCHEMES = {"http", "https", "mailto"}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class IssueError(ValueError):
    """The issue cannot be sent as written. ``problems`` lists every located problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Block:
    """A piece of body copy in both forms the email needs."""

    html: str
    text: str


@dataclass(frozen=True)
class Story:
    number: int
    headline: str
    body: Block
    line: int


@dataclass(frozen=True)
class CallToAction:
    text: str
    url: str


@dataclass(frozen=True)
class Issue:
    subject: str
    preheader: str
    date: dt.date | None
    title: str
    lang: str | None  # from the front matter; None means the language of the list it goes to
    list_slug: str | None
    from_name: str | None
    cta: CallToAction | None
    intro: Block
    stories: tuple[Story, ...]
    outro: Block | None
    outro_heading: str
    slug: str
    links: tuple[str, ...] = field(default=())
    # Merge tags (mailer/merge_tags.py). `subject` is the subject with each tag's default, as the archive shows it;
    # `mail_subject` holds the text-part slots a recipient's values fill. slots[i] is slot i (__NLH_TAGi__).
    mail_subject: str = ""
    slots: tuple[Slot, ...] = field(default=())
    field_uses: tuple[tuple[str, int], ...] = field(default=())  # (custom field, line) for each use, for check

    @property
    def subject_for_mail(self) -> str:
        return self.mail_subject or self.subject


def slugify(value: str) -> str:
    value = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return value[:80].rstrip("-") or "issue"


def _markdown() -> MarkdownIt:
    # Raw HTML off: an issue cannot smuggle markup (or scripts) past the template.
    return MarkdownIt("commonmark", {"html": False, "typographer": True}).enable(["replacements", "smartquotes"])


_MD = _markdown()


def load_issue(path: str | Path) -> Issue:
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise IssueError([Problem(str(path), 1, f"not UTF-8 text ({exc.reason})")]) from exc
    return parse_issue(source, str(path))


def split_front_matter(source: str, filename: str) -> tuple[dict[str, Any], str, int]:
    """Return (front matter, body, line number where the body starts)."""
    lines = source.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise IssueError([Problem(filename, 1, "the file must start with '---' and YAML front matter")])
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            break
    else:
        raise IssueError([Problem(filename, 1, "front matter is not closed by a '---' line")])
    raw = "".join(lines[1:index])
    try:
        data = yaml.safe_load(raw) if raw.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = (mark.line + 2) if mark is not None else 2
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise IssueError([Problem(filename, line, f"bad YAML in front matter: {problem}")]) from exc
    if not isinstance(data, dict):
        raise IssueError([Problem(filename, 2, "front matter must be a mapping of keys to values")])
    return data, "".join(lines[index + 1:]), index + 2


def _key_lines(source: str) -> dict[str, int]:
    """Line of each top-level front-matter key, for pointing at the culprit."""
    found: dict[str, int] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        match = re.match(r"^([A-Za-z_][\w-]*)\s*:", line)
        if match and match.group(1) not in found:
            found[match.group(1)] = number
        if number > 1 and line.strip() == "---":
            break
    return found


def parse_issue(source: str, filename: str = "<issue>") -> Issue:
    data, body, body_line = split_front_matter(source, filename)
    key_line = _key_lines(source)
    problems: list[Problem] = []

    def meta_problem(key: str, message: str) -> None:
        problems.append(Problem(filename, key_line.get(key, 2), message))

    for key in sorted(set(data) - ALLOWED_KEYS):
        meta_problem(key, f"unknown front matter key '{key}' (allowed: {', '.join(sorted(ALLOWED_KEYS))})")

    tags = IssueTags(source)
    tag_problems: list[tuple[int, str]] = []
    subject = _string(data.get("subject"))
    if not subject:
        problems.append(Problem(filename, key_line.get("subject", 1), "missing subject in front matter"))
    elif len(subject) > 250:
        meta_problem("subject", "subject is longer than 250 characters")
    subject = tags.mark(subject, key_line.get("subject", 1), tag_problems)
    for key in sorted(set(data) & ALLOWED_KEYS - {"subject"}):
        if scan(repr(data[key])):
            meta_problem(key, f"merge tags work in the subject and the body only, not in '{key}'")
    preheader = _string(data.get("preheader"))
    date = _date(data.get("date"), meta_problem)
    cta = _cta(data.get("cta"), meta_problem)
    lang = _string(data.get("lang")) or None  # None: the list's language
    if lang is not None and not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", lang):
        meta_problem("lang", f"lang '{lang}' is not a language tag such as 'en' or 'pt-BR'")
    outro_heading = _string(data.get("outro_heading")) or DEFAULT_OUTRO

    sections = _sections(_MD.parse(tags.mark(body, body_line, tag_problems)), body_line, tags)
    problems.extend(Problem(filename, line, message) for line, message in tag_problems)
    if len(set(tags.tags)) > MAX_DISTINCT:
        problems.append(Problem(filename, body_line, f"{len(set(tags.tags))} different merge tags: at most "
                                                     f"{MAX_DISTINCT} (each is one more value per recipient)"))
    intro_tokens = sections[0][2] if sections and sections[0][0] is None else []
    story_sections = [s for s in sections if s[0] is not None]
    outro: Block | None = None
    stories: list[Story] = []
    links: list[str] = []
    for tokens in [intro_tokens] + [s[2] for s in story_sections]:
        problems.extend(_check_inline(tokens, filename, links, tags))
    for headline, line, tokens in story_sections:
        assert headline is not None
        if not _has_text(tokens):
            problems.append(Problem(filename, line, f"'{headline}' has no text under its heading"))
        if headline.strip().lower() == outro_heading.lower():
            outro = _block(tokens, tags)
            continue
        if not headline.strip():
            problems.append(Problem(filename, line, "a story heading is empty"))
        stories.append(Story(len(stories) + 1, tags.to_slots(headline.strip(), html=False), _block(tokens, tags),
                             line))
    if not stories:
        problems.append(Problem(filename, body_line, "no stories: write each story under a '## Headline' heading"))
    if cta:
        links.append(cta.url)
    if problems:
        raise IssueError(sorted(problems, key=lambda p: p.line))

    mail_subject = tags.unescape(tags.to_slots(subject, html=False))
    subject = tags.unescape(tags.to_defaults(subject))
    slug = _string(data.get("slug")) or slugify(f"{date.isoformat() + '-' if date else ''}{subject}")
    intro = _block(intro_tokens, tags)
    return Issue(
        subject=subject,
        preheader=preheader,
        date=date,
        title=_string(data.get("title")) or subject.split(":")[0].strip(),
        lang=lang,
        list_slug=_string(data.get("list")) or None,
        from_name=_string(data.get("from_name")) or None,
        cta=cta,
        intro=intro,
        stories=tuple(stories),
        outro=outro,
        outro_heading=outro_heading,
        slug=slugify(slug),
        links=tuple(dict.fromkeys(links)),
        mail_subject=mail_subject if tags.tags else "",
        slots=tuple(tags.slots),
        field_uses=tuple(tags.field_uses),
    )


def field_problems(issue: Issue, known: set[str] | None, filename: str) -> list[Problem]:
    """Every use of a custom field the list does not define (`newsletter check --list`); none when the list's
    fields are unknown (None). A field missing on a subscriber is filled with its default, so this is a check of
    spelling, not a refusal."""
    if known is None:
        return []
    return [Problem(filename, line, f"'subscriber.fields.{name}' is not a field of this list"
                                    + (f" (its fields: {', '.join(sorted(known))})" if known else " (it has none)"))
            for name, line in issue.field_uses if name not in known]


def _string(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _date(value: Any, problem: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value if not isinstance(value, dt.datetime) else value.date()
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        problem("date", f"date '{value}' is not a date like 2023-09-22")
        return None


def _cta(value: Any, problem: Any) -> CallToAction | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"text", "url"}:
        problem("cta", "cta must have exactly 'text' and 'url'")
        return None
    text, url = _string(value.get("text")), _string(value.get("url"))
    if not text or not url:
        problem("cta", "cta needs both 'text' and 'url'")
        return None
    if urlsplit(url).scheme not in ("http", "https"):
        problem("cta", f"cta url '{url}' must be an absolute http(s) link")
        return None
    return CallToAction(text, url)


Section = tuple[str | None, int, list[Token]]


def _sections(tokens: list[Token], body_line: int, tags: IssueTags) -> list[Section]:
    """Split the token stream at level-2 headings: (headline or None for the intro, line, tokens)."""
    sections: list[Section] = [(None, body_line, [])]
    index = 0
    while index < len(tokens):
        token = tokens[index]
        for child in token.children or []:
            for attribute in ("href", "src"):
                value = child.attrGet(attribute)
                if value is not None and tags.marker in str(value):
                    child.attrSet(attribute, tags.as_url(str(value)))
        if token.type == "heading_open" and token.tag == "h2":
            headline = tokens[index + 1].content
            line = body_line + (token.map[0] if token.map else 0)
            sections.append((headline, line, []))
            index += 3
            continue
        token.meta = {**(token.meta or {}), "line": body_line + (token.map[0] if token.map else 0)}
        sections[-1][2].append(token)
        index += 1
    return sections


def _has_text(tokens: list[Token]) -> bool:
    return any(t.type == "inline" and t.content.strip() for t in tokens)


def _tag_in_address(url: str, tags: IssueTags) -> bool:
    """A merge tag in a URL's scheme or host: a subscriber's value would choose where the link goes."""
    parts = urlsplit(url)  # which lowercases the scheme
    return tags.marker.lower() in (parts.scheme + parts.netloc).lower() or (tags.marker in url and not parts.scheme)


def _check_inline(tokens: list[Token], filename: str, links: list[str], tags: IssueTags) -> list[Problem]:
    problems: list[Problem] = []
    line = 0
    for token in tokens:
        line = (token.meta or {}).get("line", line)
        for child in token.children or []:
            if child.type in ("link_open", "image"):
                url = str(child.attrGet("href" if child.type == "link_open" else "src") or "")
                if _tag_in_address(url, tags):
                    problems.append(Problem(filename, line, f"a merge tag in the scheme or host of "
                                                            f"'{tags.as_written(url)}': a tag can only be in a "
                                                            "link's path, query or fragment"))
                    continue
            if child.type == "link_open":
                href = tags.as_written(str(child.attrGet("href") or ""))
                scheme = urlsplit(href).scheme.lower()
                if scheme not in _ABSOLUTE_SCHEMES:
                    problems.append(Problem(filename, line, f"relative or unsupported link '{href}': "
                                                            "use an absolute https:// URL"))
                else:
                    links.append(href)
            elif child.type == "image":
                src = tags.as_written(str(child.attrGet("src") or ""))
                if not child.content.strip():
                    problems.append(Problem(filename, line, f"image '{src}' has no alt text"))
                if urlsplit(src).scheme not in ("http", "https"):
                    problems.append(Problem(filename, line, f"image '{src}' must be an absolute https:// URL"))
    return problems


def _block(tokens: list[Token], tags: IssueTags) -> Block:
    html = _MD.renderer.render(tokens, _MD.options, {}) if tokens else ""
    return Block(html=tags.to_slots(html.strip(), html=True), text=tags.to_slots(to_text(tokens), html=False))


def to_text(tokens: list[Token], width: int = 72) -> str:
    """Plain text for the text/plain part: wrapped paragraphs, list bullets, links as numbered references."""
    paragraphs: list[str] = []
    references: list[str] = []
    bullet = ""
    for token in tokens:
        if token.type == "list_item_open":
            bullet = "- " if token.markup in "-*+" else f"{token.info or '1'}. "
        elif token.type == "inline":
            words = _inline_text(token.children or [], references)
            if bullet:
                paragraphs.append(textwrap.fill(words, width, initial_indent=bullet,
                                                subsequent_indent=" " * len(bullet)))
                bullet = ""
            else:
                paragraphs.append(textwrap.fill(words, width, break_long_words=False, break_on_hyphens=False))
    text = "\n\n".join(p for p in paragraphs if p.strip())
    if references:
        text += "\n\n" + "\n".join(f"[{n}] {url}" for n, url in enumerate(references, start=1))
    return text


def _inline_text(children: list[Token], references: list[str]) -> str:
    parts: list[str] = []
    href: str | None = None
    for child in children:
        if child.type == "link_open":
            href = str(child.attrGet("href") or "")
        elif child.type == "link_close" and href is not None:
            if href.startswith("mailto:"):
                parts.append(f" <{href.removeprefix('mailto:')}>")
            else:
                references.append(href)
                parts.append(f" [{len(references)}]")
            href = None
        elif child.type == "image":
            parts.append(f"[{child.content}]")
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type in ("text", "code_inline"):
            parts.append(child.content)
    return re.sub(r"\s+", " ", "".join(parts)).strip()
