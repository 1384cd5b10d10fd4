"""One recipient's RFC 5322 message: multipart/alternative with the list headers mailbox providers require.

Every header value goes through email.headerregistry / email.policy, which encodes non-ASCII and refuses CR/LF, so
a subscriber name or a subject can never inject a header.
"""

from __future__ import annotations

import binascii
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime
from functools import lru_cache

from mailer.addresses import wire_address
from mailer.batch import Content, Recipient
from mailer.db import utcnow
from mailer.dkim_signing import DkimSigner, body_hash, relaxed_lines
from mailer.placeholders import PLACEHOLDER, fill, has_placeholder, substitutions

_NEWLINES = re.compile(r"[\r\n]+")
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")  # RFC 5322 field name: printable ASCII but ":"


class HeaderInjectionError(ValueError):
    """A header value carried CR or LF."""


def clean_header(value: str) -> str:
    """Fold any CR/LF in a display value into a space: a name cannot start a new header line."""
    return _NEWLINES.sub(" ", value).strip()


def _address(display_name: str, email: str) -> Address:
    if _NEWLINES.search(email):
        raise HeaderInjectionError(f"line break in address {email!r}")
    local, _, domain = wire_address(email).rpartition("@")  # the domain in IDNA form, never an encoded word
    return Address(display_name=clean_header(display_name), username=local, domain=domain)


def list_unsubscribe(recipient: Recipient) -> str | None:
    """The List-Unsubscribe value (RFC 2369): the https one-click URL first, then a mailto: fallback."""
    uris = []
    if recipient.unsubscribe_url:
        uris.append(recipient.unsubscribe_url)
    if recipient.unsubscribe_mailto:
        mailto = recipient.unsubscribe_mailto
        uris.append(mailto if mailto.startswith("mailto:") else f"mailto:{mailto}")
    return ", ".join(f"<{u}>" for u in uris) or None


def personalize(content: Content, recipient: Recipient) -> tuple[str, str]:
    """Fill one recipient's placeholders into the HTML and text parts (plain substitution: no re-rendering)."""
    table = substitutions(recipient.values, recipient.tags)
    return fill(content.html, table), fill(content.text, table)


def personal_subject(content: Content, recipient: Recipient) -> str:
    """The subject one recipient reads: its merge tags filled (raw: a header is text), folded onto one line."""
    if not has_placeholder(content.subject):
        return clean_header(content.subject)
    return clean_header(fill(content.subject, substitutions(recipient.values, recipient.tags)))


def build_message(content: Content, recipient: Recipient, *, message_id_domain: str) -> EmailMessage:
    """The message as an EmailMessage, for code that inspects headers: parsed from encode_message's bytes, so
    there is still one builder."""
    message = message_from_bytes(encode_message(content, recipient, message_id_domain=message_id_domain)[0],
                                 policy=SMTPUTF8)
    assert isinstance(message, EmailMessage)
    return message


# The one builder, for every message that leaves (SMTP, the outbox, test sends, confirmations) and for the sample
# `newsletter render` writes. The email package spends ~10 ms per 40 KB message (pure-Python quoted-printable and
# generator) and writes 78-character lines; here the per-send headers are folded by the email package once, and
# each body is quoted-printable encoded once per document (see _compile), so a recipient only pays for encoding
# their own placeholder values and joining bytes.

_BOUNDARY_PREFIX = "=_nl_"  # "=_" never occurs in quoted-printable output, so no body line can fake a boundary
_MAX_LINE = 76  # RFC 2045: encoded lines at most 76 characters, not counting CRLF
_SOFT_BREAK = b"=\r\n"
_EQUALS = ord("=")


@lru_cache(maxsize=8)
def _send_headers(from_name: str, from_email: str, reply_to: str | None, subject: str | None, list_id: str | None,
                  feedback_id: str | None) -> bytes:
    """Headers shared by every recipient of a send, folded and encoded by the email package once. `subject` None:
    it holds merge tags, and each recipient gets their own Subject line."""
    template = EmailMessage(policy=SMTP)
    template["From"] = _address(from_name, from_email)
    if reply_to:
        template["Reply-To"] = _address("", reply_to)
    if subject is not None:
        template["Subject"] = clean_header(subject)
    template["MIME-Version"] = "1.0"
    if list_id:
        template["List-Id"] = clean_header(list_id)
    if feedback_id:
        template["Feedback-ID"] = clean_header(feedback_id)
    return b"".join(SMTP.fold_binary(name, value) for name, value in template.items())


