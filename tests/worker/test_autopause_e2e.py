"""Auto-pause during a live send: Celery worker processes send through the SendGrid stand-in at a fixed rate while
the stand-in's events (15% hard bounces) come back through the signed webhook, late, as real events do. The send
must stop itself before it finishes, and say why on its admin page and in `newsletter sends show`."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.cli import app as cli_app
from newsletter.models import Role
from newsletter.web.app import create_app
from tests.events.test_webhook import new_signer
from tests.support.audience import counters, make_audience, send_status
from tests.support.sendgrid_standin import make_events
from tests.support.workers import wait_for
from tests.worker.test_workers_e2e import Cluster, cluster, start_send  # noqa: F401 (cluster is a fixture)
from worker.models import Send, SendStatus

pytestmark = pytest.mark.slow
AUDIENCE = 4000
# Events for a message come back only once this many later messages have been accepted: the provider reports
# seconds to minutes after it accepts, and at sending speed that is thousands of messages. It is more than the
# 1,000 newest rows the old check looked at, so those always looked clean.
EVENT_LAG = 1500
PASSWORD = "correct horse battery staple"


@pytest.fixture
def webhook(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, object]]:  # noqa: F811
    signer = new_signer()
    cluster.configure(monkeypatch, SENDGRID_WEBHOOK_PUBLIC_KEY=signer.public, BATCH_SIZE="100",
                      RATE_PER_SECOND="400", RATE_BURST="100")
    yield TestClient(create_app()), signer


def test_live_send_pauses_itself_on_hard_bounces(cluster: Cluster, webhook) -> None:  # noqa: F811
    client, signer = webhook
    audience = make_audience(AUDIENCE, pending=0, unsubscribed=0, suppressed=0)
    cluster.start_worker("alpha")
    cluster.start_worker("beta")
    send_id = start_send(audience)
    reported = 0

    def report_events() -> None:
        """The provider's webhook: events for what it accepted EVENT_LAG messages ago, 15% of them hard bounces."""
        nonlocal reported
        accepted = list(cluster.standin.accepted)
        due = accepted[reported:max(reported, len(accepted) - EVENT_LAG)]
        if not due:
            return
        body = json.dumps(make_events(due, {"bounce": 0.15}, seed=reported)).encode()
        response = client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body))  # type: ignore[attr-defined]
        assert response.status_code == 200, response.text
        reported += len(due)

    started = time.monotonic()
    wait_for(lambda: send_status(send_id) in (SendStatus.PAUSED, SendStatus.DONE), timeout=300,
             what="the send to pause or finish", tick=report_events, every=0.2)
    status, figures = send_status(send_id), counters(send_id)
    print(f"after {time.monotonic() - started:.1f}s: {status.value}, {figures}, events reported for {reported}")
    assert status is SendStatus.PAUSED, f"the send finished without pausing: {figures}"
    assert figures["pending"] > 0 and figures["sent"] < AUDIENCE  # it stopped itself before the end
    with session_scope() as session:
        send = session.get(Send, send_id)
        assert send is not None
        reason = send.status_reason
    assert reason.startswith("Auto-paused: hard-bounce rate") and "whose outcome is known" in reason

    shown = CliRunner().invoke(cli_app, ["sends", "show", str(send_id)])
    assert shown.exit_code == 0 and "paused" in shown.output and reason in shown.output.replace("\n", " ")
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/login").text)
    assert token is not None
    client.post("/admin/login", data={"email": "admin@example.com", "password": PASSWORD,
                                      "csrf_token": token.group(1)}, follow_redirects=False)
    page = client.get(f"/admin/sends/{send_id}")
    assert page.status_code == 200 and "Auto-paused: hard-bounce rate" in page.text
