"""What a send says and to whom: the issue frozen onto the send, the batch's shared content, and each recipient's
values and signed links.

Split from the ledger engine (worker/campaigns.py): these functions touch no delivery rows, so a new per-recipient
value (a merge tag, a tracking token) is a change here and in mailer/placeholders.py, not in the claim/mark code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mailer import merge_tags
from mailer.batch import Content, Recipient
from mailer.i18n import DEFAULT_LANGUAGE, translations
from mailer.merge_tags import Slot
from mailer.models import IssueRecord
from mailer.placeholders import Key
from mailer.settings import Settings
from mailer.tracking import add_tracking
from mailer.verp import verp_address
from subscribers.models import MailingList
from subscribers.tokens import LinkMaker, Purpose, TrackTokens
from worker.models import Send

if TYPE_CHECKING:  # types only: importing mailer.render would load the render stack in every worker
    from mailer.issue import Issue
    from mailer.render import RenderedIssue


@dataclass(frozen=True)
class Row:
    """One claimed recipient as the batch re-read it: who, and whether they must be skipped now."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    reason: str | None  # why it must be skipped now, or None
    tracked: bool = True  # False: the subscriber opted out of open and click tracking
    fields: Mapping[str, Any] | None = None  # custom fields (`attributes`), read only when the send's tags use them

SAMPLE_NAME = "Sample Reader"  # the sample subscriber of `newsletter render` and of test sends


def freeze(send: Send, issue: IssueRecord, mailing_list: MailingList | None, settings: Settings) -> None:
    """Render the issue for its list (name, language, brand) onto the send: what every recipient gets. Done once,
    when the send is planned (from the issue as it is then), and for test sends and render's sample (a test send
    with no list: the service's own name, language and brand).
    """
    # Imported here: only the process that plans a send (or a test send) loads the render stack (mjml, premailer);
    # a worker that only sends batches never does.
    from mailer.issue import parse_issue  # noqa: PLC0415 (render stack: see above)
    from mailer.render import render_issue  # noqa: PLC0415 (render stack: see above)

    document = parse_issue(issue.source, issue.slug)
    audience = mailing_list.audience(settings) if mailing_list is not None else None
    freeze_rendered(send, document, render_issue(document, settings, force=True, audience=audience), mailing_list)


def freeze_rendered(send: Send, document: Issue, rendered: RenderedIssue, mailing_list: MailingList | None) -> None:
    send.subject, send.html, send.text = rendered.subject, rendered.html, rendered.text
    send.web_html = rendered.web_html  # before tracking rewrites html: the archive's links go where they say
    send.merge_tags = merge_tags.to_json(rendered.slots)
    send.language = document.lang or (mailing_list.language if mailing_list else None) or DEFAULT_LANGUAGE


def slots_of(send: Send) -> tuple[Slot, ...]:
    return merge_tags.from_json(send.merge_tags)


def content_for(send: Send, mailing_list: MailingList, settings: Settings) -> Content:
    from_name, from_email, reply_to = mailing_list.sender(settings)
    assert send.subject is not None and send.html is not None and send.text is not None
    return Content(subject=send.subject, html=send.html, text=send.text, from_email=from_email,
                   from_name=from_name, reply_to=reply_to, send_id=send.id,
                   list_id=f"{mailing_list.name} <{mailing_list.slug}.{settings.mail_domain}>",
                   feedback_id=mailing_list.feedback_id(f"send{send.id or 0}", settings))


def web_url(slug: str, list_slug: str, settings: Settings) -> str:
    """The address behind "View in your browser": the list's own archive copy, in the language and brand sent."""
    return f"{settings.base_url.rstrip('/')}/lists/{list_slug}/archive/{slug}"