def _wrap_line(line: bytes, limit: int = _MAX_LINE) -> bytes:
    """Soft-break an encoded line longer than limit, never inside an =XX escape.

    binascii.b2a_qp lets a line reach 77-78 characters when it protects a space before a line break (=20), and
    the last line of its output may be exactly 76, with no room for the soft break a slot needs after it.
    """
    pieces = []
    while len(line) > limit:
        cut = limit - 1  # room for the "=" of the soft break
        if line[cut - 1] == _EQUALS:
            cut -= 1
        elif line[cut - 2] == _EQUALS:
            cut -= 2
        pieces.append(line[:cut] + b"=")
        line = line[cut:]
    pieces.append(line)
    return b"\r\n".join(pieces)


def _b2a_qp_crlf(text: str) -> bytes:
    """b2a_qp with CRLF line ends. A CR that does not end a line is escaped (=0D): a bare CR must not reach SMTP."""
    if "\r" not in text:
        return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    lines = (binascii.b2a_qp(line.encode("utf-8"), istext=False) for line in text.replace("\r\n", "\n").split("\n"))
    return b"\r\n".join(line.replace(b"\n", b"\r\n") for line in lines)  # a line's only \n are its soft breaks


def _qp(text: str) -> bytes:
    """Quoted-printable starting at column 0, CRLF line ends, every line within the RFC 2045 limit."""
    encoded = _b2a_qp_crlf(text)
    if len(encoded) <= _MAX_LINE or max(map(len, encoded.split(b"\r\n"))) <= _MAX_LINE:
        return encoded
    return b"\r\n".join(_wrap_line(line) for line in encoded.split(b"\r\n"))


def _end_at_column_zero(encoded: bytes) -> bytes:
    """Close a piece with a soft line break unless it already ends a line, so whatever follows starts at column 0.

    That invariant is what lets static text be encoded once and a value of any length be spliced in anywhere.
    """
    if not encoded or encoded.endswith(b"\n"):
        return encoded
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start >= _MAX_LINE:
        encoded = encoded[:start] + _wrap_line(encoded[start:], _MAX_LINE - 1)
    return encoded + _SOFT_BREAK


@dataclass(frozen=True, slots=True)
class _Template:
    """A document encoded once: segments[i] is followed by the value of slots[i], then by segments[i + 1].

    Every segment starts at column 0 and, except the last, ends at column 0 (a soft line break where needed).
    That also makes each segment whole lines for DKIM, so relaxed[i], the canonical form of segments[i], is computed
    once here and a signed message hashes it instead of canonicalising 50 KB per recipient.
    """

    segments: tuple[bytes, ...]
    slots: tuple[str, ...]
    relaxed: tuple[bytes, ...]


def _placeholder_split(document: str) -> list[str]:
    """Static text and placeholder tokens, alternating, exactly as fill() sees them.

    fill() is asked to wrap every token in a marker absent from the document, so the template can never disagree
    with personalize() about what is a placeholder, however placeholders.py tokenises.
    """
    marker = f"\x00{uuid.uuid4().hex}\x00"
    while marker in document:
        marker = f"\x00{uuid.uuid4().hex}\x00"
    wrapped = {token: f"{marker}{token}{marker}" for token in PLACEHOLDER.findall(document)}
    return fill(document, wrapped).split(marker)


@lru_cache(maxsize=16)
def _compile(document: str) -> _Template:
    """Keyed on the document text, not on the Content object: a str caches its hash and the lookup short-circuits
    on identity, so a hit costs nothing however the batches build their Content, and equal text is never
    encoded twice."""
    pieces = _placeholder_split(document)
    statics, slots = pieces[0::2], pieces[1::2]
    segments = [_end_at_column_zero(_qp(text)) for text in statics[:-1]]
    segments.append(_qp(statics[-1]))
    return _Template(tuple(segments), tuple(slots), tuple(relaxed_lines(segment) for segment in segments))


def _fill_encoded(template: _Template, table: Mapping[str, str], memo: dict[str, bytes],
                  canonical: list[bytes] | None) -> list[bytes]:
    """The encoded document for one recipient. memo holds the values already encoded for this message; canonical,
    when given, receives the DKIM relaxed form of the same pieces."""
    parts = [template.segments[0]]
    for token, segment in zip(template.slots, template.segments[1:], strict=True):
        value = table.get(token, token)  # as fill() does
        encoded = memo.get(value)
        if encoded is None:
            encoded = memo[value] = _end_at_column_zero(_qp(value))
        parts.append(encoded)
        parts.append(segment)
    if canonical is not None:
        canonical.append(template.relaxed[0])
        for encoded, relaxed in zip(parts[1::2], template.relaxed[1:], strict=True):
            canonical.append(relaxed_lines(encoded))  # a value starts at column 0 and ends there: whole lines
            canonical.append(relaxed)
    return parts


