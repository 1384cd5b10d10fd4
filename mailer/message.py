"""One recipient's RFC 5322 message: multipart/alternative with the list headers mailbox providers require.

Every header value goes through email.headerregistry / email.policy, which encodes non-ASCII and refuses CR/LF, so
a subscriber name or a subject can never inject a header.
"""

from __future__ import annotations

import binascii
import re
import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from functools import lru_cache

from mailer.db import utcnow
from mailer.placeholders import fill, substitutions
from mailer.transports.base import Content, Recipient

_NEWLINES = re.compile(r"[\r\n]+")


class HeaderInjectionError(ValueError):
    """A header value carried CR or LF."""


def clean_header(value: str) -> str:
    """Fold any CR/LF in a display value into a space: a name cannot start a new header line."""
    return _NEWLINES.sub(" ", value).strip()


def _address(display_name: str, email: str) -> Address:
    if _NEWLINES.search(email):
        raise HeaderInjectionError(f"line break in address {email!r}")
    local, _, domain = email.rpartition("@")
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


def make_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def personalize(content: Content, recipient: Recipient) -> tuple[str, str]:
    """Fill one recipient's placeholders into the HTML and text parts (plain substitution: no re-rendering)."""
    table = substitutions(recipient.values)
    return fill(content.html, table), fill(content.text, table)


def build_message(content: Content, recipient: Recipient, *, message_id_domain: str) -> EmailMessage:
    html, text = personalize(content, recipient)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(content.from_name, content.from_email)
    msg["To"] = _address("", recipient.email)
    if content.reply_to:
        msg["Reply-To"] = _address("", content.reply_to)
    msg["Subject"] = clean_header(content.subject)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_message_id(message_id_domain)
    msg["MIME-Version"] = "1.0"
    if content.list_id:
        msg["List-Id"] = clean_header(content.list_id)
    unsubscribe = list_unsubscribe(recipient)
    if unsubscribe:
        msg["List-Unsubscribe"] = unsubscribe
    if recipient.unsubscribe_url:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in recipient.headers.items():
        msg[clean_header(name)] = clean_header(value)
    msg.set_content(text, subtype="plain", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg


# The fast path for SMTP and the outbox: the same message, serialised directly. The email package spends ~10 ms
# per 40 KB message (pure-Python quoted-printable and generator); here the per-send headers are encoded once and
# the bodies go through binascii's C quoted-printable encoder, about 30 times faster.

_BOUNDARY_PREFIX = "=_nl_"


@lru_cache(maxsize=8)
def _send_headers(from_name: str, from_email: str, reply_to: str | None, subject: str, list_id: str | None) -> bytes:
    """Headers shared by every recipient of a send, folded and encoded by the email package once."""
    template = EmailMessage(policy=SMTP)
    template["From"] = _address(from_name, from_email)
    if reply_to:
        template["Reply-To"] = _address("", reply_to)
    template["Subject"] = clean_header(subject)
    template["MIME-Version"] = "1.0"
    if list_id:
        template["List-Id"] = clean_header(list_id)
    return b"".join(SMTP.fold_binary(name, value) for name, value in template.items())


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _ascii_header(name: str, value: str) -> bytes:
    if not value.isascii() or _NEWLINES.search(value):
        return SMTP.fold_binary(name, clean_header(value))
    return f"{name}: {value}\r\n".encode()


def encode_message(content: Content, recipient: Recipient, *, message_id_domain: str) -> tuple[bytes, str]:
    """(RFC 5322 bytes, Message-ID) for one recipient: what build_message produces, made fast for bulk sends."""
    if not recipient.email.isascii() or recipient.headers:
        message = build_message(content, recipient, message_id_domain=message_id_domain)
        return message.as_bytes(), str(message["Message-ID"]).strip("<>")
    html, text = personalize(content, recipient)
    message_id = make_message_id(message_id_domain)
    boundary = _BOUNDARY_PREFIX + uuid.uuid4().hex
    head = [_send_headers(content.from_name, content.from_email, content.reply_to, content.subject, content.list_id),
            _ascii_header("To", _address("", recipient.email).addr_spec),
            f"Date: {format_datetime(utcnow())}\r\nMessage-ID: {message_id}\r\n".encode()]
    unsubscribe = list_unsubscribe(recipient)
    if unsubscribe:
        head.append(_ascii_header("List-Unsubscribe", unsubscribe))
    if recipient.unsubscribe_url:
        head.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode())
    part = ("--{b}\r\nContent-Type: text/{kind}; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    body = [part.format(b=boundary, kind="plain").encode(), _qp(text), b"\r\n",
            part.format(b=boundary, kind="html").encode(), _qp(html), b"\r\n",
            f"--{boundary}--\r\n".encode()]
    return b"".join(head + body), message_id.strip("<>")
