"""The rules of consent: who is subscribed to what, how they got there, and how they leave.

Every function takes the caller's session and never commits, so a web request or a task decides the transaction.
Functions that imply an email (confirmation, welcome) return it as a Notify instead of sending it: this package
never imports the worker, and the caller enqueues after its commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import any_, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from mailer.addresses import mixes_scripts
from mailer.db import as_utc, email_hash, insert_many, rowcount, table_of, upsert_insert, utcnow
from mailer.settings import get_settings
from subscribers.models import (
    ConsentEvent,
    ConsentKind,
    ConsentSource,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)


class InvalidEmail(ValueError):
    """The address cannot receive mail; the message is safe to show to the person who typed it."""


class ServiceError(ValueError):
    """A request that the rules refuse, with a message for the person who asked."""


class NotificationKind(StrEnum):
    CONFIRM = "confirm"
    WELCOME = "welcome"


class Refusal(StrEnum):
    """Why a request changed nothing; for staff and logs, never shown to the public (no enumeration)."""

    SUPPRESSED = "suppressed"


class NotSubscribed(ServiceError):
    """The person never had a subscription to that list (or the list does not exist): nothing to resume."""


@dataclass(frozen=True)
class Notify:
    kind: NotificationKind
    subscription_id: int


@dataclass
class Outcome:
    subscription: Subscription | None
    notify: list[Notify] = field(default_factory=list)
    changed: bool = False
    refused: Refusal | None = None


# Plain ASCII addresses that email-validator always accepts unchanged (dot-atom local part, LDH domain labels, an
# alphabetic TLD). They skip the full validator, which costs ~70 µs and dominates a million-row import.
_SIMPLE_EMAIL = re.compile(
    r"(?=[^@]{1,64}@)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


# A pending sign-up repeated within this time sends no second confirmation (double clicks, replays, a form posted
# 100 times at once); later, it asks again, for the person whose first email got lost.
REQUEST_AGAIN_AFTER = timedelta(minutes=2)
_SPECIAL_USE_TLDS = {"arpa", "invalid", "local", "localhost", "onion", "test"}  # refused by email-validator


def normalise_email(raw: str, *, check_deliverability: bool | None = None) -> str:
    """Validate and normalise: trimmed, Unicode-normalised, lower-cased (mailboxes are case-insensitive in practice)."""
    if check_deliverability is None:
        check_deliverability = get_settings().check_deliverability
    candidate = (raw or "").strip()
    if not check_deliverability:
        lowered = candidate.lower()
        if (_SIMPLE_EMAIL.fullmatch(lowered) and ".." not in lowered and "xn--" not in lowered
                and lowered.rpartition(".")[2] not in _SPECIAL_USE_TLDS):
            return lowered
    if not candidate:
        raise InvalidEmail("Please enter an email address.")
    if len(candidate) > 320:
        raise InvalidEmail("That email address is too long.")
    try:
        info = validate_email(candidate, check_deliverability=check_deliverability)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    return info.normalized.lower()


def check_local_part(address: str, allow_international: bool) -> None:
    """Refuse a look-alike address (a local part that mixes scripts) unless the list allows international ones."""
    if not allow_international and mixes_scripts(address.rpartition("@")[0]):
        raise InvalidEmail("This address mixes letters of different alphabets (like a Cyrillic \"a\" among Latin "
                           "letters), which is how look-alikes of other addresses are made. Please check it.")


# Consent trail ------------------------------------------------------------------------------------------------

def record_consents(session: Session, events: list[dict[str, Any]]) -> None:
    """Many consent events (of `consent_values`) in one statement: a group of sign-ups, confirmations, leavers."""
    if events:
        insert_many(session, table_of(ConsentEvent), _CONSENT_COLUMNS, [tuple(event[name] for name in
                                                                               _CONSENT_COLUMNS) for event in events])


_CONSENT_COLUMNS = ("subscriber_id", "list_id", "kind", "source", "ip", "user_agent", "detail", "provider_event_id",
                    "at")


def consent_values(subscriber_id: int | None, list_id: int | None, kind: ConsentKind, *, source: ConsentSource,
                   ip: str | None = None, user_agent: str | None = None, detail: Mapping[str, Any] | None = None,
                   provider_event_id: int | None = None) -> dict[str, Any]:
    """One consent event's columns: for an INSERT of many at once, and for `record_consent`."""
    return {"subscriber_id": subscriber_id, "list_id": list_id, "kind": kind, "source": source,
            "ip": ip.replace("\x00", "")[:64] if ip else None,  # request values: a NUL would fail the whole group
            "user_agent": user_agent.replace("\x00", "")[:500] if user_agent else None, "detail": dict(detail or {}),
            "provider_event_id": provider_event_id, "at": utcnow()}


