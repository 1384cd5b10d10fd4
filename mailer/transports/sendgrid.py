"""SendGrid v3 mail send: one API call per batch of up to 1000 recipients, content sent once with substitutions.

The client (python-http-client over urllib) has no timeout by default; we always pass one. 429/5xx/timeouts are
retried here with backoff (bounded in attempts and time) before the batch is handed back as retryable; 400 fails
the batch with SendGrid's own error text; 401/403 are fatal, because retrying bad credentials only hammers.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
from collections.abc import Sequence
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from mailer.addresses import wire_address
from mailer.batch import Content, Recipient, Result, TransportError
from mailer.message import list_unsubscribe
from mailer.placeholders import fold_constants, substitutions
from mailer.settings import Settings
from mailer.transports.retry import backoff_delay, retry_after_seconds

log = logging.getLogger(__name__)
_NEWLINES = re.compile(r"[\r\n]+")


def _clean(value: str) -> str:
    return _NEWLINES.sub(" ", value).strip()


class SendGridTransport:
    name = "sendgrid"
    max_batch = 1000

    def __init__(self, api_key: str, *, host: str, timeout_s: float, max_attempts: int = 5,
                 max_retry_s: float = 60.0) -> None:
        self.client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.max_retry_s = max_retry_s

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridTransport:
        if settings.sendgrid_api_key is None:
            raise TransportError("NEWSLETTER_SENDGRID_API_KEY is not set", fatal=True)
        return cls(settings.sendgrid_api_key.get_secret_value(), host=settings.sendgrid_host,
                   timeout_s=settings.sendgrid_timeout_s, max_attempts=settings.sendgrid_max_attempts,
                   max_retry_s=settings.sendgrid_max_retry_s)

    def payload(self, content: Content, recipients: Sequence[Recipient]) -> dict[str, Any]:
        """The request body: the content once, a small table of substitutions per recipient."""
        folded = fold_constants(content.subject, content.html, content.text,
                                [substitutions(r.values, r.tags) for r in recipients])
        personalizations = []
        for recipient, table in zip(recipients, folded.tables, strict=True):
            item: dict[str, Any] = {"to": [{"email": wire_address(recipient.email)}]}
            if table:
                item["substitutions"] = table
            headers = {_clean(k): _clean(v) for k, v in recipient.headers.items()} if recipient.headers else {}
            unsubscribe = list_unsubscribe(recipient)
            if unsubscribe:
                headers["List-Unsubscribe"] = unsubscribe
            if recipient.unsubscribe_url:
                headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            if headers:
                item["headers"] = headers
            if recipient.delivery_id is not None:
                item["custom_args"] = {"delivery_id": str(recipient.delivery_id)}
            personalizations.append(item)
        sender: dict[str, str] = {"email": wire_address(content.from_email)}
        if content.from_name:
            sender["name"] = _clean(content.from_name)
        body: dict[str, Any] = {
            "personalizations": personalizations,
            "from": sender,
            "subject": _clean(folded.subject),
            "content": [{"type": "text/plain", "value": folded.text}, {"type": "text/html", "value": folded.html}],
            "categories": [content.category],
        }
        if content.send_id is not None:  # message-level custom_args reach every recipient's events
            body["custom_args"] = {"send_id": str(content.send_id)}
        if content.reply_to:
            body["reply_to"] = {"email": wire_address(content.reply_to)}
        shared = {"List-Id": content.list_id, "Feedback-ID": content.feedback_id}
        if any(shared.values()):
            body["headers"] = {name: _clean(value) for name, value in shared.items() if value}
        return body

    def send(self, content: Content, recipients: Sequence[Recipient]) -> list[Result]:
        if not recipients:
            return []
        if len(recipients) > self.max_batch:
            raise ValueError(f"SendGrid takes at most {self.max_batch} recipients per call, got {len(recipients)}")
        body = self.payload(content, recipients)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            wait: float | None
            try:
                response = self.client.client.mail.send.post(request_body=body, timeout=self.timeout_s)
            except HTTPError as exc:
                status = int(exc.status_code)
                text = _error_text(exc.body)
                if status in (401, 403):
                    raise TransportError(f"SendGrid refused the API key ({status}): {text}", fatal=True) from exc
                if status == 429 or status >= 500:
                    wait = retry_after_seconds(dict(exc.headers or {}))
                    reason = f"SendGrid answered {status}: {text}"
                else:
                    return [Result(r, ok=False, error=f"SendGrid {status}: {text}") for r in recipients]
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                wait, reason = None, f"SendGrid unreachable: {exc}"
            else:
                message_id = _header(response.headers, "X-Message-Id")
                return [Result(r, ok=True, message_id=message_id) for r in recipients]
            delay = wait if wait is not None else backoff_delay(attempt)
            spent = time.monotonic() - started
            if attempt >= self.max_attempts or spent + delay > self.max_retry_s:
                raise TransportError(reason, retryable=True, retry_after=delay)
            log.info("%s; retrying in %.1fs (attempt %d)", reason, delay, attempt)
            time.sleep(delay)

    def close(self) -> None:
        return None


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name) if hasattr(headers, "get") else None
    if value is None and hasattr(headers, "items"):
        for key, item in headers.items():
            if key.lower() == name.lower():
                return str(item)
    return str(value) if value is not None else None


def _error_text(body: bytes | str | None) -> str:
    if not body:
        return "(no details)"
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        errors = json.loads(text).get("errors", [])
        messages = [f"{e.get('field') + ': ' if e.get('field') else ''}{e.get('message', '')}" for e in errors]
        return "; ".join(m for m in messages if m) or text[:500]
    except (ValueError, AttributeError):
        return text[:500]
