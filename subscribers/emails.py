"""The transactional emails of subscribing (confirm, welcome): one function each that builds the message.

They are rendered per recipient because each carries a signed link; they are one-offs, so the cost is irrelevant.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailer.batch import Content, Recipient
from mailer.i18n import translations
from mailer.placeholders import Key
from mailer.render import render_email
from mailer.settings import Settings, get_settings
from subscribers.models import MailingList, Subscriber, Subscription, SubscriptionStatus
from subscribers.service import NotificationKind
from subscribers.tokens import Purpose, link


class NotificationSkipped(Exception):
    """Nothing to send any more (the subscription changed since the notification was queued)."""


def build_notification(session: Session, kind: NotificationKind, subscription_id: int,
                       settings: Settings | None = None) -> tuple[Content, Recipient]:
    settings = settings or get_settings()
    subscription = session.get(Subscription, subscription_id)
    if subscription is None:
        raise NotificationSkipped(f"subscription {subscription_id} no longer exists")
    subscriber = session.get(Subscriber, subscription.subscriber_id)
    mailing_list = session.get(MailingList, subscription.list_id)
    assert subscriber is not None and mailing_list is not None
    if kind is NotificationKind.CONFIRM and subscription.status is not SubscriptionStatus.PENDING:
        raise NotificationSkipped("already confirmed or unsubscribed")
    if kind is NotificationKind.WELCOME and subscription.status is not SubscriptionStatus.CONFIRMED:
        raise NotificationSkipped("no longer subscribed")
    from_name, from_email, reply_to = mailing_list.sender(settings)
    unsubscribe_url = link(Purpose.UNSUBSCRIBE, subscriber.id, mailing_list.id, settings)
    preferences_url = link(Purpose.PREFERENCES, subscriber.id, None, settings)
    # The confirmation goes to an address nobody has vouched for yet, so it carries nothing a stranger typed into
    # the public form (a "name" could be a phishing pitch mailed to anyone): only staff-written text and our links.
    # The welcome follows the person's own confirmation, so it may greet them by the name on file.
    name = subscriber.name if kind is NotificationKind.WELCOME else ""
    audience = mailing_list.audience(settings)
    _ = translations(audience.lang).gettext
    context = {
        "name": name, "list_name": mailing_list.name, "description": mailing_list.description,
        "masthead": audience.brand.name or mailing_list.name, "valid_days": settings.confirm_token_max_age_days,
        "unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url,
        "greeting": _("Hi %(name)s,") % {"name": name or _("there")},
    }
    if kind is NotificationKind.CONFIRM:
        subject = _("Please confirm your subscription to %(list)s") % {"list": mailing_list.name}
        context |= {"confirm_url": link(Purpose.CONFIRM, subscriber.id, mailing_list.id, settings),
                    "preheader": _("One click and you're in."), "subject": subject}
    else:
        subject = _("Welcome to %(list)s") % {"list": mailing_list.name}
        context |= {"preheader": _("Thanks for confirming."), "subject": subject}
    rendered = render_email(kind, context, audience=audience, settings=settings)
    content = Content(subject=subject, html=rendered.html, text=rendered.text, from_email=from_email,
                      from_name=from_name, reply_to=reply_to, category=kind,
                      feedback_id=mailing_list.feedback_id(kind, settings))
    recipient = Recipient(email=subscriber.email, values={Key.NAME: name, Key.EMAIL: subscriber.email},
                          unsubscribe_url=unsubscribe_url if kind is NotificationKind.WELCOME else None)
    return content, recipient
