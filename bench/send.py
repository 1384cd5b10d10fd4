"""Send throughput with real parts: PostgreSQL, Redis, 2 Celery worker processes, and either the SendGrid
stand-in (a separate process) or Postfix's smtp-sink. Prints wall time, recipients/s and worker peak RSS.

Run: .venv/bin/python -m bench.send [--sizes 100000 1000000] [--paths sendgrid smtp smtp-dkim-rsa smtp-dkim-dual]
smtp-dkim-rsa signs every message with an RSA-2048 DKIM key; smtp-dkim-dual adds an Ed25519 signature beside it.
--merge-tags sends the issue with two merge tags in every message (the name and a custom field), so the cost of
reading the subscribers' fields and filling two more slots per recipient can be compared with a plain run.
--segment EXPR sends to a segment of the list instead of all of it (planned through the compiled expression; with
an expression every bench subscriber matches, the cost of planning through a segment); the time until the plan is
stored ("planned after") is printed with --batch-sizes.
NEWSLETTER_BENCH_REDIS picks the Redis database the bench flushes and uses (default db 13).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from bench.database import ADMIN_URL, create_database
from bench.report import write_section
from mailer.db import dispose_engines, session_scope
from mailer.dkim_signing import signer_from_settings
from mailer.settings import get_settings, reset_settings
from mailer.store import save_issue
from newsletter.migrate import upgrade
from subscribers import audience, mailing_lists
from subscribers.models import MailingList
from worker import sends
from worker.app import reconfigure
from worker.stats import send_counters

# NEWSLETTER_BENCH_BROKER (or NEWSLETTER_BENCH_REDIS): the Redis db the bench flushes and uses as broker.
BROKER = os.environ.get("NEWSLETTER_BENCH_BROKER") or os.environ.get("NEWSLETTER_BENCH_REDIS",
                                                                     "redis://127.0.0.1:6379/13")
DKIM_PATHS = ("smtp-dkim-rsa", "smtp-dkim-dual")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of the biggest process in a worker's tree: the pool child does the work."""
    peak = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(pid) or status.parent.name == str(pid):
            peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]))
    return peak / 1024


MERGE_LINE = 'Dear {{ subscriber.name }}, here is the news for {{ subscriber.fields.city | default("you") }}.\n\n'


def with_merge_tags(source: str) -> str:
    """The example issue with two merge tags (the name and one custom field) opening its intro."""
    head, separator, body = source.partition("\n---\n")
    return head + separator + MERGE_LINE + body


def populate(url: str, size: int, tracked: bool = True, merge_tags: bool = False) -> tuple[int, int]:
    os.environ["NEWSLETTER_DATABASE_URL"] = url

    reset_settings()
    dispose_engines()
    upgrade(url)

    with session_scope() as session:
        mailing_list = mailing_lists.create_list(session, "bench", "Bench", double_opt_in=False)
        mailing_lists.set_list_tracking(session, mailing_list, clicks=tracked, opens=tracked)
        source = (ROOT / "examples/issues/2023-09-22-digital-digest.md").read_text()
        issue = save_issue(session, with_merge_tags(source) if merge_tags else source)
        list_id, issue_id = mailing_list.id, issue.id
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO subscribers (email, name, attributes, created_at) "
                     "SELECT 'r' || g || '@example' || (g %% 97) || '.com', 'Reader ' || g, "
                     "json_build_object('city', 'City ' || (g %% 500), 'plan', 'basic', 'since', 2000 + g %% 25), "
                     "now() FROM generate_series(1, %s) g", (size,))
        conn.execute("INSERT INTO subscriptions (subscriber_id, list_id, status, source, created_at, confirmed_at) "
                     "SELECT id, %s, 'confirmed', 'bench', now(), now() FROM subscribers", (list_id,))
    with psycopg.connect(url, autocommit=True) as conn:  # a live database has statistics (autovacuum, imports)
        conn.execute("VACUUM ANALYZE subscribers, subscriptions")
    return list_id, issue_id


