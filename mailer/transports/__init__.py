"""Transports hand a rendered batch to a mail system. The engine sees only the protocol in base.py."""

from __future__ import annotations

from mailer.settings import Settings, TransportName, get_settings
from mailer.transports.base import Transport


def get_transport(settings: Settings | None = None, name: str | None = None) -> Transport:
    """The configured transport (or the one named), built from Settings.

    Each transport module is imported only when chosen: the SendGrid client and the SMTP/DKIM stack cost every
    worker pool process memory, and a deployment uses one of them.
    """
    settings = settings or get_settings()
    chosen = TransportName(name or settings.transport)
    if chosen is TransportName.OUTBOX:
        from mailer.transports.outbox import OutboxTransport  # noqa: PLC0415 (loaded only when chosen)

        assert settings.outbox_dir is not None
        return OutboxTransport(settings.outbox_dir, settings.mail_domain)
    if chosen is TransportName.SMTP:
        from mailer.transports.smtp import SMTPTransport  # noqa: PLC0415 (loaded only when chosen)

        return SMTPTransport.from_settings(settings)
    from mailer.transports.sendgrid import SendGridTransport  # noqa: PLC0415 (loaded only when chosen)

    return SendGridTransport.from_settings(settings)
