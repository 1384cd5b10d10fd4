"""A DKIM-signed send through the engine: a key that cannot be used pauses the send (nothing goes out unsigned), and
once it is fixed every message the SMTP server received carries two signatures that verify."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from typer.testing import CliRunner

from mailer.db import session_scope
from mailer.dkim_signing import DkimKey
from mailer.settings import Settings, reset_settings
from newsletter.cli import app
from tests.support.audience import EXAMPLE, counters, make_audience, send_status, started_send
from tests.support.smtp_sink import SMTPSink
from worker import campaigns, tasks
from worker.models import Send, SendStatus


def _write(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def test_a_broken_key_pauses_the_send_and_the_fixed_key_signs_every_message(
        db_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sink = SMTPSink(pipelining=True).start()
    rsa_path, ed_path = tmp_path / "dkim-rsa.pem", tmp_path / "dkim-ed25519.pem"
    try:
        for name, value in (("smtp_host", "127.0.0.1"), ("smtp_port", sink.port), ("dkim_selector", "nl"),
                            ("dkim_private_key_path", rsa_path), ("dkim_ed25519_selector", "nle"),
                            ("dkim_ed25519_private_key_path", ed_path)):
            monkeypatch.setattr(settings, name, value)
        audience = make_audience(4)
        with session_scope() as session:
            send_id = started_send(session, audience.issue_id, audience.list_id, transport="smtp")
        tasks.plan_send.delay(send_id).get()
        assert send_status(send_id) is SendStatus.PAUSED and counters(send_id)["pending"] == 4
        with session_scope() as session:
            reason = session.get(Send, send_id).status_reason  # type: ignore[union-attr]
        assert str(rsa_path) in reason and "cannot be read" in reason
        assert sink.received == []

        keys = rsa.generate_private_key(public_exponent=65537, key_size=2048), ed25519.Ed25519PrivateKey.generate()
        _write(keys[0], rsa_path)
        _write(keys[1], ed_path)
        with session_scope() as session:
            campaigns.resume(session, send_id)
        tasks.resume_send(send_id)
        assert counters(send_id)["sent"] == 4 and sorted(sink.counts()) == sorted(audience.confirmed)

        records = {f"{selector}._domainkey.news.example.com.".encode(): DkimKey(selector, "", key).dns_record()
                   for selector, key in zip(("nl", "nle"), keys, strict=True)}

        def dns(name: bytes, timeout: int = 5) -> bytes:
            return records[name].encode()

        for received in sink.received:
            assert [dkim.DKIM(received.data).verify(idx=i, dnsfunc=dns) for i in range(2)] == [True, True]
    finally:
        sink.stop()


def test_a_test_send_with_a_broken_key_says_why_without_a_traceback(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    monkeypatch.setenv("NEWSLETTER_DKIM_SELECTOR", "nl")
    monkeypatch.setenv("NEWSLETTER_DKIM_PRIVATE_KEY_PATH", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("NEWSLETTER_DKIM_ED25519_SELECTOR", "")  # blank in an env file: not configured
    monkeypatch.setenv("NEWSLETTER_DKIM_ED25519_PRIVATE_KEY_PATH", "")
    reset_settings()
    result = CliRunner().invoke(app, ["send", "--test-to", "me@example.com", str(EXAMPLE)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert f"test send failed: DKIM key {tmp_path / 'missing.pem'} cannot be read" in result.output
    assert "Traceback" not in result.output
