"""A local stand-in for a CAPTCHA provider's siteverify endpoint (Turnstile and hCaptcha share its shape).

It answers as the real ones do: form fields `secret`, `response`, `remoteip` in; `{"success": bool, ...}` out.
A token passes once (the providers refuse a replayed token) and only with the right secret.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class CaptchaStandIn:
    secret: str
    url: str = ""
    good_tokens: set[str] = field(default_factory=set)
    calls: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def captcha_provider(secret: str) -> Iterator[CaptchaStandIn]:
    state = CaptchaStandIn(secret=secret)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            fields = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            with lock:
                state.calls.append(fields)
                ok = fields.get("secret") == state.secret and fields.get("response") in state.good_tokens
                if ok:
                    state.good_tokens.discard(fields["response"])
            codes = [] if ok else ["invalid-input-response"]
            body = json.dumps({"success": ok, "error-codes": codes}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/siteverify"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
