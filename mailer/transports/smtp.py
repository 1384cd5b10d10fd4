"""SMTP: a few parallel connections per worker, a VERP return path per recipient, optional DKIM signature.

The transactions are pipelined when the server allows it (mailer.transports.smtp_session). Outcomes per recipient
follow the reply codes: 5xx means this address failed (not retried), 4xx means later. A dropped connection is
reconnected once; after that the rest of its share of the batch is handed back as retryable.

Why parallel connections: even pipelined, a message costs one round trip (the server's 354 must arrive before its
body may be sent), and a worker with one connection spent half its time waiting for that answer
(bench/send.py, py-spy). A batch is cut into `connections` contiguous shares, each sent on its own connection in
its own thread; building and signing a message holds the interpreter while another share waits on its socket.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from mailer.addresses import wire_address
from mailer.batch import Content, Recipient, Result, TransportError
from mailer.dkim_signing import DkimKeyError, DkimSigner, signer_from_settings
from mailer.message import encode_message
from mailer.settings import Settings
from mailer.transports.smtp_session import NO_SMTPUTF8, ConnectionLost, Envelope, Outcome, send_messages

MIN_SHARE = 50  # recipients below which another connection costs more (its greeting) than it saves


class SMTPTransport:
    name = "smtp"
    max_batch = 1000

    def __init__(self, host: str, port: int, *, security: str = "none", user: str | None = None,
                 password: str | None = None, timeout_s: float = 30.0, message_id_domain: str,
                 default_return_path: str, dkim: DkimSigner | None = None, connections: int = 1) -> None:
        self.host, self.port, self.security = host, port, security
        self.user, self.password, self.timeout_s = user, password, timeout_s
        self.message_id_domain = message_id_domain
        self.default_return_path = default_return_path
        self.dkim = dkim
        self._lanes = [_Lane(self) for _ in range(max(1, connections))]
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPTransport:
        try:
            dkim = signer_from_settings(settings)
        except DkimKeyError as exc:  # fatal: the send pauses with this reason rather than going out unsigned
            raise TransportError(str(exc), fatal=True) from exc
        return cls(settings.smtp_host, settings.smtp_port, security=settings.smtp_security, user=settings.smtp_user,
                   password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                   timeout_s=settings.smtp_timeout_s, message_id_domain=settings.mail_domain,
                   default_return_path=settings.from_email, dkim=dkim, connections=settings.smtp_connections)

    def send(self, content: Content, recipients: Sequence[Recipient]) -> list[Result]:
        lanes = min(len(self._lanes), max(1, len(recipients) // MIN_SHARE))
        if lanes == 1:
            return self._lanes[0].send(content, recipients)
        size = -(-len(recipients) // lanes)
        shares = [recipients[start:start + size] for start in range(0, len(recipients), size)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self._lanes), thread_name_prefix="smtp")
        futures = [self._pool.submit(lane.send, content, share)
                   for lane, share in zip(self._lanes, shares, strict=False)]
        return _gather(futures, shares)

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _gather(futures: Sequence[Future[list[Result]]], shares: Sequence[Sequence[Recipient]]) -> list[Result]:
    """The shares' results in the batch's order. A share that could not be sent at all (no connection) raises its
    error only when no share was sent: once some messages are out, raising would hand them back as unsent (and
    they would go again), so the failed share comes back as "try later" instead."""
    results: list[Result] = []
    errors: list[tuple[Sequence[Recipient], TransportError]] = []
    for future, share in zip(futures, shares, strict=True):
        try:
            results += future.result()
        except TransportError as exc:
            errors.append((share, exc))
    if errors and not results:
        raise next((error for _, error in errors if error.fatal), errors[0][1])
    for share, error in errors:
        results += _later(share, str(error))
    return results


class _Lane:
    """One SMTP connection of a transport, kept open between batches, and the send loop over it."""

    def __init__(self, transport: SMTPTransport) -> None:
        self.transport = transport
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
        t = self.transport
        try:
            if t.security == "ssl":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(t.host, t.port, timeout=t.timeout_s,
                                                            context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(t.host, t.port, timeout=t.timeout_s)
                if t.security == "starttls":
                    connection.starttls(context=ssl.create_default_context())
            if t.user:
                connection.login(t.user, t.password or "")
            connection.ehlo_or_helo_if_needed()  # the session asks which extensions (PIPELINING) it may use
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}", fatal=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(f"SMTP connection to {t.host}:{t.port} failed: {exc}", retryable=True) from exc
        self._connection = connection
        return connection

    def send(self, content: Content, recipients: Sequence[Recipient]) -> list[Result]:
        results: list[Result] = []
        reconnected = False
        while len(results) < len(recipients):
            rest = recipients[len(results):]
            message_ids: dict[int, str] = {}
            envelopes = [Envelope(wire_address(r.return_path or self.transport.default_return_path),
                                  wire_address(r.email)) for r in rest]
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
                                                     message_id_domain=self.transport.message_id_domain,
                                                     dkim=self.transport.dkim)
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
