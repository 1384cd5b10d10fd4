"""The public answers built without the framework's general machinery are byte for byte what it would build:
one-message pages filled into a pre-rendered page, forms split by the standard library, the CSRF cookie and the
security headers written directly (newsletter/web/templating.py, forms.py, csrf.py, security_headers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailer.db import session_scope
from mailer.settings import Settings
from newsletter.web import csrf, templating
from newsletter.web.forms import MAX_FIELDS, read_form
from newsletter.web.security_headers import raw_security_headers, security_headers
from subscribers import mailing_lists
from subscribers.mailing_lists import ListLook
from subscribers.models import MailingList
from tests.support.aio import run_async

HOSTILE = "<script>alert('x')</script> & \"quotes\" \x00slot2\x00 {{ heading }}"


def _request(nonce: str = "n0nce", token: str = "t0ken", body: bytes = b"",
             content_type: bytes = b"application/x-www-form-urlencoded") -> Request:
    given = False

    async def receive() -> dict[str, object]:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        "state": {"csrf_token": token, "csp_nonce": nonce}}, receive)


@pytest.fixture
def lists(sqlite_url: str, settings: Settings) -> Iterator[list[MailingList | None]]:
    settings.env = "test"  # not development: the pre-rendered pages are used
    with session_scope() as session:
        plain = mailing_lists.create_list(session, "plain", "Plain & <Simple>")
        branded = mailing_lists.create_list(session, "branded", "Branded", look=ListLook(
            language="de", brand_name="Acme <GmbH>", logo_url="https://example.com/logo.png?a=1&b=2",
            accent_colour="#0b7285", postal_address="Straße 1 & 2, \"Berlin\""))
        session.flush()
        session.expunge_all()
    templating._skeletons.clear()
    yield [None, plain, branded]
    templating._skeletons.clear()


@pytest.mark.parametrize("paragraphs", [(), ("One.",), ("One <b>", HOSTILE, "Three & four")])
@pytest.mark.parametrize("action", [None, "/lists/plain/subscribe?x=1&y=<2>"])
def test_a_message_page_is_the_template_rendered(lists: list[MailingList | None], paragraphs: tuple[str, ...],
                                                 action: str | None) -> None:
    for mailing_list in lists:
        for nonce, token, heading in [("abc", "tok1", "Check your inbox"), ("xyz", "tok2", HOSTILE)]:
            expected = templating.render_page(_request(nonce, token), templating.MESSAGE_PAGE, {
                "heading": heading, "paragraphs": paragraphs, "action_url": action, "action_label": HOSTILE},
                status_code=410, mailing_list=mailing_list)
            for _ in range(2):  # made, then from the cache
                answer = templating.message_page(_request(nonce, token), heading, paragraphs, action_url=action,
                                                 action_label=HOSTILE, status_code=410, mailing_list=mailing_list)
                assert answer.body == expected.body and answer.status_code == 410
                assert answer.headers["content-type"] == expected.headers["content-type"]
    assert 0 < len(templating._skeletons) <= len(lists) * 2


def test_a_changed_list_look_is_a_new_page(lists: list[MailingList | None]) -> None:
    branded = lists[2]
    assert branded is not None
    before = templating.message_page(_request(), "Hi", ["There"], mailing_list=branded).body
    branded.brand_name = "Other Brand"
    after = templating.message_page(_request(), "Hi", ["There"], mailing_list=branded).body
    assert b"Acme &lt;GmbH&gt;" in before and b"Other Brand" in after and b"Acme" not in after


def test_in_development_the_template_is_read_each_time(lists: list[MailingList | None], settings: Settings) -> None:
    settings.env = "development"
    templating.message_page(_request(), "Hi", ["There"], mailing_list=lists[1])
    assert templating._skeletons == {}


BODIES = [b"a=1&b=2", b"a=1;b=2", b"email=x%40y.com&name=J%C3%B6rg+M", b"a=&b", b"a=1&a=2", b"=x&y=",
          b"a=%ZZ&b=%e9", b"a=\xe9\xff", b"&&a=1&&", b"a+b=c+d", b"a=1=2", b"", b"x", b"csrf_token=%00%0d%0a"]


@pytest.mark.parametrize("body", BODIES)
def test_an_urlencoded_form_is_read_as_starlette_reads_it(body: bytes) -> None:
    async def both() -> tuple[list[tuple[str, object]], list[tuple[str, object]]]:
        ours = await read_form(_request(body=body))
        theirs = await _request(body=body).form()
        return list(ours.multi_items()), list(theirs.multi_items())

    ours, theirs = run_async(both())
    assert ours == theirs


def test_the_form_is_read_once_and_shared() -> None:
    async def twice() -> bool:
        request = _request(body=b"a=1")
        return await read_form(request) is await read_form(request)

    assert run_async(twice())


def test_too_many_fields_is_a_clear_400() -> None:
    with pytest.raises(HTTPException) as refused:
        run_async(read_form(_request(body=b"&".join([b"a=1"] * (MAX_FIELDS + 1)))))
    assert refused.value.status_code == 400
    assert len(run_async(read_form(_request(body=b"&".join([b"a=1"] * MAX_FIELDS))))) == 1


def test_multipart_is_left_to_starlette() -> None:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nme@example.com\r\n--XyZ--\r\n")
    form = run_async(read_form(_request(body=body, content_type=b"multipart/form-data; boundary=XyZ")))
    assert form["email"] == "me@example.com"


@pytest.mark.parametrize("secure", [True, False])
def test_the_csrf_cookie_is_written_as_starlette_writes_it(settings: Settings, secure: bool) -> None:
    settings.session_cookie_secure = secure
    response = Response()
    response.set_cookie(csrf.COOKIE, "A-b_9" * 8, httponly=True, samesite="lax", secure=secure, path="/")
    assert [value for name, value in response.raw_headers if name == b"set-cookie"] == [
        csrf.cookie_header("A-b_9" * 8)]


@pytest.mark.parametrize("https", [True, False])
def test_the_raw_security_headers_are_the_headers(https: bool) -> None:
    assert raw_security_headers("N-o_nce", https) == [
        (name.lower().encode(), value.encode()) for name, value in security_headers("N-o_nce", https)]
