"""Raw HTTP/1.1 over a socket, for what an HTTP library will not send: a body of any size streamed chunked, a
Content-Length that lies, and reading the answer while the body is still going out (as an attacker's client does)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

MB = 1 << 20


class RawResponse:
    def __init__(self) -> None:
        self.data = b""
        self.done = threading.Event()

    @property
    def status(self) -> int | None:
        match = re.match(rb"HTTP/1\.1 (\d{3})", self.data)
        return int(match.group(1)) if match else None


def post_raw(base: str, path: str, headers: dict[str, str], chunks: Iterator[bytes],
          timeout: float = 60) -> tuple[RawResponse, int]:
    """Send the request; a reader thread collects the answer while the body is still going out.

    Returns the answer and how many body bytes the server let us send before it closed the connection."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    response = RawResponse()

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                response.data += chunk
        except OSError:
            pass
        finally:
            response.done.set()

    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(head.encode() + b"\r\n")
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    try:
        for chunk in chunks:
            if response.status is not None:
                break
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the server closed the connection on us: what we want once it has answered
    response.done.wait(timeout)
    sock.close()
    return response, sent


def chunked(total: int, piece: int = MB) -> Iterator[bytes]:
    block = b"[" + b"1," * (piece // 2 - 1) + b"1"
    for _ in range(total // piece):
        yield f"{len(block):x}\r\n".encode() + block + b"\r\n"
    yield b"0\r\n\r\n"
