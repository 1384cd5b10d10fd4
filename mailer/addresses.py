"""Addresses as they go on the wire, and the look-alike test for local parts.

An internationalised domain (``exämple.org``) has an ASCII spelling every mail server understands
(``xn--exmple-cua.org``, IDNA). The email package, asked to put the Unicode form in a header of a message without
SMTPUTF8, writes an encoded word instead (``=?utf-8?q?...?=@example.org``), which is no address at all. So every
address we put in a header or an envelope has its domain converted here; only a non-ASCII local part still needs
SMTPUTF8 and a UTF-8 header (RFC 6531/6532). Addresses are stored in their Unicode form, as people typed them.

A local part that mixes scripts (a Cyrillic "a", U+0430, among Latin letters) is how a look-alike of someone else's
address is made; `mixes_scripts` finds it, and lists that do not allow international addresses refuse it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import idna

# Scripts that legitimately share one name (UTS #39 "highly restrictive": Latin with the scripts of Japanese,
# Chinese and Korean writing). Every other mixture is a possible look-alike.
_COMPATIBLE = [{"LATIN", "CJK", "HIRAGANA", "KATAKANA"}, {"LATIN", "CJK", "BOPOMOFO"}, {"LATIN", "CJK", "HANGUL"}]


@lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str:
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return domain  # not convertible: it stays as it is and can only go out where SMTPUTF8 is offered


def wire_address(email: str) -> str:
    """`email` with its domain in IDNA form; an ASCII address is returned as it is, at no cost."""
    if email.isascii():
        return email
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return email
    return f"{local}@{_ascii_domain(domain)}"


def _script(char: str) -> str | None:
    """The script of a letter, from its Unicode name (LATIN, CYRILLIC, GREEK, CJK, ...); None for non-letters.

    Width and style variants (FULLWIDTH LATIN ..., MATHEMATICAL BOLD ...) count as scripts of their own: a
    fullwidth letter among plain ones is a look-alike too."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def scripts(text: str) -> set[str]:
    return {script for script in map(_script, text) if script is not None}


def mixes_scripts(local_part: str) -> bool:
    """True when the letters of `local_part` come from scripts that do not belong together in one name."""
    if local_part.isascii():
        return False
    found = scripts(local_part)
    return len(found) > 1 and not any(found <= allowed for allowed in _COMPATIBLE)
