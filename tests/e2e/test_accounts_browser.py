"""Accounts in a real headless Chromium against the app under uvicorn (PostgreSQL): an admin deactivates a user
and the user's open tab is signed out on its next click; "sign out everywhere else" reaches another browser; a
one-time password leads to the page that replaces it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.models import Role
from newsletter.web.ratelimit import reset
from tests.support.server import serve

PASSWORD = "correct horse battery staple"


@pytest.fixture
def site(pg_url: str) -> Iterator[str]:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        create_user(session, "staff@example.com", PASSWORD, Role.STAFF)
    with serve() as base:
        yield base


@pytest.fixture
def tabs(browser: Browser) -> Iterator[list[Page]]:
    """Three separate browsers (contexts share no cookies)."""
    contexts = [browser.new_context() for _ in range(3)]
    pages = [context.new_page() for context in contexts]
    for tab in pages:
        tab.set_default_timeout(15_000)
    try:
        yield pages
    finally:
        for context in contexts:
            context.close()


def sign_in(page: Page, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/admin/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button:has-text('Sign in')")


def test_deactivation_reaches_an_open_tab(site: str, tabs: list[Page]) -> None:
    admin, staff, _ = tabs
    sign_in(admin, site, "admin@example.com")
    sign_in(staff, site, "staff@example.com")
    expect(staff.locator("h1")).to_have_text("Dashboard")
    expect(staff.locator("header nav")).not_to_contain_text("Users")
    admin.click("header nav >> text=Users")
    admin.click("text=staff@example.com")
    admin.click("button:has-text('Deactivate')")
    expect(admin.locator(".flash")).to_contain_text("Deactivated")
    staff.click("header nav >> text=Issues")
    expect(staff.locator("h1")).to_have_text("Sign in")


def test_sign_out_everywhere_else_and_one_time_password(site: str, tabs: list[Page]) -> None:
    admin, staff_laptop, staff_phone = tabs
    sign_in(staff_laptop, site, "staff@example.com")
    sign_in(staff_phone, site, "staff@example.com")
    staff_laptop.click("header nav >> text=Your account")
    expect(staff_laptop.locator("text=this browser")).to_be_visible()
    staff_laptop.click("button:has-text('Sign out everywhere else')")
    expect(staff_laptop.locator(".flash")).to_contain_text("1 other session")
    staff_phone.reload()
    expect(staff_phone.locator("h1")).to_have_text("Sign in")

    sign_in(admin, site, "admin@example.com")
    admin.goto(f"{site}/admin/users")
    admin.click("text=staff@example.com")
    admin.click("button:has-text('Reset password')")
    one_time = admin.locator("#one-time-password").inner_text()
    staff_laptop.reload()
    expect(staff_laptop.locator("h1")).to_have_text("Sign in")  # the reset ended the laptop's session too
    sign_in(staff_phone, site, "staff@example.com", one_time)
    expect(staff_phone.locator(".flash")).to_contain_text("Choose your own password")
    staff_phone.goto(f"{site}/admin/issues")
    expect(staff_phone.locator("h1")).to_have_text("Your account")  # nothing else opens with it
    staff_phone.fill("#current", one_time)
    staff_phone.fill("#password", "my very own passphrase")
    staff_phone.fill("#confirm", "my very own passphrase")
    staff_phone.click("button:has-text('Change password')")
    expect(staff_phone.locator(".flash")).to_contain_text("Password changed")
    staff_phone.click("header nav >> text=Issues")
    expect(staff_phone.locator("h1")).to_have_text("Issues")
