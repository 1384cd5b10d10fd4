"""The precompiled quoted-printable fast path of encode_message: what a recipient decodes is exactly personalize().

Every message is parsed back with the email package; the checks are on decoded parts, on the raw lines (CRLF
only, quoted-printable lines within 76 characters, valid escapes) and on the headers.
"""

from __future__ import annotations

import email
import re
from collections.abc import Mapping
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.batch import Content, Recipient
from mailer.issue import load_issue
from mailer.message import _address, _compile, clean_header, encode_message, list_unsubscribe, personalize
from mailer.placeholders import Key, html_token, text_token
from mailer.render import render_issue
from tests.mailer.test_issue import EXAMPLE

DOMAIN = "news.example.com"
QP_ESCAPE = re.compile(rb"=(?![0-9A-F]{2}|$)")  # an "=" that is neither an escape nor a soft line break

AWKWARD = [
    "", " ", "Ann", "Zoë & Ünal <x>", 'He said "hi" & \'bye\'', "ends with spaces   ", "ends with equals =",
    "a=b==c= ", "__NLH_NAME__ and __NLT_EMAIL__", "x" * 300, ("é" * 40 + " ") * 8, "tab\tend\t", ".",
    ".starts with a dot", "--=_nl_0123456789abcdef0123456789abcdef--", "line one\nline two \n.\n", "日本語のお名前",
    "🙂 emoji & <b>bold</b>", "=" * 80, " " * 90, "a" * 75, "a" * 76, "a" * 77, "&" * 100,
]


def _content(html: str, text: str, **overrides: str) -> Content:
    fields = {"subject": "Weekly digest", "from_email": "digest@news.example.com", "from_name": "Digest",
              "list_id": "Weekly <weekly.news.example.com>"} | overrides
    return Content(html=html, text=text, **fields)


def _recipient(index: int, values: Mapping[Key, str] | None = None) -> Recipient:
    unsubscribe = f"https://news.example.com/unsubscribe/{index:06d}tokentokentoken"
    return Recipient(email=f"reader{index}@example.com", unsubscribe_url=unsubscribe,
                     unsubscribe_mailto="unsubscribe@news.example.com",
                     values=values if values is not None else {
                         Key.NAME: AWKWARD[index % len(AWKWARD)], Key.EMAIL: f"reader{index}@example.com",
                         Key.UNSUBSCRIBE_URL: unsubscribe + "?a=1&b=2",
                         Key.PREFERENCES_URL: AWKWARD[(index * 7 + 3) % len(AWKWARD)],
                         Key.WEB_URL: "https://news.example.com/web/2023-09-22"})


def _check_lines(data: bytes) -> None:
    """CRLF only; headers within 998 characters; every line after the headers is valid quoted-printable, <= 76."""
    assert data.endswith(b"\r\n")
    lines = data[:-2].split(b"\r\n")
    assert not any(b"\r" in line or b"\n" in line for line in lines), "bare CR or LF"
    end_of_headers = lines.index(b"")
    assert all(len(line) <= 998 for line in lines[:end_of_headers])
    for line in lines[end_of_headers:]:
        assert len(line) <= 76, line
        assert line.isascii(), line
        if not line.startswith(b"--=_nl_") and not line.startswith(b"Content-"):
            assert not QP_ESCAPE.search(line), line


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _check_message(content: Content, recipient: Recipient) -> tuple[EmailMessage, str]:
    data, message_id = encode_message(content, recipient, message_id_domain=DOMAIN)
    _check_lines(data)
    message = _parse(data)
    html, text = personalize(content, recipient)
    assert message.get_body(("plain",)).get_content() == text.replace("\n", "\r\n")
    assert message.get_body(("html",)).get_content() == html.replace("\n", "\r\n")
    assert message["Message-ID"] == f"<{message_id}>"
    return message, message_id


@pytest.fixture(scope="module")
def example() -> Content:
    rendered = render_issue(load_issue(EXAMPLE))
    return _content(rendered.html, rendered.text, subject=rendered.subject)


