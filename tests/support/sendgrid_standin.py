"""A local stand-in of SendGrid's v3 mail-send API: a real HTTP server that validates like SendGrid does.

Use it in-process (`SendGridStandIn().start()`) or as a process (`python -m tests.support.sendgrid_standin --port N`)
when several worker processes talk to it; then `GET /_standin/received` returns counts per address and
`POST /_standin/config` sets failure shares. It records what it accepted and can produce Event Webhook payloads
for those messages, so the events pipeline can be tested against the same sends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "SG.test-key"


@dataclass
class Behaviour:
    share_429: float = 0.0
    share_500: float = 0.0
    share_503: float = 0.0
    delay_s: float = 0.0
    always_401: bool = False
    retry_after: str = "0"


@dataclass
class Accepted:
    message_id: str
    email: str
    send_id: str | None
    delivery_id: str | None
    substitutions: dict[str, str]
    headers: dict[str, str]
    received_at: float = 0.0  # when its request arrived (epoch seconds): the moment it was handed over


@dataclass
class State:
    behaviour: Behaviour = field(default_factory=Behaviour)
    accepted: list[Accepted] = field(default_factory=list)
    requests: int = 0
    rejected: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    keep_bodies: bool = True
    bodies: list[dict[str, Any]] = field(default_factory=list)
    rolls: int = 0

    def next_roll(self) -> float:
        """Evenly spread values in [0, 1) (the golden-ratio sequence): a share of 0.2 fails every fifth request
        or so from the very first ones, so a short test always meets its failures, unlike with random()."""
        with self.lock:
            self.rolls += 1
            return (self.rolls * 0.6180339887498949) % 1.0


def _json_size(table: dict[str, Any]) -> int:
    """The table's size as JSON, exactly when it could matter: a string encodes to at most six bytes a character
    (\\uXXXX), so a table whose bound is under every limit is not encoded at all. The stand-in shares the
    benchmark machine's cores with the service it measures; it should not spend them re-encoding every request."""
    bound = 2 + sum(6 * (len(str(k)) + len(str(v))) + 6 for k, v in table.items())
    return bound if bound <= 10000 else len(json.dumps(table))


def render(body: dict[str, Any], index: int) -> tuple[str, str, str]:
    """(subject, text, html) as personalization `index` of an accepted request would be delivered: SendGrid
    replaces every substitution key found in the subject and content with that recipient's value."""
    table = body["personalizations"][index].get("substitutions") or {}
    parts = [body["subject"], body["content"][0]["value"], body["content"][1]["value"]]
    for key, value in table.items():
        parts = [part.replace(key, value) for part in parts]
    return parts[0], parts[1], parts[2]


def validate(body: Any) -> list[dict[str, str]]:
    """SendGrid's own rules that our transport could break."""
    errors: list[dict[str, str]] = []
    if not isinstance(body, dict):
        return [{"message": "Bad Request", "field": None}]  # type: ignore[dict-item]
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append({"field": "personalizations", "message": "The personalizations field is required."})
        personalizations = []
    if len(personalizations) > 1000:
        errors.append({"field": "personalizations", "message": "You may not have more than 1000 personalizations."})
    seen: set[str] = set()
    for index, item in enumerate(personalizations):
        to = item.get("to") if isinstance(item, dict) else None
        if not to:
            errors.append({"field": f"personalizations.{index}.to", "message": "The to array is required."})
            continue
        for address in to:
            email = str(address.get("email", "")).lower()
            if "@" not in email:
                errors.append({"field": f"personalizations.{index}.to", "message": "Invalid email address."})
            if email in seen:
                errors.append({"field": f"personalizations.{index}.to",
                               "message": "Each email address in the personalization block should be unique."})
            seen.add(email)
        if _json_size(item.get("substitutions") or {}) > 10000:
            errors.append({"field": f"personalizations.{index}.substitutions",
                           "message": "Substitutions may not exceed 10000 bytes per personalization."})
        if _json_size(item.get("custom_args") or {}) > 10000:
            errors.append({"field": f"personalizations.{index}.custom_args", "message": "custom_args too large."})
    sender = body.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        errors.append({"field": "from.email", "message": "The from email does not contain a valid address."})
    if not body.get("subject"):
        errors.append({"field": "subject", "message": "The subject is required."})
    content = body.get("content")
    if not isinstance(content, list) or not content or any(not c.get("value") for c in content):
        errors.append({"field": "content", "message": "Content value must be a string at least one character."})
    elif content[0].get("type") != "text/plain":
        errors.append({"field": "content.0.type", "message": "text/plain must come first."})
    return errors


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            return

        def handle(self) -> None:
            try:  # a client that timed out and hung up is not the server's error
                super().handle()
            except (BrokenPipeError, ConnectionResetError):
                return

        def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            if self.path.startswith("/_standin/received"):
                with state.lock:
                    counts = Counter(a.email for a in state.accepted)
                    self._reply(200, {"counts": counts, "requests": state.requests,
                                      "rejected": {str(k): v for k, v in state.rejected.items()},
                                      "accepted": [a.__dict__ for a in state.accepted]
                                      if "full=1" in self.path else []})
                return
            self._reply(404, {"errors": [{"message": "not found"}]})

        def do_POST(self) -> None:
            arrived = time.time()  # the request line and headers are in: the batch is being handed over
            raw = self._body()
            if self.path == "/_standin/config":
                config = json.loads(raw or b"{}")
                with state.lock:
                    for key, value in config.items():
                        setattr(state.behaviour, key, value)
                self._reply(200, {"ok": True})
                return
            if self.path == "/_standin/reset":
                with state.lock:
                    state.accepted.clear()
                    state.bodies.clear()
                    state.requests = 0
                    state.rejected.clear()
                self._reply(200, {"ok": True})
                return
            if self.path != "/v3/mail/send":
                self._reply(404, {"errors": [{"message": "not found"}]})
                return
            behaviour = state.behaviour
            with state.lock:
                state.requests += 1
            if behaviour.delay_s:
                time.sleep(behaviour.delay_s)
            if behaviour.always_401 or self.headers.get("Authorization") != f"Bearer {API_KEY}":
                self._count(401)
                self._reply(401, {"errors": [{"field": None, "message": "The provided authorization grant is "
                                                                        "invalid, expired, or revoked"}]})
                return
            roll = state.next_roll()
            if roll < behaviour.share_429:
                self._count(429)
                self._reply(429, {"errors": [{"message": "too many requests"}]},
                            {"Retry-After": behaviour.retry_after})
                return
            if roll < behaviour.share_429 + behaviour.share_500:
                self._count(500)
                self._reply(500, {"errors": [{"message": "internal error"}]})
                return
            if roll < behaviour.share_429 + behaviour.share_500 + behaviour.share_503:
                self._count(503)
                self._reply(503, {"errors": [{"message": "service unavailable"}]})
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._count(400)
                self._reply(400, {"errors": [{"field": None, "message": "Bad Request"}]})
                return
            errors = validate(body)
            if errors:
                self._count(400)
                self._reply(400, {"errors": errors})
                return
            message_id = uuid.uuid4().hex[:22]
            with state.lock:
                if state.keep_bodies:
                    state.bodies.append(body)
                shared_args = body.get("custom_args") or {}
                for item in body["personalizations"]:
                    args = shared_args | (item.get("custom_args") or {})
                    keep = state.keep_bodies  # benchmarks keep only what counting needs
                    state.accepted.append(Accepted(message_id, item["to"][0]["email"].lower(), args.get("send_id"),
                                                   args.get("delivery_id"),
                                                   (item.get("substitutions") or {}) if keep else {},
                                                   (item.get("headers") or {}) if keep else {}, arrived))
            self._reply(202, None, {"X-Message-Id": message_id})

        def _count(self, status: int) -> None:
            with state.lock:
                state.rejected[status] += 1

    return Handler


