"""An independent DKIM verifier for tests: OpenDKIM's `opendkim-testmsg` (C, libopendkim), fed our key records.

opendkim-testmsg has no option for test keys: it asks DNS. So it runs in a fresh network and mount namespace
(`unshare`, as root) where /etc/resolv.conf points at a tiny DNS server on that namespace's own loopback,
answering TXT queries from the records given. Nothing outside the namespace is touched or asked.

`verify(message, records)` returns (exit code, output); 0 means every signature OpenDKIM looked at passed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.TXT import TXT

TESTMSG = shutil.which("opendkim-testmsg") or "/usr/sbin/opendkim-testmsg"
ROOT = Path(__file__).resolve().parent.parent.parent


def available() -> bool:
    return Path(TESTMSG).exists() and shutil.which("unshare") is not None and os.geteuid() == 0


def verify(message: bytes, records: dict[str, str], timeout_s: float = 30.0) -> tuple[int, str]:
    """Run opendkim-testmsg on message with DNS answering records ({"sel._domainkey.example.com": "v=DKIM1; ..."})."""
    with tempfile.TemporaryDirectory() as tmp:
        zone = Path(tmp) / "records.json"
        zone.write_text(json.dumps(records))
        done = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "--",
                               sys.executable, "-m", "tests.support.opendkim", "--records", str(zone)],
                              input=message, capture_output=True, timeout=timeout_s, cwd=ROOT)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def _loopback_up() -> None:
    """A new network namespace starts with lo down; SIOCSIFFLAGS brings it up without needing iproute2."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b""))


def _answer(query: dns.message.Message, records: dict[str, str]) -> dns.message.Message:
    response = dns.message.make_response(query)
    question = query.question[0]
    name = question.name.to_text().rstrip(".").lower()
    if question.rdtype != dns.rdatatype.TXT or name not in records:
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response
    text = records[name].encode()
    strings = [text[i:i + 255] for i in range(0, len(text), 255)]  # one character-string holds 255 bytes
    rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.TXT)
    rrset.add(TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings), ttl=60)
    response.answer.append(rrset)
    return response


def _serve_udp(sock: socket.socket, records: dict[str, str]) -> None:
    while True:
        data, peer = sock.recvfrom(4096)
        sock.sendto(_answer(dns.message.from_wire(data), records).to_wire(), peer)


def _serve_tcp(sock: socket.socket, records: dict[str, str]) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            size = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
            wire = _answer(dns.message.from_wire(conn.recv(size, socket.MSG_WAITALL)), records).to_wire()
            conn.sendall(struct.pack("!H", len(wire)) + wire)


def _inside(records: dict[str, str]) -> int:
    """In the namespace: loopback up, resolv.conf bound over, DNS served, opendkim-testmsg run on stdin."""
    _loopback_up()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 53))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 53))
    tcp.listen(8)
    for target, sock in ((_serve_udp, udp), (_serve_tcp, tcp)):
        threading.Thread(target=target, args=(sock, records), daemon=True).start()
    with tempfile.NamedTemporaryFile("w", suffix=".resolv", delete=False) as resolv:
        resolv.write("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
    subprocess.run(["mount", "--bind", resolv.name, "/etc/resolv.conf"], check=True)  # this namespace only
    try:
        done = subprocess.run([TESTMSG], stdin=sys.stdin.buffer, capture_output=True, timeout=20)
    finally:
        os.unlink(resolv.name)
    sys.stdout.buffer.write(done.stdout + done.stderr)
    return done.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=Path, required=True)
    args = parser.parse_args()
    records = {name.lower().rstrip("."): value for name, value in json.loads(args.records.read_text()).items()}
    sys.exit(_inside(records))


if __name__ == "__main__":
    main()