def sample(send: Send, mailing_list: MailingList, slug: str, settings: Settings, *,
           email: str = "reader@example.com", name: str = SAMPLE_NAME) -> tuple[Content, Recipient]:
    """What a batch of this send would hand its transport for one subscriber, made by the calls a send makes
    (`newsletter render` writes its message.eml and filled email.html from it): the list's tracking applied as
    the plan applies it (engagement.freeze_links, without numbering links in the database), then the batch's
    recipient values and headers. Merge tags take the sample subscriber's values (merge_tags.sample_values).

    The send and the list need not be stored: ids that are None sign as 0, so the sample's links are well formed
    but open no real subscription.
    """
    clicks, opens = bool(mailing_list.track_clicks), bool(mailing_list.track_opens)
    tracked = (clicks or opens) and send.html is not None and send.text is not None
    if tracked:
        assert send.html is not None and send.text is not None
        rewritten = add_tracking(send.html, send.text, settings.base_url, clicks=clicks, opens=opens)
        send.html, send.text, send.track_clicks, send.track_opens = rewritten.html, rewritten.text, clicks, opens
    slots = slots_of(send)
    row = Row(delivery_id=0, subscriber_id=0, email=email, name=name, reason=None)
    page = web_url(slug, mailing_list.slug, settings)
    recipient = recipients_for([row], mailing_list.id or 0, page, settings, verp=False,
                               track_send_id=(send.id or 0) if tracked else None,
                               language=send.language or mailing_list.language or DEFAULT_LANGUAGE)[0]
    return content_for(send, mailing_list, settings), replace(recipient,
                                                              tags=merge_tags.sample_values(slots, name, email))


def sample_issue(document: Issue, mailing_list: MailingList, settings: Settings, *,
                 name: str = SAMPLE_NAME) -> tuple[Content, Recipient, RenderedIssue]:
    """One subscriber's copy of an issue (parsed, perhaps never saved) as `mailing_list` would be sent it: rendered
    for the list and frozen as a plan freezes it, then `sample`. What `newsletter render`/`check` and the admin's
    preview show, so a preview can never differ from a send (language, brand, tracking) by taking another path.
    """
    from mailer.render import render_issue  # noqa: PLC0415 (render stack: see freeze)

    send = Send()
    rendered = render_issue(document, settings, force=True, audience=mailing_list.audience(settings))
    freeze_rendered(send, document, rendered, mailing_list)
    content, recipient = sample(send, mailing_list, document.slug, settings, name=name)
    return content, recipient, rendered


def recipients_for(rows: Sequence[Row], list_id: int, web_url: str, settings: Settings, *,
                   verp: bool, track_send_id: int | None = None,
                   language: str = DEFAULT_LANGUAGE, slots: Sequence[Slot] = ()) -> list[Recipient]:
    """Each recipient's values and signed links; the signing keys are derived once for the batch.

    `track_send_id`: the send rewrote its links and pixel for tracking, so each message gets its tracking token.
    `language`: the send's, for the name of a subscriber who gave none ("Hi there,").
    `slots`: the send's merge tags; each recipient gets a value per slot (its default when the subscriber has none).
    """
    nameless = translations(language).gettext("there")
    track = TrackTokens(settings) if track_send_id is not None else None
    unsubscribe_link = LinkMaker(Purpose.UNSUBSCRIBE, settings)
    preferences_link = LinkMaker(Purpose.PREFERENCES, settings)
    mailto = settings.unsubscribe_mailto
    recipients = []
    for row in rows:
        unsubscribe_url = unsubscribe_link(row.subscriber_id, list_id)
        values = {Key.NAME: row.name or nameless, Key.EMAIL: row.email, Key.UNSUBSCRIBE_URL: unsubscribe_url,
                  Key.PREFERENCES_URL: preferences_link(row.subscriber_id), Key.WEB_URL: web_url}
        if track is not None and track_send_id is not None:
            values[Key.TRACK] = track(track_send_id, row.delivery_id, row.tracked)
        recipients.append(Recipient(
            email=row.email, delivery_id=row.delivery_id, unsubscribe_url=unsubscribe_url, unsubscribe_mailto=mailto,
            return_path=verp_address(row.delivery_id, settings) if verp else None, values=values,
            tags=merge_tags.values_for(slots, row.name, row.email, row.fields) if slots else ()))
    return recipients
