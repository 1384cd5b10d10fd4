"""SMTP bounces: DSNs arriving at the VERP return path, by SMTP (our receiver for the bounce subdomain's MX) or
from an IMAP mailbox, go through the same store -> apply path as provider webhooks.

The VERP address is the only proof a bounce is about one of our messages, and it proves exactly one delivery: a
bounce acts on that delivery and its address, whatever addresses the report itself names. Anyone who received our
mail knows their own VERP address and nobody else's, so a forged report can at worst suppress its sender. A report
without a genuine VERP address suppresses nobody: it is kept in `unmatched_bounces` for a person to read.
"""

from __future__ import annotations

import email
import hashlib
import imaplib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.utils import getaddresses
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from mailer.db import session_scope, table_of, upsert_insert
from mailer.events.dsn import dsn_event, failures
from mailer.settings import get_settings
from mailer.verp import read_verp
from subscribers.models import Subscriber
from worker import events
from worker.models import Delivery, UnmatchedBounce

log = logging.getLogger(__name__)

RAW_KEPT = 64 * 1024  # what of an unmatched message is kept for the person reading it
# Where an IMAP mailbox's delivery agent writes the envelope recipient (the VERP address the bounce was sent to).
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")


@dataclass(frozen=True)
class Ingested:
    events: int = 0  # new events stored (and applied)
    unmatched: int = 0  # kept for a person, nobody suppressed


def _header_addresses(message: Message) -> list[str]:
    values = [str(v) for name in _ENVELOPE_HEADERS for v in (message.get_all(name) or [])]
    return [address for _name, address in getaddresses(values) if address]


def _keep_unmatched(raw: bytes, message: Message | None, why: str, via: str, envelope: Sequence[str]) -> int:
    try:
        named = [{"recipient": f.recipient[:320], "status": f.status, "action": f.action}
                 for f in failures(raw)][:50]
    except Exception:  # a report we cannot read is still kept, for the person who can
        named = []
    row = {"digest": hashlib.sha256(raw).hexdigest(), "via": via, "why": why[:500],
           "envelope_to": ", ".join(envelope)[:1000],
           "sender": str(message.get("From", ""))[:500] if message is not None else "",
           "subject": str(message.get("Subject", ""))[:998] if message is not None else "",
           "named": named, "raw": raw[:RAW_KEPT].decode("utf-8", "replace")}
    with session_scope() as session:
        insert = upsert_insert(session)
        table = table_of(UnmatchedBounce)
        kept = session.execute(insert(table).values(**row).on_conflict_do_nothing(index_elements=["digest"])
                               .returning(table.c.id)).first()
    log.warning("bounce kept unmatched (%s): nobody suppressed", why)
    return int(kept is not None)


def ingest_dsn(raw: bytes, envelope_recipients: Sequence[str] = (), *, via: str = "imap") -> Ingested:
    """Store and apply what one DSN proves. The SMTP receiver passes the envelope recipients (already checked at
    RCPT) and only those count; from a mailbox, the headers its delivery agent wrote say where it was sent."""
    try:
        message = email.message_from_bytes(raw, policy=policy.compat32)
        candidates = list(envelope_recipients) or _header_addresses(message)
    except Exception:  # unparseable mail is kept, not fatal
        return Ingested(unmatched=_keep_unmatched(raw, None, "unreadable message", via, envelope_recipients))
    deliveries = {d for d in (read_verp(a) for a in candidates) if d is not None}
    if len(deliveries) != 1:
        why = "no genuine VERP address" if not deliveries else "several VERP addresses"
        return Ingested(unmatched=_keep_unmatched(raw, message, why, via, candidates))
    delivery_id = deliveries.pop()
    with session_scope() as session:
        address = session.scalar(select(Subscriber.email).join(Delivery, Delivery.subscriber_id == Subscriber.id)
                                 .where(Delivery.id == delivery_id))
    if address is None:
        return Ingested(unmatched=_keep_unmatched(raw, message, "the VERP address names no delivery on file", via,
                                                  candidates))
    event = dsn_event(raw, delivery_id, address)
    if event is None:
        return Ingested(unmatched=_keep_unmatched(raw, message, "no delivery failure reported", via, candidates))
    with session_scope() as session:
        new = events.store(session, [event])
    events.apply_pending()
    return Ingested(events=new)


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
            result = ingest_dsn(raw, envelope.rcpt_tos, via="smtp")
        except Exception:  # a bad bounce must not make the sending MTA retry forever
            log.exception("could not process a bounce")
            return "250 Accepted (unprocessable)"
        log.info("bounce from %s: %d event(s), %d unmatched", envelope.mail_from, result.events, result.unmatched)
        return "250 Bounce accepted"


def receiver(host: str, port: int) -> Controller:
    return Controller(BounceHandler(), hostname=host, port=port)


def fetch_imap(client: Any = None) -> Ingested:
    """Read unseen messages in the bounce mailbox, ingest each, and mark it seen."""
    settings = get_settings()
    if client is None:
        factory = imaplib.IMAP4_SSL if settings.imap_ssl else imaplib.IMAP4
        client = factory(settings.imap_host or "", settings.imap_port)
        client.login(settings.imap_user or "", settings.imap_password.get_secret_value()
                     if settings.imap_password else "")
    client.select(settings.imap_folder)
    _status, data = client.search(None, "UNSEEN")
    stored = unmatched = 0
    for number in data[0].split():
        _status, parts = client.fetch(number, "(RFC822)")
        raw = next((p[1] for p in parts if isinstance(p, tuple)), b"")
        result = ingest_dsn(raw, via="imap")
        stored, unmatched = stored + result.events, unmatched + result.unmatched
        client.store(number, "+FLAGS", "\\Seen")
    client.logout()
    return Ingested(stored, unmatched)
