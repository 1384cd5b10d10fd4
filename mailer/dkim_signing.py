"""DKIM signatures (RFC 6376) through OpenSSL: relaxed/relaxed, RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

dkimpy does its RSA in pure Python (about 7 ms a message); `cryptography` signs the same in a fraction of a
millisecond, which is what lets a signed SMTP send run at line rate. Ed25519 signatures are short and cheap; RFC 8463
asks signers to send them beside an RSA one (most verifiers still know only RSA), so a signer holds one or more
keys and writes one DKIM-Signature header per key, all over the same header list and body hash.

The body is the expensive part of canonicalisation. Relaxed body canonicalisation only looks inside a line, so a
message assembled from pieces that each start at column 0 can be hashed from the canonical form of each piece:
mailer.message keeps the canonical form of a document's static segments beside their encoded bytes and canonicalises
only a recipient's own values (see body_hash).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailer.settings import Settings

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"
MIN_RSA_BITS = 1024  # RFC 8301: verifiers must refuse smaller keys; 2048 is what to generate

# What a reader sees or acts on, what decides how the message is displayed, and the RFC 8058 one-click pair.
SIGNED = ("from", "reply-to", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type",
          "content-transfer-encoding", "list-id", "list-unsubscribe", "list-unsubscribe-post", "feedback-id")
# Listed once more than they occur (RFC 6376 8.15), so nobody can add a second From, Subject or unsubscribe
# target to a signed message and keep the signature. Reply-To and Cc are sealed even when absent: an added Reply-To
# would turn a replayed newsletter into phishing with our valid signature. Feedback-ID is left open because relays
# such as SES add their own.
OVERSIGNED = frozenset(SIGNED) - {"feedback-id"}
SEALED_WHEN_ABSENT = ("reply-to", "cc")

_WSP_TO_COLLAPSE = re.compile(rb"[ \t]{2,}|\t")  # single spaces are already canonical; skip them
_HEADER_WSP = re.compile(rb"[ \t]+")
_CRLF_THEN_FIELD = re.compile(rb"\r\n(?![ \t])")


class DkimKeyError(ValueError):
    """A configured DKIM key that cannot be used; the message says which file and why."""


def relaxed_lines(data: bytes) -> bytes:
    """Relaxed body canonicalisation of whole lines (RFC 6376 3.4.4 a and b): runs of WSP become one space, WSP at
    the end of a line goes. The end-of-body rule (trailing empty lines) is left to body_hash."""
    if b"  " in data or b"\t" in data:
        data = _WSP_TO_COLLAPSE.sub(b" ", data)
    if b" \r\n" in data:
        data = data.replace(b" \r\n", b"\r\n")
    return data


def body_hash(canonical_pieces: Iterable[bytes]) -> bytes:
    """bh= of a body given as relaxed_lines() of consecutive pieces that each begin at the start of a line.

    Trailing empty lines are dropped and a non-empty body ends in exactly one CRLF (3.4.4 c, 3.4.3). One join and
    one update: cheaper than an update per piece, and a MIME body ends in its closing boundary line anyway.
    """
    body = b"".join(canonical_pieces)
    if body.endswith(b"\r\n\r\n") or not body.endswith(b"\r\n") or body == b"\r\n":
        body = body.rstrip(b"\r\n")
        body = body + b"\r\n" if body else body
    return base64.b64encode(hashlib.sha256(body).digest())


def relaxed_body_hash(body: bytes) -> bytes:
    """bh= of a whole body (the email-package path and tests)."""
    return body_hash([relaxed_lines(body)])


def split_headers(header_block: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-case name, raw field including its folds but without the final CRLF) for each header, in order."""
    fields = []
    for raw in _CRLF_THEN_FIELD.split(header_block.rstrip(b"\r\n")):
        name, colon, _ = raw.partition(b":")
        if colon:
            fields.append((name.strip().lower(), raw))
    return fields


