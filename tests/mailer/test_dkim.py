"""DKIM signatures from mailer.dkim_signing, checked by two verifiers that share no code with it: dkimpy (Python,
with PyNaCl for Ed25519) and OpenDKIM's opendkim-testmsg (C). Every signature of a dual-signed message is checked on
its own, by both, over the bytes an SMTP server received where the test sends through the transport.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dkim.canonicalization import Relaxed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.batch import Content, Recipient, TransportError
from mailer.dkim_signing import DkimKey, DkimSigner, relaxed_body_hash
from mailer.message import encode_message
from mailer.placeholders import Key, html_token, text_token
from mailer.settings import SettingsError, get_settings, reset_settings
from mailer.transports.smtp import SMTPTransport
from tests.mailer.test_message_fast import AWKWARD, DOMAIN, _check_lines, _content, _parse, _recipient, example
from tests.support import opendkim
from tests.support.smtp_sink import SMTPSink

__all__ = ["example"]  # the fixture, shared with test_message_fast

SIGNING_DOMAIN = "news.example.com"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA = DkimKey("nl-rsa", SIGNING_DOMAIN, RSA_KEY)
ED = DkimKey("nl-ed", SIGNING_DOMAIN, ED_KEY)
DUAL = DkimSigner([RSA, ED])
RECORDS = {f"{k.selector}._domainkey.{k.domain}": k.dns_record() for k in (RSA, ED)}
REQUIRED = {"from", "to", "subject", "date", "message-id", "mime-version", "content-type", "list-id",
            "list-unsubscribe", "list-unsubscribe-post"}
needs_opendkim = pytest.mark.skipif(not opendkim.available() and not os.environ.get("CI"),
                                    reason="opendkim-testmsg (opendkim-tools) or root missing; never skipped in CI")


def dns(name: bytes, timeout: int = 5) -> bytes | None:
    record = RECORDS.get(name.decode().rstrip("."))
    return record.encode() if record else None


def signatures(data: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature header, unfolded."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    found = re.findall(r"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE | re.IGNORECASE)
    return [dict(tag.strip().split("=", 1) for tag in re.sub(r"\s+", "", value).split(";") if tag)
            for value in found]


def only(data: bytes, index: int) -> bytes:
    """The message with only its index-th DKIM-Signature: each signature must stand on its own."""
    pattern = re.compile(rb"^DKIM-Signature:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", re.MULTILINE | re.IGNORECASE)
    headers = pattern.findall(data.split(b"\r\n\r\n", 1)[0] + b"\r\n")
    for number, header in enumerate(headers):
        if number != index:
            data = data.replace(header, b"", 1)
    assert len(signatures(data)) == 1
    return data


def dkimpy_verify(data: bytes, index: int) -> bool:
    try:
        return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=dns))
    except dkim.DKIMException:  # a body hash mismatch is raised, not returned
        return False


def dkimpy_results(data: bytes) -> list[bool]:
    return [dkimpy_verify(data, index) for index in range(len(signatures(data)))]


def assert_verified(data: bytes, *, independent: bool = False) -> None:
    tags = signatures(data)
    assert {t["a"] for t in tags} == {"rsa-sha256", "ed25519-sha256"}
    assert dkimpy_results(data) == [True, True]
    for index, signature in enumerate(tags):
        assert signature["c"] == "relaxed/relaxed" and signature["d"] == SIGNING_DOMAIN
        assert set(signature["h"].lower().split(":")) >= REQUIRED, signature["h"]
        assert "l" not in signature  # a body length limit would let anyone append content
        if independent:
            code, output = opendkim.verify(only(data, index), RECORDS)
            assert code == 0, (signature["a"], output)


def test_every_recipient_of_the_example_issue_is_dual_signed_and_verifies(example: Content) -> None:
    for index in range(len(AWKWARD)):
        data, _ = encode_message(example, _recipient(index), message_id_domain=DOMAIN, dkim=DUAL)
        _check_lines(data)
        assert_verified(data)
    assert_verified(data, independent=True)  # OpenDKIM on the last one (each run is a process in a namespace)


NON_ASCII = _content(
    html=(f"<p>Grüße {html_token(Key.NAME)},</p>\n<pre>\tcode  with\t\ttabs   and  runs   \n.\n..two\n"
          f".{html_token(Key.NAME)}\n{'w' * 900}\n{'word ' * 200}\n</pre>\n<p>{html_token(Key.UNSUBSCRIBE_URL)}</p>"),
    text=(f".leading dot, {text_token(Key.NAME)}\n.\n{'x' * 1200}\n   indented   with   runs   \n\n\n"
          f"Leave: {text_token(Key.UNSUBSCRIBE_URL)}\n\n\n"),
    subject="Zoë\N{RIGHT SINGLE QUOTATION MARK}s «weekly» 日本語 digest — " + "a long subject to fold " * 6,
    from_name="Dïgest Rédaction 🙂")


@needs_opendkim
def test_non_ascii_headers_long_lines_and_dot_lines_verify_with_both() -> None:
    recipient = _recipient(0, {Key.NAME: "Zoë  Ünal\t🙂", Key.UNSUBSCRIBE_URL: "https://news.example.com/u/1?a=1&b=2"})
    data, _ = encode_message(NON_ASCII, recipient, message_id_domain=DOMAIN, dkim=DUAL)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"Subject: =?utf-8?" in head and b"From: =?utf-8?" in head  # RFC 2047, folded over several lines
    body = data.split(b"\r\n\r\n", 1)[1]
    assert b"\r\n.leading" in body and b"\t\t" in body and b"   " in body  # dot lines, tabs and runs on the wire
    assert_verified(data, independent=True)


def test_the_email_package_path_with_extra_headers_and_non_ascii_address() -> None:
    """Recipients the fast path leaves to the email package are signed from their whole bytes; a Feedback-ID
    header is signed when present."""
    for recipient in (Recipient(email="zoë@exämple.com", values={Key.NAME: "Zoë"},
                                unsubscribe_url="https://news.example.com/u/9"),
                      Recipient(email="a@example.com", values={Key.NAME: "A"},
                                unsubscribe_url="https://news.example.com/u/10",
                                headers={"Feedback-ID": "7:weekly:newsletter:digest"})):
        data, _ = encode_message(NON_ASCII, recipient, message_id_domain=DOMAIN, dkim=DUAL)
        assert_verified(data)
    assert "feedback-id" in signatures(data)[0]["h"].split(":")


_TOKENS = [html_token(key) for key in Key] + [text_token(key) for key in Key]
_ALPHABET = st.sampled_from([*"ab =._-<>&\"'\t\n", "é", "☃", "__", "  ", "\t\t", " \n", "\n\n", ".\n."])
_STATIC = st.lists(_ALPHABET, max_size=80).map("".join)
_DOCUMENT = st.lists(st.one_of(_STATIC, st.sampled_from(_TOKENS)), max_size=10).map("".join)
_VALUE = st.lists(_ALPHABET, max_size=30).map("".join)
ED_ONLY = DkimSigner([ED])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html=_DOCUMENT, text=_DOCUMENT, values=st.fixed_dictionaries({key: _VALUE for key in Key}))
def test_any_document_and_values_verify(html: str, text: str, values: dict[Key, str]) -> None:
    """The body hash is built from the canonical form of each piece (kept per document, computed per value):
    whatever the whitespace at piece edges, it must equal what a verifier computes from the whole message."""
    data, _ = encode_message(_content(html, text), _recipient(0, values), message_id_domain=DOMAIN, dkim=ED_ONLY)
    assert dkim.DKIM(data).verify(dnsfunc=dns)


@pytest.mark.parametrize("body", [b"", b"\r\n", b"\r\n\r\n", b"a  b \t\r\n\r\n\r\n", b"no newline", b" lead\r\n",
                                  b"\t\tx\t\r\n", b"a\r\n \r\n\t\r\n", b"a\r\n\r\nb\r\n", b"x \t \r\ny\r\n" * 3])
def test_body_hash_equals_dkimpys_canonical_body(body: bytes) -> None:
    expected = base64.b64encode(hashlib.sha256(Relaxed.canonicalize_body(body)).digest())
    assert relaxed_body_hash(body) == expected


def _tamper(data: bytes, pattern: bytes, replacement: bytes) -> bytes:
    changed = re.sub(pattern, replacement, data, count=1, flags=re.MULTILINE)
    assert changed != data, pattern
    return changed


TAMPERING = {
    "subject": (rb"^Subject: (.)", rb"Subject: X\1"),
    "to": (rb"^To: r", b"To: x"),
    "date": (rb"^(Date: \w+, )\d", rb"\g<1>9"),
    "list-unsubscribe url": (rb"(^List-Unsubscribe: <https://news\.example\.com/unsubscribe/)0", rb"\g<1>9"),
    "list-unsubscribe-post removed": (rb"^List-Unsubscribe-Post: .*\r\n", b""),
    "second From on top": (rb"\A", b"From: Bank <security@bank.example>\r\n"),
    "Reply-To added": (rb"^(Subject:)", rb"Reply-To: phish@evil.example\r\n\1"),
    "List-Unsubscribe added": (rb"^(Subject:)", rb"List-Unsubscribe: <https://evil.example/u>\r\n\1"),
    "body: one character": (rb"Chipmakers", b"Chipmaker5"),
    "body: a line appended": (rb"(--=_nl_\w+--\r\n)\Z", rb"\1Visit https://evil.example\r\n"),
}


@pytest.mark.parametrize("change", list(TAMPERING))
def test_tampering_with_a_signed_header_or_the_body_fails_both_signatures(example: Content, change: str) -> None:
    data, _ = encode_message(example, _recipient(0), message_id_domain=DOMAIN, dkim=DUAL)
    assert dkimpy_results(data) == [True, True]
    assert dkimpy_results(_tamper(data, *TAMPERING[change])) == [False, False]


@needs_opendkim
def test_opendkim_refuses_tampering_too(example: Content) -> None:
    data, _ = encode_message(example, _recipient(0), message_id_domain=DOMAIN, dkim=DUAL)
    for change in ("subject", "list-unsubscribe url", "body: one character"):
        tampered = _tamper(data, *TAMPERING[change])
        for index in range(2):
            code, output = opendkim.verify(only(tampered, index), RECORDS)
            assert code != 0 and "Bad signature" in output, (change, output)


def test_what_relaxed_canonicalisation_forgives_still_verifies(example: Content) -> None:
    """Relays refold headers and pad lines; relaxed/relaxed exists so that this does not break the signature."""
    data, _ = encode_message(example, _recipient(0), message_id_domain=DOMAIN, dkim=DUAL)
    refolded = _tamper(data, rb"^List-Id: Weekly ", b"List-Id:\r\n\t  Weekly   ")
    padded = _tamper(refolded, rb"(Chipmakers)", rb"\1  ").rstrip(b"\r\n") + b"\r\n\r\n\r\n"
    assert dkimpy_results(padded) == [True, True]


# Settings and the transport: keys on disk, as an operator configures them.

def _pem_pkcs1(key: rsa.RSAPrivateKey) -> bytes:  # what `openssl genrsa` and opendkim-genkey write
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _pem_pkcs8(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The RSA key under the settings that existed before Ed25519 (selector, domain, key path), plus Ed25519."""
    (tmp_path / "rsa.pem").write_bytes(_pem_pkcs1(RSA_KEY))
    (tmp_path / "ed25519.pem").write_bytes(_pem_pkcs8(ED_KEY))
    monkeypatch.setenv("NEWSLETTER_DKIM_SELECTOR", RSA.selector)
    monkeypatch.setenv("NEWSLETTER_DKIM_DOMAIN", SIGNING_DOMAIN)
    monkeypatch.setenv("NEWSLETTER_DKIM_PRIVATE_KEY_PATH", str(tmp_path / "rsa.pem"))
    monkeypatch.setenv("NEWSLETTER_DKIM_ED25519_SELECTOR", ED.selector)
    monkeypatch.setenv("NEWSLETTER_DKIM_ED25519_PRIVATE_KEY_PATH", str(tmp_path / "ed25519.pem"))
    reset_settings()
    yield tmp_path
    reset_settings()


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    server = SMTPSink(pipelining=True).start()
    yield server
    server.stop()


