"""What one batch of mail is made of, and what comes back: the values shared by the MIME builder and the transports.

A batch is one rendered Content (subject, HTML and text with placeholders, sender identity) and up to a transport's
``max_batch`` Recipients, each with its own substitution values. SendGrid sends the batch in one API call with
substitutions; SMTP and the outbox build each recipient's MIME message with mailer.message. These types live apart
from both so that neither imports the other for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mailer.placeholders import Key


@dataclass(frozen=True)
class Content:
    subject: str
    html: str
    text: str
    from_email: str
    from_name: str = ""
    reply_to: str | None = None
    list_id: str | None = None  # List-Id header value, e.g. "Digital Digest <weekly.lists.example.com>"
    send_id: int | None = None
    category: str = "newsletter"
    feedback_id: str | None = None  # Feedback-ID header (Gmail's feedback loop): "campaign:list:sender"


@dataclass(frozen=True)
class Recipient:
    email: str
    values: Mapping[Key, str]  # filled into the placeholders (name, unsubscribe URL, ...)
    delivery_id: int | None = None
    unsubscribe_url: str | None = None  # RFC 8058 one-click target (https)
    unsubscribe_mailto: str | None = None
    return_path: str | None = None  # SMTP envelope sender; VERP address for bounces
    headers: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()  # the send's merge-tag values for this recipient, in slot order (mailer/merge_tags.py)


@dataclass(frozen=True)
class Result:
    """What happened to one recipient. ``retryable`` means "try again later", not "this address is bad"."""

    recipient: Recipient
    ok: bool
    message_id: str | None = None
    error: str | None = None
    retryable: bool = False
    # The receiving SMTP server refused this address for good at RCPT (e.g. "550 5.1.1 user unknown"): the same
    # evidence as a hard-bounce DSN, and handled by the same policy.
    refused_address: bool = False
    answered: bool = False  # the receiving SMTP server gave this recipient a final answer (accepted or refused)


class TransportError(Exception):
    """The whole batch failed. ``retryable`` asks for a later retry; ``fatal`` means stop the send (bad credentials)."""

    def __init__(self, message: str, *, retryable: bool = False, fatal: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.fatal = fatal
        self.retry_after = retry_after
