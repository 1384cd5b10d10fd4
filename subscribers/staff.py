"""What staff do to one subscriber by hand: add them to lists on stated consent, and edit their name and values.

Adding goes through `service.subscribe`, the rules the public form follows. "Send a confirmation email" is double
opt-in even on a list without it (staff typing an address is no proof that its owner agreed); "confirmed" needs where
the consent was given and who vouches for it, both kept in the consent trail with the staff member's address. A
suppressed address is refused with its reason: staff may know why, the public never does.

Editing custom values is one function, so that typed field definitions can validate what it stores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.db import email_hash
from subscribers import fields
from subscribers.models import ConsentKind, ConsentSource, MailingList, Subscriber, Suppression, SuppressionReason
from subscribers.service import Notify, ServiceError, normalise_email, record_consent, subscribe


class ConsentOrigin(StrEnum):
    """Where someone added as confirmed gave their consent (stored in the consent event's detail)."""

    PAPER_FORM = "paper_form"
    EVENT = "event"
    IMPORTED_ELSEWHERE = "imported_elsewhere"
    VERBAL = "verbal"


ORIGIN_LABELS = {ConsentOrigin.PAPER_FORM: "a paper form", ConsentOrigin.EVENT: "at an event",
                 ConsentOrigin.IMPORTED_ELSEWHERE: "imported from another system",
                 ConsentOrigin.VERBAL: "asked in person or by phone"}
MAX_NAME = 200
MAX_VOUCHER = 200
MAX_ATTRIBUTES = 50
MAX_VALUE = 1000
ATTRIBUTE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # what a segment can name as fields.KEY


class Suppressed(ServiceError):
    """The address is on the suppression list; the message names the reason, for staff only."""


@dataclass
class AddResult:
    subscriber_id: int
    added: list[str] = field(default_factory=list)      # lists now pending or confirmed because of this add
    unchanged: list[str] = field(default_factory=list)  # lists they were already on (or just asked to confirm)
    notify: list[Notify] = field(default_factory=list)  # the caller enqueues these after its commit


def suppression_reason(session: Session, email: str) -> SuppressionReason | None:
    return session.scalar(select(Suppression.reason).where(Suppression.email_hash == email_hash(email)))


def add_subscriber(session: Session, lists: Sequence[MailingList], email: str, name: str = "", *, actor: str,
                   confirmed: bool, origin: ConsentOrigin | None = None, vouched_by: str = "") -> AddResult:
    """Subscribe one address to `lists` on a staff member's word; an existing subscriber keeps their one row."""
    if not lists:
        raise ServiceError("Choose at least one list.")
    address = normalise_email(email)
    _check_name(name)
    voucher = " ".join(vouched_by.split())
    extra: dict[str, str] = {"by": actor}
    note = ""
    if confirmed:
        if origin is None:
            raise ServiceError("Adding someone as confirmed needs where they gave their consent.")
        if not voucher:
            raise ServiceError("Adding someone as confirmed needs who vouches for their consent.")
        if len(voucher) > MAX_VOUCHER:
            raise ServiceError(f"Who vouched is longer than {MAX_VOUCHER} characters.")
        extra |= {"consent_source": origin.value, "vouched_by": voucher}
        note = f"{ORIGIN_LABELS[origin]}, vouched for by {voucher}"
    reason = suppression_reason(session, address)
    if reason is not None:
        raise Suppressed(f"{address} is suppressed ({reason.value.replace('_', ' ')}), so it cannot be added. "
                         "If the person asked to receive mail again, remove the suppression first.")
    result: AddResult | None = None
    for mailing_list in lists:
        outcome = subscribe(session, mailing_list, address, name, source=ConsentSource.ADMIN, confirmed=confirmed,
                            consent_note=note, ask_confirmation=not confirmed, extra=extra)
        assert outcome.subscription is not None  # not suppressed: checked above, in this transaction
        result = result or AddResult(outcome.subscription.subscriber_id)
        (result.added if outcome.changed else result.unchanged).append(mailing_list.name)
        result.notify += outcome.notify
    assert result is not None
    return result


def update_subscriber(session: Session, subscriber_id: int, *, name: str | None = None,
                      attributes: Mapping[str, str | None] | None = None, actor: str,
                      source: ConsentSource = ConsentSource.ADMIN) -> list[str]:
    """Change a subscriber's name and custom values; returns what changed (recorded with who did it).

    `attributes` is a merge: a key with a value sets it, a key with None or "" removes it, keys not named stay.
    A new key must be an identifier (what a segment can name); a key already on file, e.g. from a CSV column, may
    be changed or removed. A value equal to what is stored (as text) changes nothing, so a stored number stays one.
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.erased_at is not None:
        raise ServiceError("This subscriber no longer exists.")
    changed: list[str] = []
    if name is not None:
        clean = _check_name(name)
        if clean != subscriber.name:
            subscriber.name = clean
            changed.append("name")
    if attributes:
        values = dict(subscriber.attributes or {})
        defined = fields.definitions_by_name(session, [s.list_id for s in subscriber.subscriptions])
        for key, raw in attributes.items():
            value, known = (raw or "").strip(), key in values
            if not value:
                if known:
                    del values[key]
                    changed.append(f"fields.{key}")
                continue
            if key in defined:  # a field of one of their lists: stored typed, refused when it does not fit
                typed, *_others = [fields.coerce(definition, value) for definition in defined[key]]
                if not known or type(values[key]) is not type(typed) or values[key] != typed:
                    values[key] = typed
                    changed.append(f"fields.{key}")
                continue
            if known and str(values[key]) == value:
                continue
            if not known and not ATTRIBUTE_KEY.fullmatch(key):  # a key on file (a CSV column) stays editable
                raise ServiceError(f"'{key[:70]}' cannot be a field name: use letters, digits and _ (not first), "
                                   "at most 64 characters.")
            if len(value) > MAX_VALUE:
                raise ServiceError(f"The value of {key[:70]} is longer than {MAX_VALUE} characters.")
            values[key] = value
            changed.append(f"fields.{key}")
        if len(values) > MAX_ATTRIBUTES:
            raise ServiceError(f"A subscriber can have at most {MAX_ATTRIBUTES} fields.")
        subscriber.attributes = values  # a new dict: the JSON column sees the change
    if changed:
        record_consent(session, subscriber_id, None, ConsentKind.PREFERENCES, source=source,
                       detail={"changed": changed, "by": actor})
    return changed


def _check_name(name: str) -> str:
    clean = " ".join((name or "").split())
    if len(clean) > MAX_NAME:
        raise ServiceError(f"The name is longer than {MAX_NAME} characters.")
    return clean
