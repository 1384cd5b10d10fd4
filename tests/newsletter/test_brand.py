"""A list's brand: set from the CLI, refused when it would be unreadable or unsafe, served and shown on its pages."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mailer.brand import BrandError, contrast, dark_tint, normalise_accent
from mailer.db import session_scope
from mailer.quality import text_runs
from newsletter.cli import app
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists, service
from tests.newsletter.test_admin_pages import admin  # noqa: F401 - the signed-in admin client fixture
from tests.newsletter.test_admin_pages import csrf as admin_csrf
from tests.support.mailbox import messages_to

runner = CliRunner()


def png(width: int = 4, height: int = 2) -> bytes:
    """A real, minimal PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\x1d\x4e\xd8" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("colour", "ok"), [("#1d4ed8", True), ("#7c2d12", True), ("333", True),
                                            ("#ff0000", False), ("#00aa77", False), ("#ffffff", False),
                                            ("#777777", False), ("blue", False), ("#12345", False)])
def test_an_accent_must_read_at_4_5_to_1_in_light_and_dark_mode(colour: str, ok: bool) -> None:
    if not ok:
        with pytest.raises(BrandError):
            normalise_accent(colour)
        return
    accent = normalise_accent(colour)
    assert contrast(accent, "#ffffff") >= 4.5  # links on the white card, white text on accent buttons
    assert contrast(dark_tint(accent), "#1f2937") >= 4.5  # links on the dark card
    assert contrast(dark_tint(accent), "#111827") >= 4.5  # links in the dark topline and footer


def test_cli_refuses_a_bad_brand_and_changes_nothing(db_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["lists", "create", "news", "--name", "News", "--accent", "#00aa77"])
    assert result.exit_code == 1 and "2.99:1" in result.output and "Traceback" not in result.output
    with session_scope() as session, pytest.raises(service.ServiceError):
        mailing_lists.get_list(session, "news")
    assert runner.invoke(app, ["lists", "create", "news", "--name", "News"]).exit_code == 0
    svg = tmp_path / "logo.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    huge = tmp_path / "huge.png"
    huge.write_bytes(png() + b"\x00" * (300 * 1024))
    for option, value, message in (("--logo", str(svg), "PNG, JPEG or GIF"), ("--logo", str(huge), "limit"),
                                   ("--logo", "http://cdn.example.com/a.png", "https://"),
                                   ("--logo", str(tmp_path / "missing.png"), "missing.png"),
                                   ("--language", "xx", "No translation"), ("--accent", "#fff", "1.00:1")):
        result = runner.invoke(app, ["lists", "set", "news", option, value])
        assert result.exit_code == 1 and message in result.output, (option, value, result.output)
    with session_scope() as session:
        unchanged = mailing_lists.get_list(session, "news")
        assert (unchanged.logo_url, unchanged.logo_type, unchanged.language, unchanged.accent_colour) == (
            None, None, "en", None)


@pytest.fixture
def branded(db_url: str, tmp_path: Path) -> TestClient:
    reset()
    logo = tmp_path / "logo.png"
    logo.write_bytes(png())
    assert runner.invoke(app, ["lists", "create", "news", "--name", "Harbour News"]).exit_code == 0
    result = runner.invoke(app, ["lists", "set", "news", "--brand-name", "Harbour Press", "--logo", str(logo),
                                 "--accent", "#7c2d12", "--postal-address", "Harbour Press, 2 Quay Road, Portsmouth",
                                 "--language", "de", "--reply-to", "letters@harbour.example.com"])
    assert result.exit_code == 0, result.output
    return TestClient(create_app(), base_url="http://testserver")


def test_the_uploaded_logo_is_served_and_the_pages_wear_the_brand(branded: TestClient) -> None:
    page = branded.get("/lists/news/subscribe")
    assert page.status_code == 200
    with session_scope() as session:
        digest = mailing_lists.get_list(session, "news").logo_digest
    assert f'src="http://testserver/lists/news/logo?v={digest}"' in page.text and 'alt="Harbour Press"' in page.text
    assert "--accent:#7c2d12" in page.text.replace(" ", "") and dark_tint("#7c2d12") in page.text
    assert "Harbour Press, 2 Quay Road, Portsmouth" in page.text and 'lang="de"' in page.text
    image = branded.get(f"/lists/news/logo?v={digest}")
    assert image.status_code == 200 and image.content == png() and image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff" and "sandbox" in image.headers[
        "content-security-policy"]
    assert branded.get("/lists/nothing/logo").status_code == 404
    result = runner.invoke(app, ["lists", "show", "news"])
    assert "language: de" in result.output and "accent: #7c2d12" in result.output and "uploaded" in result.output


def test_the_list_mail_carries_brand_reply_to_and_feedback_id(branded: TestClient) -> None:
    answer = branded.get("/lists/news/subscribe")
    token = re.search(r'name="csrf_token" value="([^"]+)"', answer.text).group(1)  # type: ignore[union-attr]
    branded.post("/lists/news/subscribe", data={"email": "ann@example.com", "csrf_token": token})
    [confirmation] = messages_to("ann@example.com")
    assert confirmation["Reply-To"] == "letters@harbour.example.com"
    assert confirmation["Feedback-ID"] == "confirm:news:news.example.com"
    html = confirmation.get_body(("html",)).get_content()
    assert "#7c2d12" in html and "/lists/news/logo?v=" in html and "Harbour Press, 2 Quay Road" in html
    assert "Abonnement bestätigen" in html


@pytest.mark.browser
def test_branded_pages_keep_their_contrast_in_both_modes(branded: TestClient, browser, tmp_path: Path) -> None:
    page = tmp_path / "subscribe.html"
    page.write_text(branded.get("/lists/news/subscribe").text)
    runs = text_runs(browser, page)
    assert runs and {run.scheme for run in runs} == {"light", "dark"}
    low = [str(run) for run in runs if not run.ok]
    assert not low, "\n".join(low)


def test_admin_list_form_sets_language_and_brand_and_refuses_unreadable_accent(admin: TestClient) -> None:  # noqa: F811
    page = admin.get("/admin/lists/weekly")
    assert 'name="language"' in page.text and '<option value="zh-Hans"' in page.text
    token = admin_csrf(admin, "/admin/lists/weekly")
    form = {"csrf_token": token, "name": "Weekly", "language": "de", "brand_name": "Weekly Press",
            "accent_colour": "#ff0000", "postal_address": "1 Quay Road"}
    refused = admin.post("/admin/lists/weekly", data=form)
    assert refused.status_code == 400 and "4.00:1" in refused.text
    with session_scope() as session:
        assert mailing_lists.get_list(session, "weekly").language == "en"  # nothing of the refused form was kept
    saved = admin.post("/admin/lists/weekly", data=form | {"accent_colour": "#7c2d12"},
                       files={"logo_file": ("logo.png", png(), "image/png")}, follow_redirects=True)
    assert saved.status_code == 200
    with session_scope() as session:
        weekly = mailing_lists.get_list(session, "weekly")
        assert (weekly.language, weekly.brand_name, weekly.accent_colour, weekly.postal_address, weekly.logo_type) == (
            "de", "Weekly Press", "#7c2d12", "1 Quay Road", "image/png")
    svg = admin.post("/admin/lists/weekly", data=form | {"accent_colour": "#7c2d12"},
                     files={"logo_file": ("x.svg", b"<svg><script>alert(1)</script></svg>", "image/svg+xml")})
    assert svg.status_code == 400 and "PNG, JPEG or GIF" in svg.text
