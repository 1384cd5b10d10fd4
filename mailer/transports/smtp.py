"""SMTP: one connection per batch, a VERP return path per recipient, optional DKIM signature.

Outcomes per recipient follow the reply codes: 5xx means this address failed (not retried), 4xx means later.
A dropped connection is reconnected once; after that the rest of the batch is handed back as retryable.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Sequence
from pathlib import Path

from mailer.message import encode_message
from mailer.settings import Settings
from mailer.transports.base import Content, Recipient, Result, TransportError


class SMTPTransport:
    name = "smtp"
    max_batch = 1000

    def __init__(self, host: str, port: int, *, security: str = "none", user: str | None = None,
                 password: str | None = None, timeout_s: float = 30.0, message_id_domain: str,
                 default_return_path: str, dkim: tuple[bytes, bytes, bytes] | None = None) -> None:
        self.host, self.port, self.security = host, port, security
        self.user, self.password, self.timeout_s = user, password, timeout_s
        self.message_id_domain = message_id_domain
        self.default_return_path = default_return_path
        self.dkim = dkim  # (selector, domain, private key PEM)
        self._connection: smtplib.SMTP | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPTransport:
        dkim = None
        if settings.dkim_selector and settings.dkim_domain and settings.dkim_private_key_path:
            dkim = (settings.dkim_selector.encode(), settings.dkim_domain.encode(),
                    Path(settings.dkim_private_key_path).read_bytes())
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
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}", fatal=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(f"SMTP connection to {self.host}:{self.port} failed: {exc}", retryable=True) from exc
        self._connection = connection
        return connection

    def _sign(self, data: bytes) -> bytes:
        if self.dkim is None:
            return data
        import dkim

        selector, domain, key = self.dkim
        signature = dkim.sign(data, selector, domain, key,
                              include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"list-id",
                                               b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version",
                                               b"content-type"])
        return signature + data

    def send(self, content: Content, recipients: Sequence[Recipient]) -> list[Result]:
        results: list[Result] = []
        reconnected = False
        index = 0
        while index < len(recipients):
            recipient = recipients[index]
            raw, message_id = encode_message(content, recipient, message_id_domain=self.message_id_domain)
            data = self._sign(raw)
            try:
                connection = self._connect()
                refused = connection.sendmail(recipient.return_path or self.default_return_path,
                                              [recipient.email], data)
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = exc.recipients.get(recipient.email, (550, b"refused"))
                results.append(_refused(recipient, code, reply))
                self._reset()
            except smtplib.SMTPResponseException as exc:
                results.append(_refused(recipient, exc.smtp_code, exc.smtp_error))
                self._reset()
            except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError, OSError) as exc:
                self._drop()
                if reconnected:
                    if not results:
                        raise TransportError(f"SMTP connection lost: {exc}", retryable=True) from exc
                    results.extend(Result(r, ok=False, retryable=True, error=f"connection lost: {exc}")
                                   for r in recipients[index:])
                    return results
                reconnected = True
                continue  # retry this recipient once on a fresh connection
            else:
                if refused:
                    code, reply = refused[recipient.email]
                    results.append(_refused(recipient, code, reply))
                else:
                    results.append(Result(recipient, ok=True, message_id=message_id))
            index += 1
        return results

    def _reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()

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


def _refused(recipient: Recipient, code: int, reply: bytes | str) -> Result:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return Result(recipient, ok=False, retryable=400 <= code < 500, error=f"{code} {text}".strip())