def relaxed_header(raw: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value, WSP runs as one space, none around the colon or at the end.
    Most headers are one line with single spaces, so the regular expression runs only when there is something to do.
    """
    name, _, value = raw.partition(b":")
    if b"\r\n" in value:
        value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:
        value = _HEADER_WSP.sub(b" ", value)
    return name.rstrip(b" \t").lower() + b":" + value.strip(b" ") + b"\r\n"


@dataclass(frozen=True, slots=True)
class DkimKey:
    selector: str
    domain: str
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @property
    def algorithm(self) -> str:
        return ED25519 if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else RSA

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(hashlib.sha256(data).digest())  # RFC 8463: PureEdDSA over the SHA-256
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def dns_record(self) -> str:
        """The TXT record to publish at <selector>._domainkey.<domain>."""
        public = self.private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def _fold_list(prefix: str, items: Sequence[str], width: int = 72) -> str:
    """h=a:b:c folded at colons (FWS is allowed around them), so no line of the header grows past width."""
    lines, line = [], prefix
    for index, item in enumerate(items):
        piece = item + (":" if index < len(items) - 1 else ";")
        if len(line) + len(piece) > width and line.strip():
            lines.append(line)
            line = " "
        line += piece
    lines.append(line)
    return "\r\n\t".join(lines)


def _fold_value(value: str, first: int, width: int = 72) -> str:
    chunks = [value[:first]] + [value[i:i + width] for i in range(first, len(value), width)]
    return "\r\n\t ".join(chunk for chunk in chunks if chunk)


class DkimSigner:
    """Signs messages with one or more keys (one DKIM-Signature header each, newest algorithm first)."""

    def __init__(self, keys: Sequence[DkimKey], *, clock: Callable[[], float] = time.time) -> None:
        if not keys:
            raise DkimKeyError("a DKIM signer needs at least one key")
        self.keys = tuple(sorted(keys, key=lambda k: k.algorithm != ED25519))
        self.clock = clock

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header(s) in front. CRLF line ends, as it goes on the wire."""
        head, separator, body = message.partition(b"\r\n\r\n")
        if not separator:
            head, body = message, b""
        return self.signature_headers(head + b"\r\n", relaxed_body_hash(body)) + message

    def signature_headers(self, header_block: bytes, bh: bytes) -> bytes:
        """DKIM-Signature header(s) for a message with these headers and body hash, to put in front of it."""
        fields = split_headers(header_block)
        names, h_tag = _header_list(tuple(name for name, _ in fields))
        canonical = _selected(fields, names)
        middle = f";\r\n\tt={int(self.clock())}; {h_tag}\r\n\tbh={bh.decode()};\r\n\tb="
        out = []
        for key in self.keys:
            header = (f"DKIM-Signature: v=1; a={key.algorithm}; c=relaxed/relaxed; d={key.domain}; "
                      f"s={key.selector}{middle}")
            signature = key.sign(canonical + relaxed_header(header.encode())[:-2])
            out.append(header + _fold_value(base64.b64encode(signature).decode(), 64) + "\r\n")
        return "".join(out).encode()


@lru_cache(maxsize=64)
def _header_list(present: tuple[bytes, ...]) -> tuple[tuple[bytes, ...], str]:
    """(names to sign, h= tag) for a message with these headers. Every message of a send has the same ones."""
    names: list[str] = []
    for name in SIGNED:
        count = present.count(name.encode())
        extra = 1 if name in OVERSIGNED and (count or name in SEALED_WHEN_ABSENT) else 0
        names += [name] * (count + extra)
    return tuple(name.encode() for name in names), _fold_list("h=", names)


def _selected(fields: list[tuple[bytes, bytes]], names: tuple[bytes, ...]) -> bytes:
    """The canonical headers named in h=, each occurrence taken from the bottom up (RFC 6376 5.4.2); a name listed
    more often than it occurs contributes nothing more."""
    by_name: dict[bytes, list[bytes]] = {}
    for name, raw in fields:
        stack = by_name.get(name)
        if stack is None:
            by_name[name] = [raw]
        else:
            stack.append(raw)
    picked = []
    for name in names:
        stack = by_name.get(name)
        if stack:
            picked.append(relaxed_header(stack.pop()))
    return b"".join(picked)


def load_key(path: Path, selector: str, domain: str) -> DkimKey:
    """A PEM private key (PKCS#1 or PKCS#8, RSA or Ed25519) or a bare base64 Ed25519 seed (dkimpy's dknewkey)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DkimKeyError(f"DKIM key {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        if b"-----BEGIN" in data:
            private = serialization.load_pem_private_key(data, password=None)
        else:
            seed = base64.b64decode(data.strip(), validate=True)
            if len(seed) != 32:
                raise ValueError("not a PEM key nor a 32-byte base64 Ed25519 seed")
            private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise DkimKeyError(f"DKIM key {path} is not a usable private key: {exc}") from exc
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < MIN_RSA_BITS:
            raise DkimKeyError(f"DKIM key {path} is RSA-{private.key_size}; receivers refuse keys under "
                               f"{MIN_RSA_BITS} bits (generate 2048)")
        return DkimKey(selector, domain, private)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return DkimKey(selector, domain, private)
    raise DkimKeyError(f"DKIM key {path} is a {type(private).__name__}; DKIM signs with RSA or Ed25519 only")


def _stamp(path: Path | None) -> tuple[str, int, int] | None:
    """Identifies a key file's content cheaply, so a key replaced on disk is loaded again."""
    if path is None:
        return None
    try:
        status = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), status.st_mtime_ns, status.st_size)


def signer_from_settings(settings: Settings) -> DkimSigner | None:
    """The configured signer, or None when DKIM is not configured. Raises DkimKeyError for a key that cannot
    work, so a send stops with the reason instead of going out unsigned."""
    domain = settings.dkim_domain or settings.from_email.rpartition("@")[2]
    return _cached_signer(domain, settings.dkim_selector, _stamp(settings.dkim_private_key_path),
                          settings.dkim_ed25519_selector, _stamp(settings.dkim_ed25519_private_key_path))


@lru_cache(maxsize=4)
def _cached_signer(domain: str, selector: str | None, key_file: tuple[str, int, int] | None,
                   ed25519_selector: str | None, ed25519_file: tuple[str, int, int] | None) -> DkimSigner | None:
    """Loading an RSA key checks it (tens of milliseconds); transports are built per batch, keys once."""
    keys = []
    if selector and key_file:
        keys.append(load_key(Path(key_file[0]), selector, domain))
    if ed25519_selector and ed25519_file:
        key = load_key(Path(ed25519_file[0]), ed25519_selector, domain)
        if key.algorithm != ED25519:
            raise DkimKeyError(f"NEWSLETTER_DKIM_ED25519_PRIVATE_KEY_PATH ({ed25519_file[0]}) holds an RSA key")
        keys.append(key)
    return DkimSigner(keys) if keys else None
