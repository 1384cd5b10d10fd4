"""Sign-up from the publisher's own site: the embedded form and the JSON endpoint, and how each abuse is met.

The client here carries no cookie and no CSRF token, as a browser posting from another site does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mailer.db import session_scope
from mailer.settings import Settings, SettingsError, reset_settings
from newsletter.web.app import create_app
from newsletter.web.embed import snippets
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists, service
from subscribers.models import ConsentEvent, Subscriber, Subscription, SubscriptionStatus
from subscribers.models import SuppressionReason as Reason
from tests.support.captcha_standin import CaptchaStandIn, captcha_provider
from tests.support.mailbox import messages_to, outbox_messages
from tests.support.workers import free_port

BLOG = "https://blog.example.org"


@pytest.fixture
def client(db_url: str) -> TestClient:
    reset()
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
        mailing_lists.create_list(session, "offers", "Offers", double_opt_in=False)
    return TestClient(create_app(), base_url="http://testserver")


def configure(slug: str, **options: object) -> None:
    with session_scope() as session:
        mailing_lists.configure_signup(mailing_lists.get_list(session, slug), **options)  # type: ignore[arg-type]


def embed(client: TestClient, email: str, slug: str = "weekly", origin: str | None = BLOG, **fields: str):
    headers = {"Origin": origin} if origin else {}
    client.cookies.clear()
    return client.post(f"/lists/{slug}/embed", data={"email": email, "name": "", **fields}, headers=headers,
                       follow_redirects=False)


def status_of(email: str) -> SubscriptionStatus | None:
    with session_scope() as session:
        return session.scalar(select(Subscription.status).join(Subscription.subscriber)
                              .where(Subscriber.email == email))


def test_a_form_on_another_site_subscribes_without_cookie_or_token(client: TestClient) -> None:
    response = embed(client, "Reader@Example.com")
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert status_of("reader@example.com") is SubscriptionStatus.PENDING
    [message] = messages_to("reader@example.com")
    assert "confirm" in message["Subject"].lower()
    with session_scope() as session:
        note = session.scalar(select(ConsentEvent.detail).order_by(ConsentEvent.id.desc()))
    assert note == {"note": f"embedded form on {BLOG}", "double_opt_in": True}  # where the consent came from


def test_the_hosted_form_still_wants_its_token(client: TestClient) -> None:
    client.cookies.clear()
    response = client.post("/lists/weekly/subscribe", data={"email": "x@example.com"}, headers={"Origin": BLOG})
    assert response.status_code == 403 and status_of("x@example.com") is None


def test_no_enumeration_through_the_embedded_form(client: TestClient) -> None:
    with session_scope() as session:
        weekly = mailing_lists.get_list(session, "weekly")
        service.subscribe(session, weekly, "confirmed@example.com", source=service.ConsentSource.ADMIN,
                          confirmed=True, consent_note="test")
        service.suppress(session, "suppressed@example.com", Reason.COMPLAINT, source=service.ConsentSource.ADMIN)
    bodies = {embed(client, address).text for address in ("new@example.com", "new@example.com",
                                                          "confirmed@example.com", "suppressed@example.com")}
    assert len(bodies) == 1
    assert len(messages_to("new@example.com")) == 1  # submitted twice, one confirmation
    assert messages_to("confirmed@example.com") == [] and messages_to("suppressed@example.com") == []


def test_not_embeddable_list_answers_with_a_friendly_page_pointing_home(client: TestClient) -> None:
    configure("weekly", embeddable=False)
    response = embed(client, "reader@example.com")
    assert response.status_code == 403
    assert "<h1>" in response.text and 'href="/lists/weekly/subscribe"' in response.text
    assert status_of("reader@example.com") is None and outbox_messages() == []


def test_allowed_origins_by_origin_or_referer(client: TestClient) -> None:
    configure("weekly", origins=[BLOG, "http://localhost:4000"])
    assert "Check your inbox" in embed(client, "a@example.com").text
    forged = embed(client, "b@example.com", origin="https://evil.example")
    assert forged.status_code == 403 and "Sign up to Digital Digest Weekly here" in forged.text
    client.cookies.clear()
    by_referer = client.post("/lists/weekly/embed", data={"email": "c@example.com"},
                             headers={"Referer": "http://localhost:4000/about/?x=1"})
    assert by_referer.status_code == 200
    assert embed(client, "d@example.com", origin=None).status_code == 403  # cannot say where it came from
    assert embed(client, "e@example.com", origin="null").status_code == 403  # sandboxed / opaque origin
    assert [status_of(f"{x}@example.com") for x in "abcde"] == [SubscriptionStatus.PENDING, None,
                                                                SubscriptionStatus.PENDING, None, None]


def test_honeypot_and_rate_limits(client: TestClient, settings) -> None:
    bot = embed(client, "bot@example.com", website="http://spam.example")
    assert bot.status_code == 200 and "Check your inbox" in bot.text and status_of("bot@example.com") is None
    codes = [embed(client, "same@example.com").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # per address, at the default of 3 an hour
    codes = [embed(client, f"r{i}@example.com").status_code for i in range(8)]
    assert codes[-1] == 429 and "Too many attempts" in embed(client, "z@example.com").text  # per client


def test_invalid_address_gets_the_form_back_on_our_page(client: TestClient) -> None:
    response = embed(client, "not-an-address")
    assert response.status_code == 400 and 'aria-invalid="true"' in response.text


def test_thank_you_url_after_sign_up_only(client: TestClient) -> None:
    configure("weekly", thank_you_url=f"{BLOG}/thanks")
    response = embed(client, "reader@example.com")
    assert response.status_code == 303 and response.headers["location"] == f"{BLOG}/thanks"
    assert embed(client, "broken").status_code == 400  # a mistake is explained on our page, not hidden
    with pytest.raises(service.ServiceError):
        configure("weekly", thank_you_url="javascript:alert(1)")


def test_single_opt_in_list_subscribes_at_once(client: TestClient) -> None:
    response = embed(client, "fan@example.com", slug="offers")
    assert "You&#39;re subscribed" in response.text
    with session_scope() as session:
        subscription = session.scalar(select(Subscription).join(Subscription.subscriber)
                                      .where(Subscriber.email == "fan@example.com"))
        assert subscription is not None and subscription.status is SubscriptionStatus.CONFIRMED


@pytest.fixture
def captcha(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptchaStandIn]:
    with captcha_provider("the-secret") as provider:
        monkeypatch.setenv("NEWSLETTER_CAPTCHA_PROVIDER", "turnstile")
        monkeypatch.setenv("NEWSLETTER_CAPTCHA_SITE_KEY", "site-key-1")
        monkeypatch.setenv("NEWSLETTER_CAPTCHA_SECRET", "the-secret")
        monkeypatch.setenv("NEWSLETTER_CAPTCHA_VERIFY_URL", provider.url)
        reset_settings()
        yield provider


def test_captcha_checked_server_side(client: TestClient, captcha: CaptchaStandIn) -> None:
    captcha.good_tokens.add("token-1")
    hosted = client.get("/lists/weekly/subscribe").text
    assert 'class="cf-turnstile" data-sitekey="site-key-1"' in hosted
    missing = embed(client, "a@example.com")
    assert missing.status_code == 400 and "Please try again" in missing.text
    assert embed(client, "b@example.com", **{"cf-turnstile-response": "made-up"}).status_code == 400
    assert embed(client, "c@example.com", **{"cf-turnstile-response": "token-1"}).status_code == 200
    replayed = embed(client, "d@example.com", **{"cf-turnstile-response": "token-1"})
    assert replayed.status_code == 400
    assert [status_of(f"{x}@example.com") for x in "abcd"] == [None, None, SubscriptionStatus.PENDING, None]
    assert {call["secret"] for call in captcha.calls} == {"the-secret"}
    assert captcha.calls[-1]["remoteip"] == "testclient"


def test_captcha_provider_down_fails_closed(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_CAPTCHA_PROVIDER", "hcaptcha")
    monkeypatch.setenv("NEWSLETTER_CAPTCHA_SITE_KEY", "k")
    monkeypatch.setenv("NEWSLETTER_CAPTCHA_SECRET", "s")
    monkeypatch.setenv("NEWSLETTER_CAPTCHA_VERIFY_URL", f"http://127.0.0.1:{free_port()}/siteverify")
    reset_settings()
    response = embed(client, "a@example.com", **{"h-captcha-response": "anything"})
    assert response.status_code == 400 and "<h1>" in response.text and status_of("a@example.com") is None


def test_captcha_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(SettingsError):
        Settings(captcha_provider="recaptcha", captcha_site_key="k", captcha_secret="s")
    with pytest.raises(SettingsError, match="SITE_KEY"):
        Settings(captcha_provider="turnstile")
    with pytest.raises(SettingsError, match="http"):
        Settings(captcha_provider="hcaptcha", captcha_site_key="k", captcha_secret="s",
                 captcha_verify_url="file:///etc/passwd")
    assert Settings(captcha_provider=" HCaptcha ", captcha_site_key="k", captcha_secret="s").captcha_verify_url == (
        "https://api.hcaptcha.com/siteverify")


# JSON endpoint ------------------------------------------------------------------------------------------------

API = "/api/v1/public/lists/weekly/subscribe"


def test_json_endpoint_with_cors_for_allowed_origins(client: TestClient) -> None:
    configure("weekly", origins=[BLOG])
    client.cookies.clear()
    preflight = client.options(API, headers={"Origin": BLOG, "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == BLOG
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    response = client.post(API, json={"email": "js@example.com"}, headers={"Origin": BLOG})
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    assert response.headers["access-control-allow-origin"] == BLOG
    assert "access-control-allow-credentials" not in response.headers
    again = client.post(API, json={"email": "js@example.com"}, headers={"Origin": BLOG})
    assert again.json() == response.json()  # no enumeration
    evil = client.options(API, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in evil.headers
    refused = client.post(API, json={"email": "x@example.com"}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    bad = client.post(API, json={"email": "nope"}, headers={"Origin": BLOG})
    assert bad.status_code == 400 and bad.json()["status"] == "invalid_email"
    assert client.post(API, json={"name": "no email"}, headers={"Origin": BLOG}).status_code == 422
    assert status_of("js@example.com") is SubscriptionStatus.PENDING and status_of("x@example.com") is None


def test_json_endpoint_is_in_the_openapi_document(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    operation = spec["paths"]["/public/lists/{slug}/subscribe"]["post"]
    assert "CORS" in operation["description"] and "security" not in operation


def test_not_embeddable_list_refuses_json_too(client: TestClient) -> None:
    configure("weekly", embeddable=False)
    response = client.post(API, json={"email": "js@example.com"}, headers={"Origin": BLOG})
    assert response.status_code == 403 and "access-control-allow-origin" not in response.headers


def test_admin_snippets_are_the_ones_that_work(client: TestClient) -> None:
    with session_scope() as session:
        parts = snippets(mailing_lists.get_list(session, "weekly"))
    action = re.search(r'action="([^"]+)"', parts["form"])
    assert action and action.group(1) == "http://testserver/lists/weekly/embed"
    assert 'name="website"' in parts["form"] and "csrf" not in parts["form"]
    assert "/api/v1/public/lists/weekly/subscribe" in parts["script"]


def test_subscriptions_counted_once(client: TestClient) -> None:
    for _ in range(3):
        embed(client, "once@example.com")
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 1
        assert session.scalar(select(func.count()).select_from(Subscription)) == 1
