"""Public pages under a crowd: wrk against a real `newsletter serve` on PostgreSQL and Redis, 20,000 subscribers.

Run: .venv/bin/python -m bench.web [--workers 2] [--seconds 10] [--connections 100] [--rate 1500]
     [--redis redis://127.0.0.1:6379/7]

Routes: GET the hosted subscribe page, POST the embedded sign-up form (a new address each request), POST confirm
(distinct tokens, with the CSRF cookie and field a browser sends), POST one-click unsubscribe (distinct tokens),
GET the archive. Each route runs twice: closed loop (every connection sends its next request as soon as it has an
answer: the most the server can answer, and a tail that is mostly the queue) and paced at --rate (the goal's rate,
held by a fixed schedule whatever the latency: the latency is what a request sees at that rate). Each wrk script
spreads tokens over its threads, and the two runs of a route use disjoint halves, so no two requests share one.
After every run the bench checks the server answers a page at once and no connection of the app is left in a
transaction.
Loopback only; each route runs for --seconds. The Redis database given is flushed before and after (use your own).
The sign-up rate limits are raised (they would answer 429 after 10 posts from the one client address) but still
counted in Redis on every post, as in production.
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
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis

from bench.database import ADMIN_URL, create_database
from bench.report import write_section
from mailer.db import dispose_engines, session_scope
from mailer.settings import reset_settings
from mailer.store import save_issue
from newsletter.migrate import upgrade
from subscribers import mailing_lists
from subscribers.tokens import LinkMaker, Purpose
from worker.models import Send, SendStatus

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-bench-secret-bench-secret"
PHASES = ("closed", "paced")
WRK_THREADS = 2
CSRF = "b" * 43
SUBSCRIBERS = 60_000  # each token route uses one token a request: 30,000 for each of its two runs

# Paced runs hold a fixed request rate: each wrk thread sends its next request at the next slot of its own schedule
# (BENCH_PERIOD_MS apart; a clock from LuaJIT's ffi, since Lua's own has whole seconds only), whatever the
# latency, as long as one of its connections is free. A plain pause after each answer would let a slower server
# receive fewer requests, and so measure it at a lighter load than the rate it was asked to hold.
DONE_LUA = """
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int, bench_timespec *); ]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end
local period = tonumber(os.getenv("BENCH_PERIOD_MS") or "0")
local slot = nil
if period > 0 then
  delay = function()
    local now = now_ms()
    if slot == nil or slot < now - 1000 then slot = now end
    slot = slot + period
    return math.max(0, math.floor(slot - now))
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def populate(url: str) -> dict[str, list[str]]:
    """A list of SUBSCRIBERS confirmed readers, the same people pending on a second list, one sent issue."""
    os.environ["NEWSLETTER_DATABASE_URL"] = url
    reset_settings()
    dispose_engines()
    upgrade(url)
    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
        pending = mailing_lists.create_list(session, "pending", "Pending")
        issue = save_issue(session, (ROOT / "examples/issues/2023-09-22-digital-digest.md").read_text())
        session.flush()
        session.add(Send(issue_id=issue.id, list_id=weekly.id, status=SendStatus.DONE, transport="outbox"))
        weekly_id, pending_id = weekly.id, pending.id
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO subscribers (email, name, attributes, created_at) "
                     "SELECT 'r' || g || '@example' || (g %% 97) || '.com', 'Reader ' || g, '{}', now() "
                     "FROM generate_series(1, %s) g", (SUBSCRIBERS,))
        conn.execute("INSERT INTO subscriptions (subscriber_id, list_id, status, source, created_at, confirmed_at) "
                     "SELECT id, %s, 'confirmed', 'bench', now(), now() FROM subscribers", (weekly_id,))
        conn.execute("INSERT INTO subscriptions (subscriber_id, list_id, status, source, created_at) "
                     "SELECT id, %s, 'pending', 'bench', now() - interval '1 hour' FROM subscribers", (pending_id,))
        ids = [row[0] for row in conn.execute("SELECT id FROM subscribers ORDER BY id")]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    unsubscribe, confirm = LinkMaker(Purpose.UNSUBSCRIBE), LinkMaker(Purpose.CONFIRM)
    return {"unsubscribe": [urlsplit(unsubscribe(i, weekly_id)).path for i in ids],
            "confirm": [urlsplit(confirm(i, pending_id)).path for i in ids]}