class SendGridStandIn:
    def __init__(self, port: int = 0, keep_bodies: bool = True) -> None:
        self.state = State(keep_bodies=keep_bodies)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self.state))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> SendGridStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def behaviour(self) -> Behaviour:
        return self.state.behaviour

    @property
    def accepted(self) -> list[Accepted]:
        return self.state.accepted

    def counts(self) -> Counter[str]:
        with self.state.lock:
            return Counter(a.email for a in self.state.accepted)

    def events(self, shares: dict[str, float], *, seed: int = 7, timestamp: int | None = None) -> list[dict[str, Any]]:
        return make_events(self.state.accepted, shares, seed=seed, timestamp=timestamp)


def make_events(accepted: list[Accepted], shares: dict[str, float], *, seed: int = 7,
                timestamp: int | None = None) -> list[dict[str, Any]]:
    """Event Webhook JSON for what was accepted: every message `processed` + `delivered`, except a share turned
    into the kinds given, e.g. {"bounce": 0.1} for 10% hard bounces, {"spamreport": 0.01}."""
    rng = random.Random(seed)
    now = timestamp or int(time.time())
    out: list[dict[str, Any]] = []
    for item in accepted:
        base = {"email": item.email, "timestamp": now, "sg_message_id": f"{item.message_id}.filter0001.1.0",
                "smtp-id": f"<{item.message_id}@ismtpd0001p1>", "category": ["newsletter"]}
        if item.send_id:
            base["send_id"] = item.send_id
        if item.delivery_id:
            base["delivery_id"] = item.delivery_id
        out.append(base | {"event": "processed", "sg_event_id": uuid.uuid4().hex})
        roll, kind = rng.random(), "delivered"
        for candidate, share in shares.items():
            if roll < share:
                kind = candidate
                break
            roll -= share
        event = base | {"sg_event_id": uuid.uuid4().hex}
        if kind == "bounce":
            event |= {"event": "bounce", "type": "bounce", "status": "5.1.1",
                      "reason": "550 5.1.1 The email account that you tried to reach does not exist."}
        elif kind == "blocked":
            event |= {"event": "bounce", "type": "blocked", "status": "4.7.1", "reason": "421 try again later"}
        elif kind == "dropped":
            event |= {"event": "dropped", "reason": "Bounced Address"}
        elif kind == "spamreport":
            out.append(base | {"event": "delivered", "sg_event_id": uuid.uuid4().hex, "response": "250 OK"})
            event |= {"event": "spamreport"}
        else:
            event |= {"event": "delivered", "response": "250 OK"}
        out.append(event)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-bodies", action="store_true", help="Do not keep request bodies (benchmarks).")
    args = parser.parse_args()
    standin = SendGridStandIn(args.port, keep_bodies=not args.no_bodies)
    print(standin.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        standin.server.serve_forever()


if __name__ == "__main__":
    main()
