"""SMTP bounces: DSNs arriving at the VERP return path, by SMTP (our receiver for the bounce subdomain's MX) or
from an IMAP mailbox, go through the same store -> apply path as provider webhooks."""

from __future__ import annotations

import email
import imaplib
import logging
from collections.abc import Sequence
from email import policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailer.db import session_scope
from mailer.events.dsn import dsn_events
from mailer.settings import get_settings
from mailer.verp import read_verp
from worker import events

log = logging.getLogger(__name__)


def ingest_dsn(raw: bytes, envelope_recipients: Sequence[str] = ()) -> int:
    """Store and apply the failures in one DSN; returns how many events were new. A DSN whose VERP address is not
    ours (or forged) is still parsed, but matched by address only, never by a delivery id it claims."""
    message = email.message_from_bytes(raw, policy=policy.compat32)
    candidates = [*list(envelope_recipients), str(message.get("To", "")), str(message.get("Delivered-To", ""))]
    delivery_id = next((d for d in (read_verp(a) for a in candidates if a) if d is not None), None)
    found = dsn_events(raw, delivery_id)
    with session_scope() as session:
        new = events.store(session, found)
    events.apply_pending()
    return new


class BounceHandler:
    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if read_verp(address) is None:
            return "550 5.1.1 No such bounce address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            count = ingest_dsn(raw, envelope.rcpt_tos)
        except Exception:  # a bad bounce must not make the sending MTA retry forever
            log.exception("could not process a bounce")
            return "250 Accepted (unprocessable)"
        log.info("bounce from %s: %d event(s)", envelope.mail_from, count)
        return "250 Bounce accepted"


def receiver(host: str, port: int) -> Controller:
    return Controller(BounceHandler(), hostname=host, port=port)


def fetch_imap(client: Any = None) -> int:
    """Read unseen messages in the bounce mailbox, ingest each, and mark it seen."""
    settings = get_settings()
    if client is None:
        factory = imaplib.IMAP4_SSL if settings.imap_ssl else imaplib.IMAP4
        client = factory(settings.imap_host or "", settings.imap_port)
        client.login(settings.imap_user or "", settings.imap_password.get_secret_value()
                     if settings.imap_password else "")
    client.select(settings.imap_folder)
    _status, data = client.search(None, "UNSEEN")
    total = 0
    for number in data[0].split():
        _status, parts = client.fetch(number, "(RFC822)")
        raw = next((p[1] for p in parts if isinstance(p, tuple)), b"")
        total += ingest_dsn(raw)
        client.store(number, "+FLAGS", "\\Seen")
    client.logout()
    return total