def record_consent(session: Session, subscriber_id: int | None, list_id: int | None, kind: ConsentKind, *,
                   source: ConsentSource, ip: str | None = None, user_agent: str | None = None,
                   detail: Mapping[str, Any] | None = None, provider_event_id: int | None = None) -> ConsentEvent:
    event = ConsentEvent(**consent_values(subscriber_id, list_id, kind, source=source, ip=ip, user_agent=user_agent,
                                          detail=detail, provider_event_id=provider_event_id))
    session.add(event)
    return event


# Suppressions -------------------------------------------------------------------------------------------------

def is_suppressed(session: Session, email: str) -> bool:
    return session.scalar(select(Suppression.id).where(Suppression.email_hash == email_hash(email))) is not None


def suppressed_among(session: Session, emails: Iterable[str]) -> set[str]:
    """Which of these normalised addresses are suppressed, in one query (an import chunk, a send batch).

    Matched on the hash, as every suppression is: one whose address was blanked by erasure still counts. On
    PostgreSQL the hashes travel as one text split on the server, cheaper for the driver than an array of
    thousands of strings (hex digits never contain the separator).
    """
    by_hash = {email_hash(email): email for email in emails}
    if not by_hash:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        wanted = Suppression.email_hash == any_(func.string_to_array(bindparam(None, " ".join(by_hash)), " "))
    else:
        wanted = Suppression.email_hash.in_(list(by_hash))
    return {by_hash[digest] for digest in session.scalars(select(Suppression.email_hash).where(wanted))}


def suppress(session: Session, email: str, reason: SuppressionReason, *, source: ConsentSource, note: str = "",
             provider_event_id: int | None = None) -> Suppression:
    """Idempotent: an address already suppressed keeps its first reason (the earliest evidence)."""
    digest = email_hash(email)
    existing = session.scalar(select(Suppression).where(Suppression.email_hash == digest))
    if existing is not None:
        return existing
    suppression = Suppression(email_hash=digest, email=email, reason=reason, note=note[:500],
                              provider_event_id=provider_event_id)
    session.add(suppression)
    subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == email))
    if subscriber_id is not None:
        record_consent(session, subscriber_id, None, ConsentKind.SUPPRESSED, source=source,
                       detail={"reason": reason.value, "note": note}, provider_event_id=provider_event_id)
    session.flush()
    return suppression


def unsuppress(session: Session, email: str, *, source: ConsentSource, note: str = "") -> bool:
    digest = email_hash(email)
    removed = rowcount(session.execute(delete(Suppression).where(Suppression.email_hash == digest)))
    if removed:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == email))
        record_consent(session, subscriber_id, None, ConsentKind.UNSUPPRESSED, source=source, detail={"note": note})
    return bool(removed)


# Subscribing --------------------------------------------------------------------------------------------------