@needs_opendkim
def test_messages_delivered_over_smtp_verify_as_received(keys: Path, sink: SMTPSink) -> None:
    settings = get_settings().model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port})
    transport = SMTPTransport.from_settings(settings)
    batch = [_recipient(index) for index in range(12)]
    results = transport.send(NON_ASCII, batch)
    transport.close()
    assert all(r.ok for r in results) and len(sink.received) == 12
    for received in sink.received:  # dot-stuffing undone by the server; the bytes are what a receiver checks
        assert received.data.startswith(b"DKIM-Signature:")
        assert_verified(received.data)
    assert_verified(sink.received[-1].data, independent=True)
    plain = _parse(sink.received[3].data).get_body(("plain",)).get_content()
    assert plain.startswith(".leading dot, ") and "\r\n.\r\n" in plain


def test_the_settings_that_existed_before_still_sign_alone(keys: Path, monkeypatch: pytest.MonkeyPatch,
                                                           sink: SMTPSink) -> None:
    monkeypatch.delenv("NEWSLETTER_DKIM_ED25519_SELECTOR")
    monkeypatch.delenv("NEWSLETTER_DKIM_ED25519_PRIVATE_KEY_PATH")
    monkeypatch.delenv("NEWSLETTER_DKIM_DOMAIN")  # now defaults to the From address's domain
    reset_settings()
    settings = get_settings().model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port})
    transport = SMTPTransport.from_settings(settings)
    assert transport.send(NON_ASCII, [_recipient(1)])[0].ok
    transport.close()
    data = sink.received[0].data
    assert [(t["a"], t["s"], t["d"]) for t in signatures(data)] == [("rsa-sha256", RSA.selector, SIGNING_DOMAIN)]
    assert dkim.verify(data, dnsfunc=dns)


