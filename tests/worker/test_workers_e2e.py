"""End to end with real parts: Celery worker processes on Redis, PostgreSQL, the sendgrid client against the
v3 stand-in over HTTP (or SMTP into aiosmtpd). Faults: kill -9 of workers, Redis restarted, 429/503 storms,
pause/resume, a rate limit shared by two hosts."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.db import session_scope
from mailer.settings import reset_settings
from newsletter.web.app import create_app
from subscribers.models import Subscriber
from subscribers.tokens import Purpose, link, read_token
from tests.support.audience import Audience, counters, delivery_status, make_audience, send_status
from tests.support.sendgrid_standin import API_KEY, SendGridStandIn
from tests.support.smtp_sink import SMTPSink
from tests.support.workers import PrivateRedis, WorkerProcess, wait_for
from worker import sends, tasks
from worker.app import reconfigure
from worker.models import DeliveryStatus, SendStatus

pytestmark = pytest.mark.slow
BROKER = os.environ.get("NEWSLETTER_TEST_BROKER", "redis://127.0.0.1:6379/14")


@dataclass
class Cluster:
    env: dict[str, str]
    standin: SendGridStandIn
    tmp: Path
    workers: list[WorkerProcess]

    def start_worker(self, name: str, concurrency: int = 1) -> WorkerProcess:
        worker = WorkerProcess(self.env, name, self.tmp, concurrency)
        self.workers.append(worker)
        return worker

    def configure(self, monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
        """Same settings for this test process (which enqueues) and the workers started after."""
        for key, value in values.items():
            self.env[f"NEWSLETTER_{key}"] = value
            monkeypatch.setenv(f"NEWSLETTER_{key}", value)
        reset_settings()

        reconfigure()


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    redis_lib.Redis.from_url(BROKER).flushdb()
    standin = SendGridStandIn().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_") or k.startswith("NEWSLETTER_TEST")}
    env |= {k: v for k, v in os.environ.items() if k.startswith("NEWSLETTER_")}
    result = Cluster(env, standin, tmp_path, [])
    result.configure(monkeypatch, DATABASE_URL=pg_url, BROKER_URL=BROKER, TRANSPORT="sendgrid",
                     SENDGRID_HOST=standin.url, SENDGRID_API_KEY=API_KEY, BATCH_SIZE="250", CLAIM_LEASE_S="4",
                     SENDGRID_MAX_RETRY_S="20")
    yield result
    for worker in result.workers:
        worker.stop()
    standin.stop()
    redis_lib.Redis.from_url(BROKER).flushdb()


def start_send(audience: Audience, transport: str = "sendgrid") -> int:
    with session_scope() as session:
        options = sends.SendOptions(transport=transport)
        return sends.create(session, audience.issue_id, audience.list_id, options).id


def wait_done(send_id: int, cluster: Cluster, timeout: float = 120) -> None:
    last_sweep = [0.0]

    def sweep() -> None:  # what beat does every minute, more often here
        if time.monotonic() - last_sweep[0] > 2:
            last_sweep[0] = time.monotonic()
            tasks.sweep_leases()

    try:
        wait_for(lambda: send_status(send_id) is SendStatus.DONE, timeout=timeout, what=f"send {send_id} done",
                 tick=sweep, every=0.3)
    except AssertionError:
        for worker in cluster.workers:
            print(worker.hostname, worker.log()[-3000:])
        print(counters(send_id))
        raise


def check_exactly_once(audience: Audience, counts: Counter[str]) -> tuple[int, int]:
    lost = [e for e in audience.confirmed if counts[e] == 0]
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    assert not any(counts[e] for e in audience.others), "pending/unsubscribed/suppressed subscribers got mail"
    return len(lost), duplicates


def test_five_thousand_through_sendgrid_two_workers_unsubscribe_mid_send(cluster: Cluster,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    audience = make_audience(5000)
    cluster.standin.behaviour.delay_s = 0.15
    cluster.start_worker("alpha")
    cluster.start_worker("beta")
    send_id = start_send(audience)
    wait_for(lambda: counters(send_id)["sent"] >= 500, timeout=60, what="the send to get going")
    leaver = audience.confirmed[-1]  # in the last batch
    with session_scope() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == leaver))
        assert subscriber is not None
        assert delivery_status(session, send_id, subscriber.id) is DeliveryStatus.PENDING
        url = link(Purpose.UNSUBSCRIBE, subscriber.id, audience.list_id)

    mail_client = TestClient(create_app())  # RFC 8058: a bare POST, no cookies
    response = mail_client.post(url.removeprefix("http://testserver"), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    wait_done(send_id, cluster)
    counts = cluster.standin.counts()
    assert counts[leaver] == 0
    assert check_exactly_once(Audience(audience.list_id, audience.issue_id, audience.confirmed[:-1],
                                       audience.others), counts) == (0, 0)
    assert counters(send_id)["sent"] == 4999 and counters(send_id)["skipped"] == 1
    # each subscriber's own unsubscribe URL went into their personalization
    accepted = {a.email: a for a in cluster.standin.accepted}
    with session_scope() as session:
        ids = dict(session.execute(select(Subscriber.email, Subscriber.id)).tuples().all())
    for address in audience.confirmed[:50]:
        url = accepted[address].substitutions["__NLT_UNSUBSCRIBE_URL__"]
        token = read_token(Purpose.UNSUBSCRIBE, url.rsplit("/", 1)[1])
        assert (token.subscriber_id, token.list_id) == (ids[address], audience.list_id)
        assert accepted[address].headers["List-Unsubscribe"] == f"<{url}>"
    hosts = {w.hostname for w in cluster.workers}
    assert hosts == {"alpha", "beta"}


def test_smtp_into_aiosmtpd(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = SMTPSink().start()
    try:
        cluster.configure(monkeypatch, SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink.port), BATCH_SIZE="100")
        audience = make_audience(600)
        cluster.start_worker("alpha")
        cluster.start_worker("beta")
        send_id = start_send(audience, transport="smtp")
        wait_done(send_id, cluster)
        assert check_exactly_once(audience, sink.counts()) == (0, 0)
        assert len(sink.counts()) == 600
        assert all(r.mail_from.startswith("bounces+") for r in sink.received)
    finally:
        sink.stop()


def test_kill_minus_nine_workers_loses_nobody(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.configure(monkeypatch, BATCH_SIZE="100")
    audience = make_audience(3000)
    cluster.standin.behaviour.delay_s = 0.1
    victim = cluster.start_worker("alpha")
    cluster.start_worker("beta")
    send_id = start_send(audience)
    kills = 0
    for share in (0.2, 0.5):
        wait_for(lambda share=share: counters(send_id)["sent"] >= 3000 * share, timeout=90,  # type: ignore[misc]
                 what=f"{share:.0%} sent")
        victim.kill9()
        kills += 1
        victim = cluster.start_worker(f"alpha{kills}")
    wait_done(send_id, cluster, timeout=180)
    lost, duplicates = check_exactly_once(audience, cluster.standin.counts())
    print(f"kill -9 x{kills}: lost {lost}, duplicates {duplicates} (bound: {kills} x 100)")
    assert lost == 0 and duplicates <= kills * 100


def test_redis_restarted_mid_send(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broker = PrivateRedis(tmp_path)
    broker.start()
    try:
        cluster.configure(monkeypatch, BROKER_URL=broker.url, BATCH_SIZE="100")
        audience = make_audience(2000)
        cluster.standin.behaviour.delay_s = 0.1
        cluster.start_worker("alpha")
        cluster.start_worker("beta")
        send_id = start_send(audience)
        wait_for(lambda: counters(send_id)["sent"] >= 400, timeout=60, what="20% sent")
        broker.kill9()  # the queue is gone: this Redis keeps nothing on disk
        time.sleep(1.5)
        broker.start()
        wait_done(send_id, cluster, timeout=120)
        lost, duplicates = check_exactly_once(audience, cluster.standin.counts())
        print(f"redis restart: lost {lost}, duplicates {duplicates}")
        assert lost == 0 and duplicates <= 100
    finally:
        broker.stop()


def test_provider_storm_of_429_and_503(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.configure(monkeypatch, BATCH_SIZE="100")
    audience = make_audience(2000)
    cluster.standin.behaviour.share_429 = 0.1
    cluster.standin.behaviour.share_503 = 0.1
    cluster.start_worker("alpha")
    cluster.start_worker("beta")
    send_id = start_send(audience)
    wait_done(send_id, cluster)
    assert check_exactly_once(audience, cluster.standin.counts()) == (0, 0)
    assert cluster.standin.state.rejected[429] + cluster.standin.state.rejected[503] > 0


def test_pause_then_resume_no_duplicates(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.configure(monkeypatch, BATCH_SIZE="100")
    audience = make_audience(2000)
    cluster.standin.behaviour.delay_s = 0.1
    cluster.start_worker("alpha")
    cluster.start_worker("beta")
    send_id = start_send(audience)
    wait_for(lambda: counters(send_id)["sent"] >= 400, timeout=60, what="20% sent")
    with session_scope() as session:
        sends.control(session, send_id, sends.SendAction.PAUSE, "an editor who spotted a typo")
    wait_for(lambda: counters(send_id)["sending"] == 0, timeout=30, what="in-flight batches to finish")
    frozen = counters(send_id)["sent"]
    time.sleep(1.5)
    assert counters(send_id)["sent"] == frozen < 2000 and send_status(send_id) is SendStatus.PAUSED
    with session_scope() as session:
        sends.control(session, send_id, sends.SendAction.RESUME)
    wait_done(send_id, cluster)
    assert check_exactly_once(audience, cluster.standin.counts()) == (0, 0)


def test_rate_limit_shared_by_two_hosts(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.configure(monkeypatch, BATCH_SIZE="100", RATE_PER_SECOND="300", RATE_BURST="100")
    audience = make_audience(1500)
    cluster.start_worker("host-a")
    cluster.start_worker("host-b")
    started = time.monotonic()
    send_id = start_send(audience)
    wait_done(send_id, cluster)
    elapsed = time.monotonic() - started
    floor = (1500 - 100) / 300  # after the burst, one shared bucket lets no more than 300/s through
    print(f"1500 recipients at a shared 300/s: {elapsed:.1f}s (floor {floor:.1f}s), {1500 / elapsed:.0f}/s")
    assert elapsed >= floor * 0.95  # two workers together, not 2 x 300/s (that would take ~2.3 s)
    assert check_exactly_once(audience, cluster.standin.counts()) == (0, 0)
