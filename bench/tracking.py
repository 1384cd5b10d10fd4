"""The click redirect and the open pixel under load: wrk against a real server (uvicorn, N worker processes) on
PostgreSQL, every request with a distinct message's token (a Lua script walks a list of real tracked URLs).
Prints requests/s, p50, p99 and non-3xx/2xx answers; loopback only, bounded in time.

Run: .venv/bin/python -m bench.tracking [--messages 20000] [--seconds 15] [--connections 100] [--workers 2]
     [--rate 3000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from bench.database import create_database
from bench.report import write_section
from bench.send import ROOT, free_port, populate
from mailer.db import session_scope, utcnow
from subscribers.tokens import TrackTokens
from worker import campaigns, sends
from worker.models import Delivery

SECRET = "bench-secret-bench-secret-bench-secret"
LUA = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n * 7919) % #paths + 1])
end
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then delay = function() return pause end end
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50=%.2f p99=%.2f requests=%d errors=%d\\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def prepare(messages: int) -> tuple[str, list[str], list[str]]:
    """A database with one planned send of `messages` deliveries; its click and pixel paths."""
    _name, url = create_database()
    os.environ.update({"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BASE_URL": "https://news.example.com"})
    list_id, issue_id = populate(url, messages)
    with session_scope() as session:
        send_id = sends.create(session, issue_id, list_id,
                               sends.SendOptions(scheduled_at=utcnow() + timedelta(days=1))).id
        campaigns.start_send(session, send_id)
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
    tokens = TrackTokens()
    with session_scope() as session:
        ids = session.scalars(select(Delivery.id).where(Delivery.send_id == send_id)).all()
    clicks = [f"/c/{tokens(send_id, d)}/{1 + d % 2}" for d in ids]
    pixels = [f"/o/{tokens(send_id, d)}" for d in ids]
    return url, clicks, pixels


def wrk(port: int, paths: list[str], seconds: int, connections: int, tmp: Path,
        delay_ms: float = 0) -> dict[str, float]:
    """One wrk run; with `delay_ms`, each connection waits that long between its requests (a paced load, about
    connections / delay requests a second, instead of as many as the server can answer)."""
    listing = tmp / f"paths-{len(paths)}-{time.monotonic_ns()}.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = tmp / "bench.lua"
    script.write_text(LUA)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}"], env=dict(os.environ, BENCH_PATHS=str(listing),
                                                          BENCH_DELAY_MS=f"{delay_ms:g}"),
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    match = re.search(r"RESULT rps=([\d.]+) p50=([\d.]+) p99=([\d.]+) requests=(\d+) errors=(\d+)", out)
    if not match:
        raise SystemExit(f"wrk printed no result:\n{out}")
    rps, p50, p99, requests, errors = match.groups()
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(rps), "p50": float(p50), "p99": float(p99), "requests": int(requests),
            "errors": int(errors) + (int(non_2xx.group(1)) if non_2xx else 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=int, default=3000, help="the paced run's requests/s (the goal's rate)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    url, clicks, pixels = prepare(args.messages)
    tmp = Path(tempfile.mkdtemp())
    port = free_port()
    env = dict(os.environ, NEWSLETTER_DATABASE_URL=url, NEWSLETTER_DATA_DIR=str(tmp), NEWSLETTER_SECRET_KEY=SECRET,
               NEWSLETTER_BASE_URL="https://news.example.com")
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "newsletter.web.app:create_app", "--factory",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers),
                               "--no-access-log", "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        wrk(port, clicks[:200], 3, 20, tmp)  # warm the link caches of every worker process
        rows = []
        for label, paths in (("click redirect `/c/{token}/{n}`", clicks), ("open pixel `/o/{token}`", pixels)):
            for load, delay in (("as fast as it answers", 0.0),
                                (f"paced, ~{args.rate:,}/s", max(0.0, args.connections * 1000 / args.rate - 1))):
                figures = wrk(port, paths, args.seconds, args.connections, tmp, delay)
                print(f"{label}, {load}: {figures['rps']:,.0f} requests/s, p50 {figures['p50']:.1f} ms, "
                      f"p99 {figures['p99']:.1f} ms, errors {figures['errors']}")
                rows.append(f"| {label} | {load} | {figures['rps']:,.0f} | {figures['p50']:.1f} | "
                            f"{figures['p99']:.1f} | {figures['errors']} |")
    finally:
        server.terminate()
        server.wait(timeout=20)
    load = os.getloadavg()[0]
    write_section("tracking", "\n".join([
        "## Click redirect and open pixel (`python -m bench.tracking`)", "",
        f"wrk, 2 threads, {args.connections} connections, {args.seconds} s per route, against uvicorn with "
        f"{args.workers} worker processes on PostgreSQL 15, {args.messages:,} distinct messages' tokens "
        f"(load average {load:.1f} when it ended).", "",
        "The goal: >= 3,000 requests/s with p99 <= 20 ms. Each route runs twice: as fast as the server answers "
        "(closed loop: 100 connections always waiting, so by Little's law the mean latency is 100 / throughput and "
        "the tail is the queue), and paced: each connection waits 100 / rate seconds less 1 ms (about one answer) "
        "between its requests, which "
        "offers about the goal's rate and shows the latency a request sees at it.", "",
        "| route | load | requests/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|", *rows]))


if __name__ == "__main__":
    main()