def lua_paths(name: str, paths: list[str], method: str, body: str, headers: dict[str, str], workdir: Path) -> Path:
    """A wrk script walking `paths`, each thread its own slice, so no token is used twice during a run."""
    lines = ["paths = {" + ",".join(json.dumps(p) for p in paths) + "}",
             "local threads = {}",
             "function setup(thread) thread:set('id', #threads); table.insert(threads, thread) end",
             "function init(args) id = tonumber(id) or 0; n = 0 end",
             f"headers = {{{', '.join(f'[{json.dumps(k)}] = {json.dumps(v)}' for k, v in headers.items())}}}",
             "request = function()",
             "  local i = (id * 10007 + n) % #paths + 1",
             "  n = n + 1",
             f"  return wrk.format({json.dumps(method)}, paths[i], headers, {json.dumps(body) if body else 'nil'})",
             "end", DONE_LUA]
    path = workdir / f"{name}.lua"
    path.write_text("\n".join(lines))
    return path


def lua_signup(workdir: Path) -> Path:
    """Embedded-form posts from another site, a new address each request (per-thread prefix and counter)."""
    script = """
local threads = {}
function setup(thread) thread:set('id', #threads); table.insert(threads, thread) end
function init(args) id = tonumber(id) or 0; n = 0; run = tostring(os.time()) end
request = function()
  n = n + 1
  local body = "email=s" .. run .. "-" .. id .. "-" .. n .. "%40example.org&name=&website="
  return wrk.format("POST", "/lists/weekly/embed", {["Content-Type"] = "application/x-www-form-urlencoded",
    ["Origin"] = "https://blog.example.org"}, body)
end
""" + DONE_LUA
    path = workdir / "signup.lua"
    path.write_text(script)
    return path


def lua_get(name: str, workdir: Path) -> Path:
    path = workdir / f"{name}.lua"
    path.write_text(DONE_LUA)
    return path


def wrk(base: str, script: Path, seconds: int, connections: int, rate: float = 0) -> dict[str, float]:
    """One wrk run: as many requests as the server answers, or with `rate`, that many a second (see DONE_LUA)."""
    out = subprocess.run(["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
                          "-s", str(script), base + "/lists/weekly/subscribe"],
                         capture_output=True, text=True, timeout=seconds + 60,
                         env=dict(os.environ, BENCH_PERIOD_MS=f"{WRK_THREADS * 1000 / rate:g}" if rate else "0"))
    match = re.search(r"BENCH (\{.*\})", out.stdout)
    if not match:
        raise RuntimeError(f"wrk said: {out.stdout}\n{out.stderr}")
    figures: dict[str, float] = json.loads(match.group(1))
    figures["rps"] = figures["requests"] / figures["seconds"]
    figures["errors"] = sum(figures[k] for k in ("connect", "read", "write", "status", "timeout"))
    return figures