def test_a_bare_base64_ed25519_seed_is_accepted(keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = ED_KEY.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                               serialization.NoEncryption())
    (keys / "ed25519.key").write_bytes(base64.b64encode(raw) + b"\n")  # dkimpy's dknewkey writes this
    monkeypatch.setenv("NEWSLETTER_DKIM_ED25519_PRIVATE_KEY_PATH", str(keys / "ed25519.key"))
    reset_settings()
    transport = SMTPTransport.from_settings(get_settings())
    assert transport.dkim is not None
    data, _ = encode_message(NON_ASCII, _recipient(2), message_id_domain=DOMAIN, dkim=transport.dkim)
    assert_verified(data)


def test_a_key_replaced_on_disk_is_used_by_the_next_transport(keys: Path) -> None:
    first = SMTPTransport.from_settings(get_settings()).dkim
    assert first is SMTPTransport.from_settings(get_settings()).dkim  # loaded once, not per batch
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (keys / "rsa.pem").write_bytes(_pem_pkcs8(rotated))
    os.utime(keys / "rsa.pem", ns=(1, 1))  # a different mtime even within the filesystem's timestamp granularity
    second = SMTPTransport.from_settings(get_settings()).dkim
    assert second is not None and second is not first
    assert any(k.dns_record() == DkimKey("s", "d", rotated).dns_record() for k in second.keys)


def _rsa_512() -> bytes:
    """cryptography refuses to generate keys this small, so OpenSSL's command line makes one."""
    return subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512"],
                          capture_output=True, check=True).stdout


BAD_KEYS: dict[str, tuple[Callable[[], bytes] | None, str]] = {
    "missing": (None, "cannot be read"),
    "not a key": (lambda: b"hello, I am not a key\n", "not a usable private key"),
    "truncated PEM": (lambda: _pem_pkcs1(RSA_KEY)[:300], "not a usable private key"),
    "RSA-512": (_rsa_512, "RSA-512"),
    "EC key": (lambda: _pem_pkcs8(ec.generate_private_key(ec.SECP256R1())), "RSA or Ed25519 only"),
}


@pytest.mark.parametrize("case", list(BAD_KEYS))
def test_an_unusable_key_stops_the_send_with_the_reason(keys: Path, case: str) -> None:
    """Fatal, so the send pauses with this reason in `newsletter sends show`, instead of mail going out unsigned
    or a traceback in the worker log."""
    content, reason = BAD_KEYS[case]
    path = keys / "rsa.pem"
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content())
    with pytest.raises(TransportError) as info:
        SMTPTransport.from_settings(get_settings())
    assert info.value.fatal and reason in str(info.value) and str(path) in str(info.value)