def test_example_issue_decodes_to_personalize_for_every_recipient(example: Content) -> None:
    message_ids = set()
    for index in range(3 * len(AWKWARD)):
        recipient = _recipient(index)
        message, message_id = _check_message(example, recipient)
        message_ids.add(message_id)
        assert message["To"] == recipient.email
        assert message["Subject"] == example.subject
        assert message["From"] == "Digest <digest@news.example.com>"
        assert message["List-Id"] == "Weekly <weekly.news.example.com>"
        assert message["List-Unsubscribe"] == (f"<{recipient.unsubscribe_url}>, "
                                               "<mailto:unsubscribe@news.example.com>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message_id.endswith(f"@{DOMAIN}")
    assert len(message_ids) == 3 * len(AWKWARD)


def _reference(content: Content, recipient: Recipient) -> EmailMessage:
    """The same message composed by the email package, as the oracle for the hand-made bytes."""
    html, text = personalize(content, recipient)
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _address(content.from_name, content.from_email)
    msg["To"] = _address("", recipient.email)
    msg["Subject"] = clean_header(content.subject)
    msg["MIME-Version"] = "1.0"
    if content.list_id:
        msg["List-Id"] = clean_header(content.list_id)
    msg["List-Unsubscribe"] = list_unsubscribe(recipient) or ""
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, subtype="plain", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return _parse(msg.as_bytes())


def test_example_issue_matches_the_email_package(example: Content) -> None:
    recipient = _recipient(3)
    fast = _parse(encode_message(example, recipient, message_id_domain=DOMAIN)[0])
    slow = _reference(example, recipient)
    for name in ("From", "To", "Subject", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version"):
        assert str(fast[name]).strip() == str(slow[name]).strip(), name  # the email package folds long values
    for kind in ("plain", "html"):
        assert fast.get_body((kind,)).get_content() == slow.get_body((kind,)).get_content()


def test_the_document_is_encoded_once_and_values_are_what_changes(example: Content) -> None:
    _compile.cache_clear()
    first, _ = encode_message(example, _recipient(1), message_id_domain=DOMAIN)
    # an equal Content built anew (new str objects) reuses the compiled documents
    copy = _content("".join(example.html), "".join(example.text), subject=example.subject)
    encode_message(copy, _recipient(2), message_id_domain=DOMAIN)
    assert _compile.cache_info().misses == 2 and _compile.cache_info().hits == 2
    # a different document is not served from the cache
    other = _content(example.html.replace("Wrapping Up", "Signing Off"), example.text)
    message, _ = _check_message(other, _recipient(1))
    assert "Signing Off" in message.get_body(("html",)).get_content()
    assert b"Signing Off" not in first


HTML_EDGES = (f"{html_token(Key.NAME)}{html_token(Key.EMAIL)}<p>\n{'a' * 74} \n{'t' * 73}\t\n{'b' * 75} \n{'c' * 76}\n"
              f"{'d' * 75}{html_token(Key.NAME)}{'e' * 200}{html_token(Key.WEB_URL)}\n"
              f".{html_token(Key.NAME)}\n.\n{text_token(Key.NAME)} __NLH_UNKNOWN__ __NLH_NAME_ ={' ' * 3}\n"
              f"Zoë &amp; Ünal ☃ {'x' * 73}é{html_token(Key.PREFERENCES_URL)}\t\n{html_token(Key.UNSUBSCRIBE_URL)}")
TEXT_EDGES = (f"Hi {text_token(Key.NAME)},\n{' ' * 75}{text_token(Key.NAME)} \n{text_token(Key.EMAIL)}"
              f"{text_token(Key.NAME)}\n\n{'y' * 75}{text_token(Key.NAME)}{'z' * 75}\n--=_nl_x\n"
              f"Unsubscribe: {text_token(Key.UNSUBSCRIBE_URL)}\n{text_token(Key.NAME)}")


@pytest.mark.parametrize("name", AWKWARD)
def test_awkward_values_at_awkward_columns(name: str) -> None:
    values = {Key.NAME: name, Key.EMAIL: name[::-1], Key.UNSUBSCRIBE_URL: name + "&x=" + name,
              Key.PREFERENCES_URL: "", Key.WEB_URL: name * 3}
    message, _ = _check_message(_content(HTML_EDGES, TEXT_EDGES), _recipient(0, values))
    html = message.get_body(("html",)).get_content()
    assert "__NLH_UNKNOWN__" in html and "__NLH_NAME_ " in html  # not placeholders: left as they are
    raw = name.replace("\n", "\r\n")
    assert f"\r\n.\r\n{raw} __NLH_UNKNOWN__" in html  # __NLT_NAME__ in the HTML part: the raw value, as fill()


def test_line_breaks_in_values_are_canonical_and_no_bare_cr_reaches_the_wire() -> None:
    values = {Key.NAME: "one\r\ntwo\rthree\nfour ", Key.EMAIL: "a\r\n"}
    content = _content(f"<p>{html_token(Key.NAME)}</p>{html_token(Key.EMAIL)}",
                       f"Hi {text_token(Key.NAME)}!\n{text_token(Key.EMAIL)}.")
    data, _ = encode_message(content, _recipient(0, values), message_id_domain=DOMAIN)
    _check_lines(data)  # no bare CR or LF anywhere
    message = _parse(data)
    assert message.get_body(("plain",)).get_content() == "Hi one\r\ntwo\rthree\r\nfour !\r\na\r\n."
    assert message.get_body(("html",)).get_content() == "<p>one\r\ntwo\rthree\r\nfour </p>a\r\n"


def test_headers_cannot_be_injected_and_non_ascii_is_encoded() -> None:
    content = _content("<p>x</p>", "x", subject="Héllo:\r\nBcc: victim@example.com", from_name="Dïgest\nX-A: 1",
                       list_id="Weekly\r\nX-B: 2 <weekly.news.example.com>")
    recipient = Recipient(email="reader@example.com", values={},
                          unsubscribe_url="https://news.example.com/u/1\r\nX-C: 3",
                          unsubscribe_mailto="unsubscribe@news.example.com\nX-D: 4")
    data, _ = encode_message(content, recipient, message_id_domain=DOMAIN)
    _check_lines(data)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert not re.search(rb"^(Bcc|X-[A-D]):", head, re.MULTILINE | re.IGNORECASE)
    message = _parse(data)
    assert message["Subject"] == "Héllo: Bcc: victim@example.com"
    assert message["From"].addresses[0].display_name == "Dïgest X-A: 1"
    with pytest.raises(ValueError, match="line break"):
        encode_message(content, Recipient(email="a@example.com\r\nBcc: b@example.com", values={}),
                       message_id_domain=DOMAIN)


def test_non_ascii_addresses_and_extra_headers_take_the_same_path(example: Content) -> None:
    """They used to fall back to the email package, whose quoted-printable lines reach 78 characters."""
    for recipient in (Recipient(email="zoë@exämple.com", values={Key.NAME: "Zoë"}),
                      Recipient(email="a@example.com", values={Key.NAME: "A"}, headers={"X-Campaign": "7\r\nBcc: b"})):
        data, message_id = encode_message(example, recipient, message_id_domain=DOMAIN)
        _check_lines(data)
        message = _parse(data)
        html, text = personalize(example, recipient)
        assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
        assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == html
        assert message["Message-ID"] == f"<{message_id}>" and message["Bcc"] is None
    assert message["X-Campaign"] == "7 Bcc: b"
    for value in ("ü", "Das Wöchenblatt", "x" * 90 + " Wöchenblatt"):  # short non-ASCII failed to encode once
        data, _ = encode_message(example, Recipient(email="a@example.com", values={}, headers={"X-Campaign": value}),
                                 message_id_domain=DOMAIN)
        _check_lines(data)
        assert data.split(b"\r\n\r\n", 1)[0].isascii() and _parse(data)["X-Campaign"] == value
    for name in ("Bcc: x@example.com\r\nX-A", "X A", "", "X:A"):
        with pytest.raises(ValueError, match="header name"):
            encode_message(example, Recipient(email="a@example.com", values={}, headers={name: "1"}),
                           message_id_domain=DOMAIN)


_TOKENS = [html_token(key) for key in Key] + [text_token(key) for key in Key]
_ALPHABET = st.sampled_from([*"ab =._-<>&\"'\t\n", "é", "Ü", "☃", "🙂", "__", "NLH", "=\n", " \n", "." * 3])
_STATIC = st.lists(_ALPHABET, max_size=120).map("".join)
_DOCUMENT = st.lists(st.one_of(_STATIC, st.sampled_from(_TOKENS)), max_size=12).map("".join)
_VALUE = st.one_of(st.lists(_ALPHABET, max_size=40).map("".join), st.text(max_size=200).map(
    lambda value: value.replace("\r", "")))  # a lone CR at a value's edge is not merged with the template's LF


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html=_DOCUMENT, text=_DOCUMENT, values=st.fixed_dictionaries({key: _VALUE for key in Key}))
def test_any_document_and_values_decode_to_personalize(html: str, text: str, values: dict[Key, str]) -> None:
    _check_message(_content(html, text), _recipient(0, values))