def _insert_new(session: Session, model: type[Subscriber] | type[Subscription], keys: list[str],
                **values: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING the row: the new ORM object, or None when the row exists (made
    by a concurrent request too: PostgreSQL waits for its commit, then does nothing). One statement where a
    savepoint took three round trips (SAVEPOINT, INSERT, RELEASE)."""
    statement = upsert_insert(session)(model).values(**values)
    return session.scalar(statement.on_conflict_do_nothing(index_elements=keys).returning(model))


def _subscriber_for(session: Session, email: str, name: str) -> tuple[Subscriber, bool]:
    """The person with this (normalised) address, made if new; and whether it was made now. The insert comes
    first: most sign-ups are of addresses not seen before."""
    created = _insert_new(session, Subscriber, ["email"], email=email, name=name, attributes={},
                          created_at=utcnow())
    if created is not None:
        return created, True
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
    assert subscriber is not None
    if name and not subscriber.name:
        subscriber.name = name
    return subscriber, False


def consent_detail(*, direct: bool, double_opt_in: bool, consent_note: str = "",
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a sign-up's consent events keep: the note on where they agreed, and whether they were asked to confirm."""
    detail: dict[str, Any] = {"note": consent_note} if consent_note else {}
    detail.update(extra or {})
    if not direct:
        detail["double_opt_in"] = True
    elif not double_opt_in:
        detail["double_opt_in"] = False  # the list explicitly does not ask for confirmation
    return detail


def subscribe(session: Session, mailing_list: MailingList, email: str, name: str = "", *, source: ConsentSource,
              ip: str | None = None, user_agent: str | None = None, confirmed: bool = False,
              consent_note: str = "", override_suppression: bool = False, ask_confirmation: bool = False,
              extra: Mapping[str, Any] | None = None, welcome: bool | None = None) -> Outcome:
    """Start (or restart) a subscription. `confirmed` is for consent obtained elsewhere and must say where.

    `ask_confirmation` sends the confirmation email even on a list without double opt-in: staff adding someone by
    hand have no proof of consent unless the person confirms. `extra` goes into the consent events' detail (who did
    it, on whose word). `welcome`: whether the list's welcome series mails this person once confirmed; by default
    yes, except for an import (a CSV import opts in explicitly, see importer.import_csv).
    """
    if welcome is None:
        welcome = source is not ConsentSource.IMPORT
    address = normalise_email(email)
    check_local_part(address, mailing_list.allow_international)
    name = " ".join((name or "").split())[:200]
    if confirmed and source in (ConsentSource.IMPORT, ConsentSource.ADMIN, ConsentSource.API) and not consent_note:
        raise ServiceError("Adding someone as confirmed needs a consent source (where and when they agreed).")
    if is_suppressed(session, address):
        if not override_suppression:
            return Outcome(None, refused=Refusal.SUPPRESSED)
        unsuppress(session, address, source=source, note=f"override: {consent_note}")
    direct = confirmed or not (mailing_list.double_opt_in or ask_confirmation)
    subscriber, new_person = _subscriber_for(session, address, name)
    # Someone made in this transaction has no subscription yet (no other transaction can see them to add one).
    subscription = None if new_person else _subscription(session, subscriber.id, mailing_list.id)
    now = utcnow()
    detail = consent_detail(direct=direct, double_opt_in=mailing_list.double_opt_in, consent_note=consent_note,
                            extra=extra)

    def event(kind: ConsentKind) -> None:
        record_consent(session, subscriber.id, mailing_list.id, kind, source=source, ip=ip, user_agent=user_agent,
                       detail=detail)

    if subscription is None:
        status = SubscriptionStatus.CONFIRMED if direct else SubscriptionStatus.PENDING
        created = _insert_new(session, Subscription, ["subscriber_id", "list_id"], subscriber_id=subscriber.id,
                              list_id=mailing_list.id, status=status, source=source.value, created_at=now,
                              confirmed_at=now if direct else None, welcome=welcome)
        if created is None:  # the same address signed up in a concurrent request: theirs is the first
            subscription = _subscription(session, subscriber.id, mailing_list.id)
            assert subscription is not None
            return Outcome(subscription)
        event(ConsentKind.IMPORTED if source is ConsentSource.IMPORT else ConsentKind.REQUESTED)
        if direct:
            event(ConsentKind.CONFIRMED)
            return Outcome(created, _welcome(mailing_list, created, source), changed=True)
        return Outcome(created, [Notify(NotificationKind.CONFIRM, created.id)], changed=True)

    # Lock the row: concurrent sign-ups of one address then take turns, and the later ones see what the first did.
    session.refresh(subscription, with_for_update=True)
    if subscription.status is SubscriptionStatus.CONFIRMED:
        return Outcome(subscription)
    if (not direct and subscription.status is SubscriptionStatus.PENDING and subscription.created_at is not None
            and as_utc(subscription.created_at) > now - REQUEST_AGAIN_AFTER):
        return Outcome(subscription)  # a confirmation just went out: a double click or a replay gets no second one
    subscription.welcome = welcome  # the newest sign-up decides
    if direct:
        was = subscription.status
        subscription.status, subscription.confirmed_at, subscription.unsubscribed_at = (
            SubscriptionStatus.CONFIRMED, now, None)
        event(ConsentKind.RESUBSCRIBED if was is SubscriptionStatus.UNSUBSCRIBED else ConsentKind.CONFIRMED)
        return Outcome(subscription, _welcome(mailing_list, subscription, source), changed=True)
    # Pending again (or still): ask for confirmation again. Someone who left must opt in again, by email.
    if subscription.status is SubscriptionStatus.UNSUBSCRIBED:
        subscription.status, subscription.unsubscribed_at = SubscriptionStatus.PENDING, None
    subscription.created_at = now
    event(ConsentKind.REQUESTED)
    return Outcome(subscription, [Notify(NotificationKind.CONFIRM, subscription.id)], changed=True)



def _welcome(mailing_list: MailingList, subscription: Subscription, source: ConsentSource) -> list[Notify]:
    return welcome_notify(mailing_list.welcome_enabled, subscription.id, source)


def welcome_notify(welcome_enabled: bool, subscription_id: int, source: ConsentSource) -> list[Notify]:
    # Only people who signed up themselves are welcomed; an import must not mail a whole list out of the blue.
    if welcome_enabled and source is ConsentSource.FORM:
        return [Notify(NotificationKind.WELCOME, subscription_id)]
    return []


def _subscription(session: Session, subscriber_id: int, list_id: int) -> Subscription | None:
    return session.scalar(select(Subscription).where(Subscription.subscriber_id == subscriber_id,
                                                     Subscription.list_id == list_id))


@dataclass(frozen=True)
class Confirmation:
    """Someone pressing the button of their confirmation email, with where the request came from."""

    subscriber_id: int
    list_id: int
    ip: str | None = None
    user_agent: str | None = None


class Confirmed(StrEnum):
    NOW = "now"              # pending until this request
    ALREADY = "already"      # confirmed before (a second click, a mail scanner, a link from before an unsubscribe)
    REFUSED = "refused"      # the address is suppressed: it stays pending, nothing is sent
    GONE = "gone"            # no such subscription any more (purged, or never made)
    NOBODY = "nobody"        # the person is gone or erased: the link is not valid


@dataclass(frozen=True)
class ConfirmResult:
    state: Confirmed
    email: str = ""
    notify: tuple[Notify, ...] = ()


def confirm_many(session: Session, requests: Sequence[Confirmation]) -> list[ConfirmResult]:
    """Confirm many pending subscriptions in four statements, whatever their number (a crowd of confirmation clicks
    is written by one transaction, see newsletter/web/intake.py). A result per request, in order.

    Only while still pending, in the UPDATE itself: two clicks of one link at the same moment (a mail client's
    prefetch and the person) both read "pending", and only one may confirm (one consent record, one welcome email).
    The database settles it: the later UPDATE finds the row confirmed."""
    pairs = {(r.subscriber_id, r.list_id) for r in requests}
    if not pairs:
        return []
    rows = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.erased_at, Subscription.id, Subscription.list_id,
               Subscription.status, MailingList.welcome_enabled)
        .outerjoin(Subscription, (Subscription.subscriber_id == Subscriber.id)
                   & tuple_(Subscription.subscriber_id, Subscription.list_id).in_(sorted(pairs)))
        .outerjoin(MailingList, MailingList.id == Subscription.list_id)
        .where(Subscriber.id.in_({r.subscriber_id for r in requests}))).all()
    people = {row[0]: (row[1], row[2]) for row in rows}
    found = {(row[0], row[4]): (row[3], row[5], bool(row[6])) for row in rows if row[3] is not None}
    pending = {key: value for key, value in found.items() if value[1] is SubscriptionStatus.PENDING}
    refused = suppressed_among(session, {people[sid][0] for sid, _ in pending})
    eligible = {key: value for key, value in pending.items() if people[key[0]][0] not in refused}
    moved: set[int] = set()
    if eligible:
        moved = set(session.scalars(
            update(Subscription).where(Subscription.id.in_([value[0] for value in eligible.values()]),
                                       Subscription.status == SubscriptionStatus.PENDING)
            .values(status=SubscriptionStatus.CONFIRMED, confirmed_at=utcnow())
            .returning(Subscription.id).execution_options(synchronize_session="fetch")))
    results: list[ConfirmResult] = []
    events: list[dict[str, Any]] = []
    for request in requests:
        key = (request.subscriber_id, request.list_id)
        email, erased_at = people.get(request.subscriber_id, ("", None))
        if request.subscriber_id not in people or erased_at is not None:
            results.append(ConfirmResult(Confirmed.NOBODY))
        elif key not in found:
            results.append(ConfirmResult(Confirmed.GONE, email))
        elif found[key][0] in moved:
            moved.discard(found[key][0])  # the same link twice in one batch: the first request confirms
            subscription_id, _, welcome_enabled = found[key]
            events.append(consent_values(*key, ConsentKind.CONFIRMED, source=ConsentSource.FORM, ip=request.ip,
                                         user_agent=request.user_agent, detail={"double_opt_in": True}))
            results.append(ConfirmResult(Confirmed.NOW, email, tuple(
                welcome_notify(welcome_enabled, subscription_id, ConsentSource.FORM))))
        elif key in pending and email in refused:
            results.append(ConfirmResult(Confirmed.REFUSED, email))
        else:
            results.append(ConfirmResult(Confirmed.ALREADY, email))
    record_consents(session, events)
    return results