def test_an_rsa_key_under_the_ed25519_setting_is_refused(keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DKIM_ED25519_PRIVATE_KEY_PATH", str(keys / "rsa.pem"))
    reset_settings()
    with pytest.raises(TransportError, match="holds an RSA key") as info:
        SMTPTransport.from_settings(get_settings())
    assert info.value.fatal


@pytest.mark.parametrize("missing", ["NEWSLETTER_DKIM_SELECTOR", "NEWSLETTER_DKIM_PRIVATE_KEY_PATH",
                                     "NEWSLETTER_DKIM_ED25519_SELECTOR", "NEWSLETTER_DKIM_ED25519_PRIVATE_KEY_PATH"])
def test_half_a_key_configuration_is_an_error_at_start_up(keys: Path, monkeypatch: pytest.MonkeyPatch,
                                                          missing: str) -> None:
    with monkeypatch.context() as patch:  # restored before teardown, which reads the settings again
        patch.delenv(missing)
        reset_settings()
        with pytest.raises(SettingsError, match="must be set together"):
            get_settings()
    reset_settings()


def test_the_key_and_record_commands_in_the_operations_guide_work(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs the shell block of docs/operations.md's DKIM section as an operator would, then verifies a message
    signed with the keys it made against the records it printed."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = guide.split("### DKIM", 1)[1]
    script = section.split("```sh\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          check=True)
    rsa_record, ed_record = done.stdout.splitlines()
    assert rsa_record.startswith("v=DKIM1; k=rsa; p=") and ed_record.startswith("v=DKIM1; k=ed25519; p=")
    for name, value in (("SELECTOR", "doc-rsa"), ("PRIVATE_KEY_PATH", tmp_path / "dkim-rsa.pem"),
                        ("ED25519_SELECTOR", "doc-ed"), ("ED25519_PRIVATE_KEY_PATH", tmp_path / "dkim-ed25519.pem")):
        monkeypatch.setenv(f"NEWSLETTER_DKIM_{name}", str(value))
    reset_settings()
    signer = SMTPTransport.from_settings(get_settings()).dkim
    assert signer is not None
    data, _ = encode_message(NON_ASCII, _recipient(5), message_id_domain=DOMAIN, dkim=signer)
    records = {b"doc-rsa._domainkey.news.example.com.": rsa_record.encode(),
               b"doc-ed._domainkey.news.example.com.": ed_record.encode()}
    assert [dkim.DKIM(data).verify(idx=i, dnsfunc=lambda name, timeout=5: records[name]) for i in range(2)] == [
        True, True]
    reset_settings()
