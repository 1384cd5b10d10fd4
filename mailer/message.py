"""One recipient's RFC 5322 message: multipart/alternative with the list headers mailbox providers require.

Every header value goes through email.headerregistry / email.policy, which encodes non-ASCII and refuses CR/LF, so
a subscriber name or a subject can never inject a header.
"""

from __future__ import annotations

import re
import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

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
    unsubscribe = [f"<{u}>" for u in (recipient.unsubscribe_url, recipient.unsubscribe_mailto) if u]
    if unsubscribe:
        msg["List-Unsubscribe"] = ", ".join(unsubscribe)
    if recipient.unsubscribe_url:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in recipient.headers.items():
        msg[clean_header(name)] = clean_header(value)
    msg.set_content(text, subtype="plain", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg
