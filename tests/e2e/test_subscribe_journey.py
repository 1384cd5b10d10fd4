"""A subscriber's whole journey in headless Chromium: subscribe, confirm from the email, leave from an issue."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailer.db import session_scope
from subscribers import mailing_lists
from subscribers.models import Subscriber, Subscription, SubscriptionStatus
from subscribers.tokens import Purpose, link
from tests.support.mailbox import links, messages_to

pytestmark = pytest.mark.browser


def status(email: str) -> SubscriptionStatus | None:
    with session_scope() as session:
        return session.scalar(select(Subscription.status).join(Subscription.subscriber)
                              .where(Subscriber.email == email))


def test_subscribe_confirm_then_unsubscribe(site: str, browser) -> None:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly", description="Eight stories every Friday.")
    page = browser.new_page()
    try:
        page.goto(f"{site}/lists/weekly/subscribe")
        page.get_by_label("Email address").fill("ada@example.com")
        page.get_by_label("Name").fill("Ada")
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        assert status("ada@example.com") is SubscriptionStatus.PENDING

        [confirmation] = messages_to("ada@example.com")
        [confirm_url] = links(confirmation, "/confirm/")
        page.goto(confirm_url)
        assert status("ada@example.com") is SubscriptionStatus.PENDING  # opening the link changes nothing
        page.get_by_role("button", name="Confirm").click()
        page.get_by_role("heading", name="You're subscribed").wait_for()
        assert status("ada@example.com") is SubscriptionStatus.CONFIRMED

        with session_scope() as session:
            subscriber = session.scalar(select(Subscriber).where(Subscriber.email == "ada@example.com"))
            assert subscriber is not None
            unsubscribe_url = link(Purpose.UNSUBSCRIBE, subscriber.id, mailing_lists.get_list(session, "weekly").id)
        page.goto(unsubscribe_url)
        page.get_by_role("button", name="Unsubscribe from Digital Digest Weekly").click()
        page.get_by_role("heading", name="You're unsubscribed").wait_for()
        assert status("ada@example.com") is SubscriptionStatus.UNSUBSCRIBED
    finally:
        page.close()