def confirm(session: Session, subscriber_id: int, list_id: int, *, ip: str | None = None,
            user_agent: str | None = None) -> Outcome:
    """Idempotent: confirming twice is fine; a link from before an unsubscribe does not undo it."""
    result = confirm_many(session, [Confirmation(subscriber_id, list_id, ip, user_agent)])[0]
    subscription = _subscription(session, subscriber_id, list_id)
    if subscription is None or result.state is Confirmed.GONE:
        raise ServiceError("This subscription no longer exists. Please sign up again.")
    if result.state in (Confirmed.REFUSED, Confirmed.NOBODY):
        return Outcome(subscription, refused=Refusal.SUPPRESSED)
    return Outcome(subscription, list(result.notify), changed=result.state is Confirmed.NOW)


@dataclass(frozen=True)
class Leave:
    """One request to leave a list (or, with no list, every list), and what the consent trail keeps of it."""

    subscriber_id: int
    list_id: int | None
    ip: str | None = None
    user_agent: str | None = None
    detail: Mapping[str, Any] | None = None
    provider_event_id: int | None = None


def unsubscribe_many(session: Session, leaves: Sequence[Leave], *, source: ConsentSource) -> list[int]:
    """Many people leaving at once, in two statements whatever their number (a crowd of one-click unsubscribes, or
    a mailbox provider replaying them, is written by one transaction, see newsletter/web/intake.py). Idempotent;
    returns how many subscriptions each request ended, in order.

    An erased person is left alone (erasure already ended every subscription), so callers holding only an id from a
    link need not read the person first."""
    if not leaves:
        return []
    everywhere = {leave.subscriber_id: n for n, leave in enumerate(leaves) if leave.list_id is None}
    one_list = {(leave.subscriber_id, leave.list_id): n for n, leave in enumerate(leaves) if leave.list_id is not None}
    which = []
    if everywhere:
        which.append(Subscription.subscriber_id.in_(sorted(everywhere)))
    if one_list:
        which.append(tuple_(Subscription.subscriber_id, Subscription.list_id).in_(sorted(one_list)))
    living = select(Subscriber.id).where(Subscriber.id.in_({leave.subscriber_id for leave in leaves}),
                                         Subscriber.erased_at.is_(None))
    ended = session.execute(
        update(Subscription).where(Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
                                   Subscription.subscriber_id.in_(living), or_(*which))
        .values(status=SubscriptionStatus.UNSUBSCRIBED, unsubscribed_at=utcnow())
        .returning(Subscription.subscriber_id, Subscription.list_id)
        .execution_options(synchronize_session="fetch")).all()
    changed = [0] * len(leaves)
    events = []
    for subscriber_id, list_id in ended:
        n = one_list.get((subscriber_id, list_id), everywhere.get(subscriber_id))
        assert n is not None
        leave = leaves[n]
        changed[n] += 1
        events.append(consent_values(subscriber_id, list_id, ConsentKind.UNSUBSCRIBED, source=source, ip=leave.ip,
                                     user_agent=leave.user_agent, detail=leave.detail,
                                     provider_event_id=leave.provider_event_id))
    record_consents(session, events)
    return changed


