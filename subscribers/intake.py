"""Many sign-ups from the public forms in one transaction: `service.subscribe` for its commonest case, in sets.

A sign-up form linked from a popular post takes hundreds of new addresses a second. One at a time, each costs
eight statements and a commit; here a whole group of concurrent sign-ups (newsletter/web/intake.py collects them)
costs five statements and one commit: which addresses are suppressed, the people (made if new), the existing ones,
the subscriptions, and their consent events.

Only the new subscription is done in sets: a person signing up to a list they have no subscription to yet. Anything
else (pending again, left and back, already confirmed) goes through `service.subscribe`, in the same transaction,
so the rules for those live in one place. The answer to the form is the same either way (no enumeration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailer.db import insert_new, table_of, utcnow
from subscribers import service
from subscribers.models import (
    ConsentKind,
    ConsentSource,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from subscribers.service import NotificationKind, Notify

# Core tables: many rows in one statement compiled once (mailer.db.insert_new); `.values([...])` compiled a new
# statement for every group (~4 ms each).
_SUBSCRIBERS = table_of(Subscriber)
_SUBSCRIPTIONS = table_of(Subscription)


@dataclass(frozen=True)
class SignUp:
    """One form post that passed its checks. `email` is normalised and checked for the list
    (`service.normalise_email`, `service.check_local_part`); `mailing_list` may be detached (read only)."""

    mailing_list: MailingList
    email: str
    name: str = ""
    ip: str | None = None
    user_agent: str | None = None
    consent_note: str = ""


@dataclass(frozen=True)
class SignedUp:
    notify: tuple[Notify, ...] = ()
    refused: bool = False  # suppressed: nothing was written, and the form answers as for anyone else


def signup_many(session: Session, signups: Sequence[SignUp]) -> list[SignedUp]:
    """Subscribe everyone who asked, as `service.subscribe` with source FORM would; a result per sign-up, in order.
    The caller commits, then sends what `notify` says."""
    results: list[SignedUp | None] = [None] * len(signups)
    refused = service.suppressed_among(session, {signup.email for signup in signups})
    todo = []
    for n, signup in enumerate(signups):
        if signup.email in refused:
            results[n] = SignedUp(refused=True)
        else:
            todo.append(n)
    people = _people(session, [signups[n] for n in todo])
    now = utcnow()
    wanted: dict[tuple[int, int], int] = {}
    for n in todo:
        wanted.setdefault((people[signups[n].email], signups[n].mailing_list.id), n)  # the first of a repeat
    made: dict[tuple[int, int], int] = {}
    for status in (SubscriptionStatus.PENDING, SubscriptionStatus.CONFIRMED):  # one INSERT for each that occurs
        keys = sorted(key for key, n in wanted.items()  # sorted: one lock order for every group
                      if (status is SubscriptionStatus.PENDING) == signups[n].mailing_list.double_opt_in)
        rows = insert_new(session, _SUBSCRIPTIONS,
                          {"subscriber_id": [key[0] for key in keys], "list_id": [key[1] for key in keys]},
                          {"status": status, "source": ConsentSource.FORM.value, "created_at": now, "welcome": True,
                           "confirmed_at": now if status is SubscriptionStatus.CONFIRMED else None},
                          conflict=["subscriber_id", "list_id"],
                          returning=[_SUBSCRIPTIONS.c.id, _SUBSCRIPTIONS.c.subscriber_id, _SUBSCRIPTIONS.c.list_id])
        made.update({(subscriber_id, list_id): subscription_id for subscription_id, subscriber_id, list_id in rows})
    events = []
    for key, subscription_id in made.items():
        signup = signups[wanted[key]]
        direct = not signup.mailing_list.double_opt_in
        detail = service.consent_detail(direct=direct, double_opt_in=signup.mailing_list.double_opt_in,
                                        consent_note=signup.consent_note)
        kinds = [ConsentKind.REQUESTED, ConsentKind.CONFIRMED] if direct else [ConsentKind.REQUESTED]
        events += [service.consent_values(key[0], key[1], kind, source=ConsentSource.FORM, ip=signup.ip,
                                          user_agent=signup.user_agent, detail=detail) for kind in kinds]
        notify = (service.welcome_notify(signup.mailing_list.welcome_enabled, subscription_id, ConsentSource.FORM)
                  if direct else [Notify(NotificationKind.CONFIRM, subscription_id)])
        results[wanted[key]] = SignedUp(tuple(notify))
    service.record_consents(session, events)
    for n in todo:
        if results[n] is None:  # a subscription that was there already (or a repeat in this group): the full rules
            signup = signups[n]
            outcome = service.subscribe(session, signup.mailing_list, signup.email, signup.name,
                                        source=ConsentSource.FORM, ip=signup.ip, user_agent=signup.user_agent,
                                        consent_note=signup.consent_note)
            results[n] = SignedUp(tuple(outcome.notify), refused=outcome.refused is not None)
    return [result if result is not None else SignedUp() for result in results]


def _people(session: Session, signups: Sequence[SignUp]) -> dict[str, int]:
    """{address: subscriber id}: made for new addresses (one INSERT), read for known ones (one SELECT). A known
    person without a name gets the one given now, as `service.subscribe` does."""
    names: dict[str, str] = {}
    for signup in signups:
        names.setdefault(signup.email, " ".join(signup.name.split())[:200])
    if not names:
        return {}
    ordered = sorted(names.items())
    people: dict[str, int] = {email: subscriber_id for email, subscriber_id in insert_new(
        session, _SUBSCRIBERS, {"email": [email for email, _ in ordered], "name": [name for _, name in ordered]},
        {"attributes": {}, "created_at": utcnow()}, conflict=["email"],
        returning=[_SUBSCRIBERS.c.email, _SUBSCRIBERS.c.id])}
    known = sorted(set(names) - set(people))
    if known:
        for subscriber_id, email, name in session.execute(
                select(Subscriber.id, Subscriber.email, Subscriber.name).where(Subscriber.email.in_(known))):
            people[email] = subscriber_id
            if names[email] and not name:
                session.execute(update(Subscriber).where(Subscriber.id == subscriber_id, Subscriber.name == "")
                                .values(name=names[email]).execution_options(synchronize_session=False))
    return people