def _ascii_header(name: str, value: str) -> bytes:
    """One header line as bytes. Non-ASCII goes through a header object, which makes encoded words of it at any
    length (fold_binary given a plain str encodes only what it has to fold, and fails on a short value)."""
    if not value.isascii() or _NEWLINES.search(value):
        return SMTP.fold_binary(name, SMTP.header_factory(name, clean_header(value)))
    return f"{name}: {value}\r\n".encode()


def _list_unsubscribe_header(value: str) -> bytes:
    """Folded between its URIs (a URI itself cannot be folded), so the line stays short when a mailto: follows."""
    if not value.isascii() or _NEWLINES.search(value):
        return SMTP.fold_binary("List-Unsubscribe", clean_header(value))
    folded = value.replace(", <", ",\r\n <")
    return f"List-Unsubscribe: {folded}\r\n".encode()


def _to_header(email: str) -> bytes:
    """The To: line, the one place that spells a recipient's address: the domain in IDNA form; a local part that
    is not ASCII as UTF-8 (RFC 6532), never an encoded word (it goes out only with SMTPUTF8)."""
    address = _address("", email)
    if address.addr_spec.isascii():
        return f"To: {address.addr_spec}\r\n".encode()
    header = EmailMessage(policy=SMTPUTF8)
    header["To"] = address
    return SMTPUTF8.fold_binary("To", header["To"])


def _extra_header(name: str, value: str) -> bytes:
    if not _HEADER_NAME.fullmatch(name):
        raise HeaderInjectionError(f"not a header name: {name!r}")
    return _ascii_header(name, clean_header(value))


def _recipient_headers(content: Content, recipient: Recipient, message_id: str, boundary: str) -> list[bytes]:
    personal = has_placeholder(content.subject)  # merge tags in the subject: a Subject line per recipient
    head = [_send_headers(content.from_name, content.from_email, content.reply_to,
                          None if personal else content.subject, content.list_id, content.feedback_id),
            _to_header(recipient.email),
            f"Date: {format_datetime(utcnow())}\r\nMessage-ID: {message_id}\r\n".encode()]
    if personal:  # a header object, so that any non-ASCII becomes encoded words whatever the length
        head.append(SMTP.fold_binary("Subject", SMTP.header_factory("Subject", personal_subject(content, recipient))))
    unsubscribe = list_unsubscribe(recipient)
    if unsubscribe:
        head.append(_list_unsubscribe_header(unsubscribe))
    if recipient.unsubscribe_url:
        head.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    for name, value in recipient.headers.items():
        head.append(_extra_header(name, value))
    head.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode())
    return head


def _part_header(boundary: str, kind: str) -> bytes:
    return (f'--{boundary}\r\nContent-Type: text/{kind}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode()


def _bodies(content: Content, recipient: Recipient, boundary: str, canonical: list[bytes] | None) -> list[bytes]:
    """The body's pieces; canonical, when given, receives their DKIM relaxed forms in the same order. Part headers
    and boundary lines hold no runs of whitespace and no trailing whitespace: they are their own canonical form."""
    table = substitutions(recipient.values, recipient.tags)
    memo: dict[str, bytes] = {}
    plain, html = _part_header(boundary, "plain"), _part_header(boundary, "html")
    closing = f"--{boundary}--\r\n".encode()
    if canonical is not None:
        canonical.append(plain)
    parts = [plain, *_fill_encoded(_compile(content.text), table, memo, canonical), b"\r\n", html]
    if canonical is not None:
        canonical += (b"\r\n", html)
    parts += [*_fill_encoded(_compile(content.html), table, memo, canonical), b"\r\n", closing]
    if canonical is not None:
        canonical += (b"\r\n", closing)
    return parts


def encode_message(content: Content, recipient: Recipient, *, message_id_domain: str,
                   dkim: DkimSigner | None = None) -> tuple[bytes, str]:
    """(RFC 5322 bytes, Message-ID) for one recipient: the only way a message is built. With a signer, the message
    starts with its DKIM-Signature header(s).

    The boundary is derived from the Message-ID, so two copies of a send differ only in the recipient's own values,
    the Message-ID and the Date (what tests/newsletter/test_sample_message.py holds `newsletter render` to).
    """
    token = uuid.uuid4().hex
    message_id = f"<{token}@{message_id_domain}>"
    boundary = _BOUNDARY_PREFIX + token
    head = b"".join(_recipient_headers(content, recipient, message_id, boundary))
    canonical: list[bytes] | None = None if dkim is None else []
    body = b"".join(_bodies(content, recipient, boundary, canonical))
    if dkim is not None:
        assert canonical is not None
        head = dkim.signature_headers(head, body_hash(canonical)) + head
    return head + body, message_id.strip("<>")