def unsubscribe(session: Session, subscriber_id: int, list_id: int | None, *, source: ConsentSource,
                ip: str | None = None, user_agent: str | None = None, detail: Mapping[str, Any] | None = None,
                provider_event_id: int | None = None) -> int:
    """Leave one list (or every list when list_id is None). Idempotent; returns how many subscriptions changed."""
    return unsubscribe_many(session, [Leave(subscriber_id, list_id, ip, user_agent, detail, provider_event_id)],
                            source=source)[0]


def resubscribe(session: Session, subscriber_id: int, list_id: int, *, source: ConsentSource,
                ip: str | None = None, user_agent: str | None = None, provider_event_id: int | None = None,
                detail: Mapping[str, Any] | None = None) -> Outcome:
    """The subscriber's own request through a signed link: the link proves the mailbox, so no new confirmation.

    Only a list the person already had (pending, confirmed or left) can be resumed: the link proves who they are,
    not that they ever asked for some other list, so a forged ``list_id`` must not create consent out of nothing.
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.erased_at is not None:
        raise ServiceError("This subscription no longer exists.")
    subscription = _subscription(session, subscriber_id, list_id)
    if subscription is None:
        raise NotSubscribed("You were never subscribed to that list.")
    if is_suppressed(session, subscriber.email):
        return Outcome(None, refused=Refusal.SUPPRESSED)
    now = utcnow()
    if subscription.status is SubscriptionStatus.CONFIRMED:
        return Outcome(subscription)
    else:
        subscription.status, subscription.confirmed_at, subscription.unsubscribed_at = (
            SubscriptionStatus.CONFIRMED, now, None)
    session.flush()
    record_consent(session, subscriber_id, list_id, ConsentKind.RESUBSCRIBED, source=source, ip=ip,
                   user_agent=user_agent, detail=detail, provider_event_id=provider_event_id)
    return Outcome(subscription, changed=True)


def update_preferences(session: Session, subscriber_id: int, *, name: str | None = None,
                       tracking: bool | None = None, source: ConsentSource = ConsentSource.FORM,
                       ip: str | None = None, user_agent: str | None = None) -> Subscriber:
    """Change what the person may change about themselves; each change is recorded in the consent trail."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.erased_at is not None:
        raise ServiceError("This subscriber no longer exists.")
    if name is not None:
        clean = " ".join(name.split())[:200]
        if clean != subscriber.name:
            subscriber.name = clean
            record_consent(session, subscriber_id, None, ConsentKind.PREFERENCES, source=source, ip=ip,
                           user_agent=user_agent, detail={"changed": ["name"]})
    if tracking is not None and tracking == subscriber.tracking_opt_out:
        subscriber.tracking_opt_out = not tracking
        record_consent(session, subscriber_id, None, ConsentKind.PREFERENCES, source=source, ip=ip,
                       user_agent=user_agent, detail={"changed": ["tracking"], "tracking": tracking})
    return subscriber
