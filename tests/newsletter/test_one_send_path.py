"""The CLI, the admin and the API create a send through the same use case (worker/sends.py), so the same issue sent
to the same list from each of them produces the same ledger: the same recipients, each once, with the same outcomes.
"""

from __future__ import annotations

import re
from collections import Counter

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.db import session_scope
from newsletter.auth import create_api_token, create_user
from newsletter.cli import app as cli_app
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers.models import Subscriber
from tests.support.audience import EXAMPLE, ROW_OF_PERSON, make_audience
from tests.support.mailbox import outbox_messages
from worker.models import Delivery, Send, SendStatus

PASSWORD = "correct horse battery staple"


def ledger(send_id: int) -> dict[str, str]:
    """Who the send planned, and what became of each."""
    with session_scope() as session:
        rows = session.execute(select(Subscriber.email, Delivery.status).join(Delivery, ROW_OF_PERSON)
                               .where(Delivery.send_id == send_id)).all()
    return {email: status.value for email, status in rows}


def test_cli_admin_and_api_make_the_same_send(db_url: str) -> None:
    reset()
    audience = make_audience(12)
    with session_scope() as session:
        create_user(session, "editor@example.com", PASSWORD, Role.STAFF)
        token = create_api_token(session, create_user(session, "robot@example.com", PASSWORD, Role.STAFF), "t")

    from_cli = CliRunner().invoke(cli_app, ["send", str(EXAMPLE), "--list", "weekly"])
    assert from_cli.exit_code == 0, from_cli.output

    admin = TestClient(create_app())
    login_form = admin.get("/admin/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login_form).group(1)  # type: ignore[union-attr]
    signed_in = admin.post("/admin/login", data={"email": "editor@example.com", "password": PASSWORD,
                                                 "csrf_token": csrf}, follow_redirects=False)
    assert signed_in.status_code == 303
    from_admin = admin.post(f"/admin/issues/{audience.issue_id}/send",
                            data={"list": "weekly", "allow_resend": "1", "csrf_token": csrf}, follow_redirects=False)
    assert from_admin.status_code == 303 and "/admin/sends/" in from_admin.headers["location"]

    api = TestClient(create_app(), headers={"Authorization": f"Bearer {token}"})
    from_api = api.post("/api/v1/sends", json={"issue_id": audience.issue_id, "list": "weekly",
                                               "allow_resend": True})
    assert from_api.status_code == 201, from_api.text

    with session_scope() as session:
        sends = session.scalars(select(Send).order_by(Send.id)).all()
        assert [s.created_by for s in sends] == ["cli", "editor@example.com", "robot@example.com"]
        assert {s.status for s in sends} == {SendStatus.DONE}
        assert len({(s.issue_id, s.list_id, s.transport) for s in sends}) == 1
        ids = [s.id for s in sends]
    expected = dict.fromkeys(audience.confirmed, "sent")
    assert ledger(ids[0]) == ledger(ids[1]) == ledger(ids[2]) == expected
    received = Counter(m["To"].addresses[0].addr_spec for m in outbox_messages())
    assert received == Counter({address: 3 for address in audience.confirmed})
