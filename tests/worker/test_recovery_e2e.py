"""A database that restarts under real Celery workers, at the default lease and batch size: plan and batch tasks
retry, outcomes the provider accepted are recorded once the database is back, nobody gets the issue twice.
PostgreSQL here is a private server (tests/support/postgres.py), never the machine's shared one."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from mailer import db as db_module
from mailer.db import session_scope
from newsletter.migrate import upgrade
from tests.support.audience import counters, make_audience, send_status, started_send
from tests.support.postgres import PrivatePostgres
from tests.support.sendgrid_standin import API_KEY, SendGridStandIn
from tests.support.workers import wait_for
from tests.worker.test_workers_e2e import BROKER, Cluster, check_exactly_once, cluster, start_send
from worker import tasks
from worker.app import celery_app
from worker.models import SendStatus

pytestmark = pytest.mark.slow
__all__ = ["cluster"]  # the fixture, shared with test_workers_e2e


@pytest.fixture
def pg_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Cluster, PrivatePostgres]]:
    server = PrivatePostgres().start()
    url = server.create_database("newsletter")
    upgrade(url)
    redis_lib.Redis.from_url(BROKER).flushdb()
    standin = SendGridStandIn().start()
    env = {k: v for k, v in os.environ.items()}
    cluster = Cluster(env, standin, tmp_path, [])
    cluster.configure(monkeypatch, DATABASE_URL=url, BROKER_URL=BROKER, TRANSPORT="sendgrid",
                      SENDGRID_HOST=standin.url, SENDGRID_API_KEY=API_KEY)
    db_module.dispose_engines()
    yield cluster, server
    for worker in cluster.workers:
        worker.stop()
    standin.stop()
    db_module.dispose_engines()
    server.destroy()
    redis_lib.Redis.from_url(BROKER).flushdb()


def wait_done_like_beat(send_id: int, cluster: Cluster, timeout: float) -> None:
    """Wait for `done` with the sweeper run as beat runs it by default (every third of the 30 s lease)."""
    last = [time.monotonic()]

    def beat() -> None:
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            tasks.sweep_leases()

    try:
        wait_for(lambda: send_status(send_id) is SendStatus.DONE, timeout=timeout, what=f"send {send_id} done",
                 tick=beat, every=0.5)
    except AssertionError:
        for worker in cluster.workers:
            print(worker.hostname, worker.log()[-3000:])
        raise


def test_plan_task_retries_through_a_database_outage(pg_cluster: tuple[Cluster, PrivatePostgres]) -> None:
    cluster, server = pg_cluster
    audience = make_audience(600)
    worker = cluster.start_worker("alpha")
    wait_for(lambda: bool(celery_app.control.ping(timeout=0.5)), timeout=60, what="the worker to be ready")
    with session_scope() as session:
        send_id = started_send(session, audience.issue_id, audience.list_id, transport="sendgrid")
    db_module.dispose_engines()
    server.stop("immediate")
    tasks.plan_send.apply_async(args=(send_id,))  # the worker takes it while the database is down
    wait_for(lambda: "OperationalError" in worker.log() or "database error" in worker.log(), timeout=30,
             what="the plan task to meet the outage")
    server.start()
    # No sweeper here: the task itself must come back, not wait for the lease-based healing.
    wait_for(lambda: send_status(send_id) is SendStatus.DONE, timeout=60, what="the send planned and done")
    assert check_exactly_once(audience, cluster.standin.counts()) == (0, 0)


def test_database_restart_mid_send_resends_nothing(pg_cluster: tuple[Cluster, PrivatePostgres]) -> None:
    cluster, server = pg_cluster
    audience = make_audience(4000)
    cluster.standin.behaviour.delay_s = 0.3  # a batch is in the provider's hands most of the time
    cluster.start_worker("alpha")
    cluster.start_worker("beta")
    send_id = start_send(audience)
    wait_for(lambda: counters(send_id)["sent"] >= 1000, timeout=90, what="a quarter sent")
    wait_for(lambda: counters(send_id)["sending"] > 0, timeout=10, what="a batch in flight")
    server.restart_immediate()
    restarted = time.monotonic()
    wait_done_like_beat(send_id, cluster, timeout=120)
    print(f"done {time.monotonic() - restarted:.1f}s after the restart")
    assert check_exactly_once(audience, cluster.standin.counts()) == (0, 0)
    assert counters(send_id)["sent"] == 4000


def test_sigterm_to_the_worker_group_records_the_batch_in_flight(cluster: Cluster) -> None:
    """systemd's default stop (and `kill -TERM -PGID`) signals the pool process too; it must not die between the
    provider's acceptance and the ledger's record, or the batch goes out again after the lease."""
    audience = make_audience(200)
    cluster.standin.behaviour.delay_s = 2.0
    worker = cluster.start_worker("alpha")
    send_id = start_send(audience)
    wait_for(lambda: cluster.standin.state.requests >= 1, timeout=60, what="the batch to reach the provider")
    os.killpg(worker.process.pid, signal.SIGTERM)
    worker.process.wait(timeout=60)
    assert counters(send_id)["sent"] == 200 and counters(send_id)["sending"] == 0
    assert cluster.standin.counts() == {e: 1 for e in audience.confirmed}
