"""Faults during a send, with real parts and default settings: a private PostgreSQL and a private Redis (so they can
be restarted and killed), 2 Celery worker processes, `newsletter beat`, and the SendGrid stand-in as a server.

Each scenario sends one issue to a fresh list and prints: planned, accepted by the peer, unique, duplicates,
missing, seconds to done (from the start, and from the last fault), and the manual steps needed (the bench takes
none unless a send is still not done 120 s after the last fault; then it runs `resume`, as an operator would, and
counts it).

Run: .venv/bin/python -m bench.faults [--recipients 50000] [--scenarios ...] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from bench.report import write_section
from bench.send import populate
from mailer.db import dispose_engines, session_scope
from mailer.settings import get_settings, reset_settings
from newsletter.web.app import create_app
from subscribers.models import Subscriber
from subscribers.tokens import Purpose, link
from tests.support.postgres import PrivatePostgres
from tests.support.workers import PrivateRedis, WorkerProcess, free_port, wait_for
from worker import sends
from worker.app import reconfigure
from worker.models import Delivery, DeliveryStatus, Send, SendStatus
from worker.stats import send_counters

ROOT = Path(__file__).resolve().parent.parent
STANDIN_DELAY_S = 0.2  # a provider round trip: a batch spends most of its life in the provider's hands
AFTER_FAULT_S = 120.0
SCENARIOS = ["none", "kill9", "pg-restart", "redis-loss", "storm", "sigterm", "unsubscribe"]


@dataclass
class Outcome:
    scenario: str
    planned: int = 0
    accepted: int = 0
    unique: int = 0
    duplicates: int = 0
    missing: int = 0
    seconds: float = 0.0
    after_fault: float = 0.0
    manual: int = 0
    notes: list[str] = field(default_factory=list)


class Rig:
    """The parts of one scenario. PostgreSQL and Redis live for the whole run; the rest per scenario."""

    def __init__(self, pg: PrivatePostgres, broker: PrivateRedis, tmp: Path) -> None:
        self.pg, self.broker, self.tmp = pg, broker, tmp
        self.port = free_port()
        self.url = pg.create_database(f"faults_{uuid.uuid4().hex[:8]}")
        self.env = dict(os.environ) | {
            "NEWSLETTER_DATABASE_URL": self.url, "NEWSLETTER_BROKER_URL": broker.url,
            "NEWSLETTER_DATA_DIR": str(tmp), "NEWSLETTER_SECRET_KEY": "bench-secret-bench-secret-bench-secret",
            "NEWSLETTER_BASE_URL": "https://news.example.com", "NEWSLETTER_TRANSPORT": "sendgrid",
            "NEWSLETTER_FROM_EMAIL": "digest@news.example.com",
            "NEWSLETTER_SENDGRID_HOST": f"http://127.0.0.1:{self.port}", "NEWSLETTER_SENDGRID_API_KEY": "SG.test-key",
            "PYTHONPATH": str(ROOT)}  # beat runs from its own directory: this checkout's code all the same
        self.env = {k: v for k, v in self.env.items() if not k.startswith("NEWSLETTER_TEST")}
        self.peer = subprocess.Popen([sys.executable, "-m", "tests.support.sendgrid_standin", "--port", str(self.port),
                                      "--no-bodies"], cwd=ROOT, stdout=subprocess.DEVNULL)
        self.workers: list[WorkerProcess] = []
        self.beat: subprocess.Popen[bytes] | None = None
        self.started = 0

    def standin(self, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data),
                                    timeout=60) as response:
            return dict(json.load(response))

    def start_worker(self) -> WorkerProcess:
        self.started += 1
        worker = WorkerProcess(self.env, f"w{self.started}", self.tmp)
        self.workers.append(worker)
        return worker

    def start_beat(self) -> None:
        self.beat = subprocess.Popen([sys.executable, "-m", "newsletter.cli.run", "beat", "--loglevel=WARNING"],
                                     cwd=self.tmp, env=self.env, stdout=(self.tmp / "beat.log").open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process.poll() is None]

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.beat is not None:
            os.killpg(self.beat.pid, signal.SIGTERM)
            self.beat.wait(timeout=20)
        self.peer.terminate()
        self.peer.wait(timeout=10)


def pool_children(pid: int) -> list[int]:
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            children.append(int(status.parent.name))
    return children


def run(scenario: str, recipients: int, pg: PrivatePostgres, broker: PrivateRedis, seed: int) -> Outcome:
    tmp = Path(tempfile.mkdtemp(prefix=f"faults-{scenario}-"))
    redis.Redis.from_url(broker.url).flushdb()
    rig = Rig(pg, broker, tmp)
    os.environ.update(rig.env)
    list_id, issue_id = populate(rig.url, recipients)
    reset_settings()  # settings, engines and the Celery app are read again from this scenario's environment
    dispose_engines()
    reconfigure()
    outcome = Outcome(scenario)
    rng = random.Random(seed)
    try:
        rig.standin("/_standin/config", {"delay_s": STANDIN_DELAY_S})
        rig.start_worker()
        rig.start_worker()
        rig.start_beat()
        time.sleep(4)

        def counts() -> dict[str, int]:
            with session_scope() as session:
                return send_counters(session, send_id)

        def sent_share() -> float:
            try:
                return counts()["sent"] / recipients
            except Exception:  # the database may be restarting; the caller polls again
                return 0.0

        started = time.monotonic()
        with session_scope() as session:
            send_id = sends.create(session, issue_id, list_id, sends.SendOptions(transport="sendgrid")).id
        last_fault = started
        unsubscribed: dict[str, float] = {}

        def at(share: float) -> None:
            wait_for(lambda: sent_share() >= share, timeout=300, what=f"{share:.0%} sent", every=0.1)

        if scenario == "kill9":
            kills = 0
            while kills < 20 and sent_share() < 0.97:
                at(0.04 * (kills + 1))  # spread over the send (4% .. 80%), so the last kill is not at its start
                time.sleep(0.5)
                live = rig.live_workers()
                victim = rng.choice(live)
                children = pool_children(victim.process.pid)
                if kills % 2 == 0 and children:  # the pool child: the main process starts another
                    os.kill(children[0], signal.SIGKILL)
                else:  # the whole worker, as a machine losing power; its supervisor starts a new one
                    victim.kill9()
                    rig.start_worker()
                kills += 1
                last_fault = time.monotonic()
            outcome.notes.append(f"{kills} kills")
        elif scenario == "pg-restart":
            at(0.3)
            pg.restart_immediate()
            last_fault = time.monotonic()
        elif scenario == "redis-loss":
            at(0.3)
            broker.kill9()  # keeps nothing on disk: every queued batch is gone
            time.sleep(1.0)
            broker.start()
            last_fault = time.monotonic()
        elif scenario == "storm":
            at(0.2)
            rig.standin("/_standin/config", {"share_429": 0.3, "share_503": 0.3, "retry_after": "1"})
            time.sleep(15)
            rig.standin("/_standin/config", {"share_429": 0.0, "share_503": 0.0})
            last_fault = time.monotonic()
        elif scenario == "sigterm":
            at(0.3)
            for worker in rig.live_workers():
                os.killpg(worker.process.pid, signal.SIGTERM)
            for worker in rig.workers:
                worker.process.wait(timeout=120)
            rig.start_worker()
            rig.start_worker()
            last_fault = time.monotonic()
        elif scenario == "unsubscribe":
            unsubscribed = one_click_unsubscribes(send_id, list_id, 100, rng, sent_share)
            last_fault = time.monotonic()
        deadline = last_fault + AFTER_FAULT_S

        def done() -> bool:
            try:
                with session_scope() as session:
                    return session.scalar(select(Send.status).where(Send.id == send_id)) is SendStatus.DONE
            except Exception:  # the database may be restarting
                return False

        while not done():
            if time.monotonic() > deadline and not outcome.manual:
                outcome.manual += 1  # what an operator would do: resume re-enqueues the open ranges
                with session_scope() as session:
                    sends.control(session, send_id, sends.SendAction.RESUME, "bench")
            if time.monotonic() > deadline + AFTER_FAULT_S:
                outcome.notes.append(f"not done: {counts()}")
                break
            time.sleep(0.2)
        finished = time.monotonic()
        outcome.seconds, outcome.after_fault = finished - started, finished - last_fault
        tally(outcome, rig, send_id, unsubscribed)
        final = counts()
        outcome.notes.append(f"ledger sent {final['sent']}, skipped {final['skipped']}, failed {final['failed']}")
        return outcome
    finally:
        rig.close()
        dispose_engines()


def one_click_unsubscribes(send_id: int, list_id: int, count: int, rng: random.Random,
                           sent_share: Callable[[], float]) -> dict[str, float]:
    """RFC 8058 one-click POSTs to the real web app while the send runs, spread over its first three quarters;
    returns address -> the moment its unsubscribe had committed (the response came back)."""
    with session_scope() as session:
        people = session.execute(select(Subscriber.email, Subscriber.id).order_by(Subscriber.id)).all()
    chosen = rng.sample(people[len(people) // 10:], count)
    client = TestClient(create_app())
    committed: dict[str, float] = {}
    wait_for(lambda: sent_share() >= 0.05, timeout=120, what="the send to start")
    for index, (email, subscriber_id) in enumerate(chosen):
        wait_for(lambda index=index: sent_share() >= 0.05 + 0.7 * index / count,  # type: ignore[misc]
                 timeout=120, what="progress")
        url = link(Purpose.UNSUBSCRIBE, subscriber_id, list_id)
        response = client.post(urllib.parse.urlsplit(url).path, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200, response.text
        committed[email] = time.time()
    return committed


def tally(outcome: Outcome, rig: Rig, send_id: int, unsubscribed: dict[str, float]) -> None:
    received = rig.standin("/_standin/received?full=1")
    accepted = received["accepted"]
    assert isinstance(accepted, list)
    counts = Counter(str(a["email"]) for a in accepted)
    with session_scope() as session:
        rows = session.execute(select(Subscriber.email, Delivery.status)
                               .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                               .where(Delivery.send_id == send_id)).all()
    expected = {email for email, status in rows if status is not DeliveryStatus.SKIPPED}
    outcome.planned = len(rows)
    outcome.accepted = sum(counts.values())
    outcome.unique = len(counts)
    outcome.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    outcome.missing = sum(1 for email in expected if counts[email] == 0)
    if unsubscribed:
        late = sum(1 for a in accepted if a["email"] in unsubscribed
                   and float(a["received_at"]) > unsubscribed[str(a["email"])])
        in_flight = sum(1 for email in unsubscribed if counts[email]) - late
        outcome.notes.append(f"unsubscribed {len(unsubscribed)}: {late} got it from a request that started after "
                             f"their unsubscribe committed, {in_flight} from one that started before")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--scenarios", nargs="*", default=SCENARIOS, choices=SCENARIOS)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--write", action="store_true", help="Write the table into docs/benchmarks.md.")
    args = parser.parse_args()
    pg = PrivatePostgres().start()
    broker = PrivateRedis(Path(tempfile.mkdtemp(prefix="faults-redis-")))
    broker.start()
    results = []
    try:
        for scenario in args.scenarios:
            outcome = run(scenario, args.recipients, pg, broker, args.seed)
            results.append(outcome)
            print(row(outcome), flush=True)
    finally:
        broker.stop()
        pg.destroy()
    settings = get_settings()
    lines = ["## Faults during a send (`python -m bench.faults`)", "",
             f"Command: `.venv/bin/python -m bench.faults --recipients {args.recipients} --write`. A private "
             "PostgreSQL and Redis, 2 Celery workers (concurrency 1) and `newsletter beat`, the SendGrid stand-in as "
             f"a server answering after {STANDIN_DELAY_S} s; default settings (lease {settings.claim_lease_s} s, "
             f"batches of {settings.batch_size}). Seconds: from the start to `done`, and from the last fault to "
             "`done`.", "",
             HEADER, "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [row(r) for r in results]
    lines += ["", "Goals: 0 missing everywhere; 0 duplicates for pg-restart, redis-loss, storm and sigterm; kill -9 at "
              "most one batch per kill (< 7,000 per 20 kills on 50,000); done within 60 s of the last fault; nobody "
              "whose unsubscribe committed before their batch was handed over gets it."]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("faults", body)


HEADER = ("| scenario | planned | accepted by the peer | unique | duplicates | missing | seconds to done | "
          "after last fault | manual steps | notes |")


def row(r: Outcome) -> str:
    return (f"| {r.scenario} | {r.planned:,} | {r.accepted:,} | {r.unique:,} | {r.duplicates:,} | {r.missing:,} | "
            f"{r.seconds:.0f} | {r.after_fault:.0f} | {r.manual} | {'; '.join(r.notes)} |")


if __name__ == "__main__":
    main()
