"""Provider webhooks. The raw body is read (bounded) and verified before anything is parsed or stored."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailer.db import session_scope
from mailer.events import sendgrid as sendgrid_events
from mailer.settings import get_settings
from worker import events
from worker.app import enqueue_after_commit
from worker.event_tasks import apply_events

router = APIRouter()
log = logging.getLogger(__name__)


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/sendgrid", include_in_schema=False)
async def sendgrid_webhook(request: Request) -> JSONResponse:
    settings = get_settings()
    raw = await _bounded_body(request, settings.webhook_max_body_bytes)
    if raw is None:
        return JSONResponse({"error": "body too large"}, status_code=413)
    if settings.sendgrid_webhook_verify:
        if not settings.sendgrid_webhook_public_key:
            return JSONResponse({"error": "webhook verification key not configured"}, status_code=403)
        try:
            sendgrid_events.verify(raw, request.headers.get(sendgrid_events.SIGNATURE_HEADER),
                                   request.headers.get(sendgrid_events.TIMESTAMP_HEADER),
                                   settings.sendgrid_webhook_public_key, max_age_s=settings.webhook_max_age_s)
        except sendgrid_events.WebhookRefused as exc:
            log.warning("refused SendGrid webhook: %s", exc)
            return JSONResponse({"error": "signature verification failed"}, status_code=403)
    try:
        parsed = sendgrid_events.parse(raw)
    except ValueError as exc:
        if settings.sendgrid_webhook_verify:
            # Signed, so SendGrid sent it: a 4xx would only make it retry the same body for a day. Kept as one
            # rejected record for a person to read, and answered 2xx.
            parsed = [sendgrid_events.unreadable(raw, str(exc))]
        else:
            return JSONResponse({"error": "expected a JSON array of events"}, status_code=400)

    with session_scope() as session:
        stored = events.store(session, parsed)
        if stored:
            enqueue_after_commit(session, apply_events)
    rejected = sum(1 for event in parsed if event.rejected)
    if rejected:
        log.warning("SendGrid webhook: %d malformed event(s) stored as rejected", rejected)
    return JSONResponse({"received": len(parsed), "stored": stored, "rejected": rejected})
