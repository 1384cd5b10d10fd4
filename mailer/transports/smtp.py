"""SMTP: one connection per batch, a VERP return path per recipient, optional DKIM signature.

The transactions are pipelined when the server allows it (mailer.transports.smtp_session). Outcomes per recipient
follow the reply codes: 5xx means this address failed (not retried), 4xx means later. A dropped connection is
reconnected once; after that the rest of the batch is handed back as retryable.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Callable, Sequence

from mailer.addresses import wire_address
from mailer.batch import Content, Recipient, Result, TransportError
from mailer.dkim_signing import DkimKeyError, DkimSigner, signer_from_settings
from mailer.message import encode_message
from mailer.settings import Settings
from mailer.transports.smtp_session import NO_SMTPUTF8, ConnectionLost, Envelope, Outcome, send_messages


class SMTPTransport:
    name = "smtp"
    max_batch = 1000

    def __init__(self, host: str, port: int, *, security: str = "none", user: str | None = None,
                 password: str | None = None, timeout_s: float = 30.0, message_id_domain: str,
                 default_return_path: str, dkim: DkimSigner | None = None) -> None:
        self.host, self.port, self.security = host, port, security
        self.user, self.password, self.timeout_s = user, password, timeout_s
        self.message_id_domain = message_id_domain
        self.default_return_path = default_return_path
        self.dkim = dkim
        self._connection: smtplib.SMTP | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPTransport:
        try:
            dkim = signer_from_settings(settings)
        except DkimKeyError as exc:  # fatal: the send pauses with this reason rather than going out unsigned
            raise TransportError(str(exc), fatal=True) from exc
        return cls(settings.smtp_host, settings.smtp_port, security=settings.smtp_security, user=settings.smtp_user,
                   password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                   timeout_s=settings.smtp_timeout_s, message_id_domain=settings.mail_domain,
                   default_return_path=settings.from_email, dkim=dkim)

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
        try:
            if self.security == "ssl":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                                            context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
                if self.security == "starttls":
                    connection.starttls(context=ssl.create_default_context())
            if self.user:
                connection.login(self.user, self.password or "")
            connection.ehlo_or_helo_if_needed()  # the session asks which extensions (PIPELINING) it may use
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}", fatal=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(f"SMTP connection to {self.host}:{self.port} failed: {exc}", retryable=True) from exc
        self._connection = connection
        return connection

    def send(self, content: Content, recipients: Sequence[Recipient]) -> list[Result]:
        results: list[Result] = []
        reconnected = False
        while len(results) < len(recipients):
            rest = recipients[len(results):]
            message_ids: dict[int, str] = {}
            envelopes = [Envelope(wire_address(r.return_path or self.default_return_path), wire_address(r.email))
                         for r in rest]
            try:
                outcomes = send_messages(self._connect(), envelopes, self._builder(content, rest, message_ids))
            except TransportError as exc:  # could not (re)connect
                if not results or exc.fatal:
                    raise
                return results + _later(rest, str(exc))
            except ConnectionLost as exc:
                self._drop()
                results += _results(rest, exc.outcomes, message_ids)
                if reconnected:
                    if not results:
                        raise TransportError(str(exc), retryable=True) from exc
                    return results + _later(recipients[len(results):], str(exc))
                reconnected = True  # the message in flight is tried once more, on a fresh connection
                continue
            results += _results(rest, outcomes, message_ids)
        return results

    def _builder(self, content: Content, recipients: Sequence[Recipient],
                 message_ids: dict[int, str]) -> Callable[[int], bytes]:
        """Builds recipient i's signed message when the session needs it, noting its Message-ID."""
        def build(index: int) -> bytes:
            raw, message_ids[index] = encode_message(content, recipients[index],
                                                     message_id_domain=self.message_id_domain, dkim=self.dkim)
            return raw

        return build

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._connection.quit()
            self._drop()


def _results(recipients: Sequence[Recipient], outcomes: Sequence[Outcome],
             message_ids: dict[int, str]) -> list[Result]:
    """One Result per outcome: 250 is sent, 4xx is "try later", anything else is final for that address."""
    results = []
    for index, (recipient, outcome) in enumerate(zip(recipients, outcomes, strict=False)):
        if outcome.accepted:
            results.append(Result(recipient, ok=True, message_id=message_ids.get(index), answered=True))
        else:
            permanent = outcome.code >= 500 and outcome != NO_SMTPUTF8  # that one is our own refusal
            results.append(Result(recipient, ok=False, retryable=400 <= outcome.code < 500,
                                  error=f"{outcome.code} {outcome.reply}".strip(), answered=permanent,
                                  refused_address=permanent and outcome.stage == "rcpt"))
    return results


def _later(recipients: Sequence[Recipient], reason: str) -> list[Result]:
    return [Result(r, ok=False, retryable=True, error=f"connection lost: {reason}") for r in recipients]