def profile(server_pid: int, directory: Path, name: str, seconds: int) -> list[subprocess.Popen[bytes]]:
    """py-spy on every process of the server (the supervisor and its workers) for the length of one route."""
    directory.mkdir(parents=True, exist_ok=True)
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    # BENCH_PYSPY_GIL=1: only threads holding the interpreter lock, i.e. where the CPU goes, not where threads wait.
    gil = ["--gil"] if os.environ.get("BENCH_PYSPY_GIL") else []
    return [subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--nonblocking", *gil, "-p",
                              pid, "-d", str(max(1, seconds - 1)), "-r", "250", "-f", "raw", "-o",
                              str(directory / f"{name}-{pid}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid in [str(server_pid), *children]]


def after_burst(base: str, url: str) -> tuple[float, int]:
    """Seconds a page takes right after the burst, and the app's connections still in a transaction once the server
    has finished what it had accepted (polled for up to 10 s): 0 means nothing is stuck."""
    started = time.perf_counter()
    with urllib.request.urlopen(base + "/lists/weekly/subscribe", timeout=30) as response:
        response.read()
    took = time.perf_counter() - started
    name = url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                               "AND state = 'idle in transaction'", (name,)).fetchone()
            stuck = int(row[0]) if row else 0
            if stuck == 0 or time.monotonic() > deadline:
                return took, stuck
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1500, help="the paced runs' requests/s (the goal's rate)")
    parser.add_argument("--redis", default=os.environ.get("NEWSLETTER_BENCH_REDIS", "redis://127.0.0.1:6379/7"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy (pip install py-spy) samples every server process during each route and writes "
                             "collapsed stacks to DIR/<route>-<pid>.txt: where the time goes")
    parser.add_argument("--routes", nargs="*", default=None, metavar="N",
                        help="only these routes, by number (1-5, in the order printed)")
    parser.add_argument("--server-root", type=Path, default=None,
                        help="serve the code of another checkout (a 'before' figure)")
    parser.add_argument("--single-serve", action="store_true",
                        help="run `serve` without --workers and with its access log (a checkout from before them)")
    args = parser.parse_args()

    name, url = create_database()
    redis.Redis.from_url(args.redis).flushdb()
    workdir = Path(tempfile.mkdtemp())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ) | {
        "NEWSLETTER_DATABASE_URL": url, "NEWSLETTER_BROKER_URL": args.redis, "NEWSLETTER_DATA_DIR": str(workdir),
        # Production mode refuses a base URL that is not public https; the links it signs are never followed here
        # (the load goes to `base`), so a public name stands in.
        "NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BASE_URL": "https://news.example.com",
        "NEWSLETTER_ENV": "production",
        "NEWSLETTER_SUBSCRIBE_RATE_PER_IP": "1000000000", "NEWSLETTER_SUBSCRIBE_RATE_PER_EMAIL": "1000000000"}
    os.environ.update({k: v for k, v in env.items() if k.startswith("NEWSLETTER_")})
    server = None
    load_before = os.getloadavg()
    try:
        data = populate(url)
        command = [sys.executable, "-m", "newsletter.cli.run", "serve", "--port", str(port)]
        if not args.single_serve:
            command += ["--workers", str(args.workers), "--no-access-log"]
        if args.server_root is not None:
            env["PYTHONPATH"] = str(args.server_root)
        server = subprocess.Popen(command, cwd=args.server_root or ROOT, env=env,
                                  stdout=(workdir / "serve.log").open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.3)
        cookie = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"nl_csrf={CSRF}"}
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        half = SUBSCRIBERS // 2
        tokens = {phase: {key: data[key][n * half:(n + 1) * half] for key in ("confirm", "unsubscribe")}
                  for n, phase in enumerate(PHASES)}
        routes: list[tuple[str, Callable[[str], Path]]] = [
            ("GET /lists/{slug}/subscribe", lambda phase: lua_get("subscribe_page", workdir)),
            ("POST /lists/{slug}/embed (embedded form)", lambda phase: lua_signup(workdir)),
            ("POST /confirm/{token}", lambda phase: lua_paths(
                f"confirm-{phase}", tokens[phase]["confirm"], "POST", f"csrf_token={CSRF}", cookie, workdir)),
            ("POST /unsubscribe/{token} (one-click)", lambda phase: lua_paths(
                f"unsubscribe-{phase}", tokens[phase]["unsubscribe"], "POST", "List-Unsubscribe=One-Click", form,
                workdir)),
            ("GET /archive", lambda phase: lua_paths("archive", ["/archive"], "GET", "", {}, workdir)),
        ]
        rows = []
        for number, (label, script_for) in enumerate(routes, start=1):
            if args.routes and str(number) not in args.routes:
                continue
            for phase in PHASES:
                samplers = (profile(server.pid, args.profile, f"route{number}-{phase}", args.seconds)
                            if args.profile else [])
                figures = wrk(base, script_for(phase), args.seconds, args.connections,
                              args.rate if phase == "paced" else 0)
                for sampler in samplers:
                    sampler.wait(timeout=30)
                took, stuck = after_burst(base, url)
                load = "closed loop" if phase == "closed" else f"paced, ~{args.rate:,}/s"
                rows.append((label, load, figures, took, stuck))
                print(f"{label:<42} {load:<15} {figures['rps']:6.0f} req/s  p50 {figures['p50_ms']:6.1f} ms  "
                      f"p99 {figures['p99_ms']:6.1f} ms  errors {figures['errors']:.0f}  "
                      f"then a page in {took * 1000:.0f} ms, {stuck} idle in transaction", flush=True)
        load_after = os.getloadavg()
        log = (workdir / "serve.log").read_text(errors="replace")
        tracebacks = log.count("Traceback")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        dispose_engines()
        redis.Redis.from_url(args.redis).flushdb()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}; tracebacks in the server log: "
          f"{tracebacks}")
    if args.no_write:
        return
    table = ["| route | load | requests/s | p50 | p99 | errors | next page after the burst |",
             "|---|---|---|---|---|---|---|"]
    for label, load, figures, took, stuck in rows:
        table.append(f"| {label} | {load} | {figures['rps']:.0f} | {figures['p50_ms']:.1f} ms | "
                     f"{figures['p99_ms']:.1f} ms | {figures['errors']:.0f} | {took * 1000:.0f} ms, {stuck} idle in "
                     "transaction |")
    body = (f"## Public pages under load (`python -m bench.web`)\n\n"
            f"`.venv/bin/python -m bench.web --workers {args.workers} --seconds {args.seconds} "
            f"--connections {args.connections} --rate {args.rate}`: wrk -t2 -c{args.connections} for {args.seconds} s "
            "a run, two runs a route (closed loop, then paced at the goal's rate), against "
            f"`newsletter serve --workers {args.workers}` on PostgreSQL and Redis (rate limits counted in Redis), "
            f"{SUBSCRIBERS:,} subscribers, wrk, server, PostgreSQL and Redis all on the same machine. Load average "
            f"(1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after (the machine is shared).\n\n"
            + "\n".join(table))
    write_section("web", body)


if __name__ == "__main__":
    main()