def dkim_env(path: str, directory: Path) -> dict[str, str]:
    """Fresh keys for a DKIM variant, configured the way an operator would (key files and selectors)."""
    if path not in DKIM_PATHS:
        return {}

    def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, name: str) -> str:
        target = directory / name
        target.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        return str(target)

    env = {"NEWSLETTER_DKIM_SELECTOR": "bench-rsa", "NEWSLETTER_DKIM_DOMAIN": "news.example.com",
           "NEWSLETTER_DKIM_PRIVATE_KEY_PATH": pem(rsa.generate_private_key(65537, 2048), "rsa.pem")}
    if path == "smtp-dkim-dual":
        env |= {"NEWSLETTER_DKIM_ED25519_SELECTOR": "bench-ed",
                "NEWSLETTER_DKIM_ED25519_PRIVATE_KEY_PATH": pem(ed25519.Ed25519PrivateKey.generate(), "ed.pem")}
    return env


def dkim_algorithms() -> str:
    reset_settings()
    signer = signer_from_settings(get_settings())
    return " + ".join(key.algorithm for key in signer.keys) if signer else "none"


def run(size: int, path: str, batch_size: int = 1000, tracked: bool = True,
        merge_tags: bool = False, segment: str | None = None) -> dict[str, float | str]:
    name, url = create_database()
    redis.Redis.from_url(BROKER).flushdb()
    tmp = Path(tempfile.mkdtemp())
    port = free_port()
    for variable in [v for v in os.environ if v.startswith("NEWSLETTER_DKIM_")]:  # from an earlier variant
        del os.environ[variable]
    env = dict(os.environ) | {
        "NEWSLETTER_DATABASE_URL": url, "NEWSLETTER_BROKER_URL": BROKER, "NEWSLETTER_DATA_DIR": str(tmp),
        "NEWSLETTER_SECRET_KEY": "bench-secret-bench-secret-bench-secret", "NEWSLETTER_BATCH_SIZE": str(batch_size),
        "NEWSLETTER_BASE_URL": "https://news.example.com",
        "NEWSLETTER_TRANSPORT": "sendgrid" if path == "sendgrid" else "smtp",
        "NEWSLETTER_SENDGRID_HOST": f"http://127.0.0.1:{port}", "NEWSLETTER_SENDGRID_API_KEY": "SG.test-key",
        "NEWSLETTER_SMTP_HOST": "127.0.0.1", "NEWSLETTER_SMTP_PORT": str(port)} | dkim_env(path, tmp)
    if path == "sendgrid":
        peer = subprocess.Popen([sys.executable, "-m", "tests.support.sendgrid_standin", "--port", str(port),
                                 "--no-bodies"], cwd=ROOT, stdout=subprocess.DEVNULL)
    else:
        # -c: a running count of completed DATA commands ("... mesg=N"), read back as what the peer received
        peer = subprocess.Popen(["smtp-sink", "-c", "-u", "root", f"127.0.0.1:{port}", "1024"],
                                stdout=(tmp / "smtp-sink.out").open("wb"))
    time.sleep(1)
    workers = []
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("NEWSLETTER_")})
        list_id, issue_id = populate(url, size, tracked, merge_tags)
        if segment:  # planned through the segment's compiled expression, inside the plan's INSERT .. SELECT
            with session_scope() as session:
                bench_list = session.get(MailingList, list_id)
                assert bench_list is not None
                audience.create_segment(session, bench_list, "bench", segment)
        for index in range(2):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "newsletter.cli.run", "worker", "--concurrency=1", f"--hostname=bench{index}@%h",
                 "--loglevel=WARNING"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(4)

        reconfigure()
        signing = dkim_algorithms()  # what the workers, started with the same environment, sign with
        load = os.getloadavg()[0]
        started = time.perf_counter()
        with session_scope() as session:
            options = sends.SendOptions(transport=env["NEWSLETTER_TRANSPORT"], segment="bench" if segment else None)
            send_id = sends.create(session, issue_id, list_id, options).id
        peak, planned_after = 0.0, 0.0
        while True:
            time.sleep(1)
            peak = max(peak, *(tree_rss_mb(w.pid) for w in workers))
            with session_scope() as session:
                counts = send_counters(session, send_id)
            if counts["planned"] and not planned_after:
                planned_after = time.perf_counter() - started  # to within the 1 s poll
            if counts["planned"] and counts["pending"] == 0 and counts["sending"] == 0:
                break
        seconds = time.perf_counter() - started
        if path == "sendgrid":
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_standin/received") as response:
                received = sum(json.load(response)["counts"].values())
        else:
            time.sleep(1)
            tallies = re.findall(rb"mesg=(\d+)", (tmp / "smtp-sink.out").read_bytes())
            received = int(tallies[-1]) if tallies else 0
        return {"size": size, "seconds": seconds, "rate": size / seconds, "rss": peak, "sent": counts["sent"],
                "received": received, "dkim": signing, "load": load, "planned_after": planned_after}
    finally:
        for worker in workers:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:  # a starved worker must not keep the database from being dropped
                worker.kill()
                worker.wait()
        peer.terminate()

        dispose_engines()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--paths", nargs="*", default=["sendgrid", "smtp"])
    parser.add_argument("--untracked", action="store_true",
                        help="Lists without click and open tracking (what tracking costs: compare with a plain run).")
    parser.add_argument("--merge-tags", action="store_true",
                        help="An issue with two merge tags per message, the name and a custom field (compare with a "
                             "plain run).")
    parser.add_argument("--segment", default=None, metavar="EXPR",
                        help='Send to a segment of the list, e.g. \'fields.plan = "basic"\' (every bench subscriber '
                             'matches it, so the same people are sent to: what planning through a segment costs).')
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[],
                        help="Only measure throughput at these batch sizes (printed, nothing written).")
    args = parser.parse_args()
    if args.batch_sizes:
        for path in args.paths:
            for size in args.sizes:
                for batch_size in args.batch_sizes:
                    r = run(size, path, batch_size, tracked=not args.untracked, merge_tags=args.merge_tags,
                            segment=args.segment)
                    print(f"| {path} | {size:,} | {batch_size} | {r['seconds']:.1f} | {r['rate']:,.0f} | "
                          f"{r['rss']:.0f} MB | {r['received']:,} | planned after {r['planned_after']:.0f} s |",
                          flush=True)
        return
    store = ROOT / "docs" / "bench-send.json"  # every (path, size) measured so far, so runs add up
    known = {f"{r['path']}:{r['size']}": r for r in (json.loads(store.read_text()) if store.exists() else [])}
    for path in args.paths:
        for size in args.sizes:
            label = (path + (", untracked" if args.untracked else "") + (", merge tags" if args.merge_tags else "")
                     + (", segment" if args.segment else ""))
            known[f"{label}:{size}"] = run(size, path, tracked=not args.untracked, merge_tags=args.merge_tags,
                                           segment=args.segment) | {"path": label}
    store.write_text(json.dumps(sorted(known.values(), key=lambda r: (r["path"], r["size"])), indent=1))
    results = sorted(known.values(), key=lambda r: (r["path"], r["size"]))
    lines = ["## Sending (`python -m bench.send`)", "",
             "PostgreSQL + Redis on this machine, 2 Celery worker processes (concurrency 1 each), batches of 1,000, "
             "the example issue. SendGrid path: the real `sendgrid` client against the stand-in (a separate "
             "process); SMTP path: Postfix's `smtp-sink`. Time is from the send's start to the last row marked. "
             "Received: what the stand-in accepted, or the DATA commands smtp-sink completed. DKIM: the "
             "signatures each message carries (`smtp-dkim-*`: fresh RSA-2048 and Ed25519 keys, relaxed/relaxed). "
             "Load: the machine's 1-minute load average when the send started (2 cores, shared). Lists track clicks "
             "and opens (links rewritten, a pixel, one more value per recipient) unless the path says untracked; every "
             "subscriber has three custom fields, and `merge tags` paths send an issue whose intro opens with "
             "two merge tags (the name and a field), so each batch also reads the fields.", "",
             "| path | recipients | seconds | recipients/s | worker peak RSS | sent (ledger) | received (peer) "
             "| DKIM | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        load = f"{r['load']:.1f}" if "load" in r else "?"
        lines.append(f"| {r['path']} | {r['size']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | {r['rss']:.0f} MB | "
                     f"{r['sent']:,} | {r['received']:,} | {r.get('dkim', 'none')} | {load} |")
    lines += ["", "Goals: 1M via SendGrid in <= 120 s; SMTP >= 2,000 messages/s, also with RSA-2048 DKIM; "
              "worker RSS <= 150 MB and flat."]
    body = "\n".join(lines)
    print(body)
    write_section("send", body)


if __name__ == "__main__":
    main()
