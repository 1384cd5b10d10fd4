"""Rendering: one pipeline run per issue, placeholders that survive it, escaping, no network, size budget."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailer import render as render_module
from mailer.batch import Content, Recipient
from mailer.issue import load_issue, parse_issue
from mailer.message import personalize
from mailer.placeholders import Key
from mailer.render import RenderError, issue_mjml, render_email, render_issue
from tests.mailer.test_issue import EXAMPLE, GOOD

ROOT = Path(__file__).resolve().parents[2]
MJML_CLI = ROOT / "tools" / "node_modules" / ".bin" / "mjml"


@pytest.fixture(scope="module")
def rendered():
    return render_issue(load_issue(EXAMPLE))


def test_structure_for_inboxes(rendered) -> None:
    html = rendered.html
    assert re.search(r'<html[^>]*\blang="en"', html)
    assert '<meta name="color-scheme" content="light dark">' in html
    assert 'role="presentation"' in html
    assert "max-width:600px" in html.replace(" ", "")
    assert "@media" in html  # responsive and dark-mode rules kept in a <style> block
    assert "Eight stories from a week" in html  # the hidden preheader
    for number, story in enumerate(load_issue(EXAMPLE).stories, start=1):
        assert story.headline.replace("'", "&#39;") in html or story.headline in html
        assert f"{number}. {story.headline}" in rendered.text
    assert "Read the full September report" in html and "https://reports.example.com/september" in html
    assert "Wrapping Up" in html and "Wrapping Up" in rendered.text


def test_nothing_points_at_the_network_except_content_links(rendered) -> None:
    assert "fonts.googleapis" not in rendered.html
    assert "<link" not in rendered.html
    assert "@import" not in rendered.html


def test_placeholders_survive_and_are_filled_escaped(rendered) -> None:
    for key in ("UNSUBSCRIBE_URL", "PREFERENCES_URL", "WEB_URL", "NAME"):
        assert f"__NLH_{key}__" in rendered.html
        assert f"__NLT_{key}__" in rendered.text
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text, from_email="a@example.com")
    recipient = Recipient(email="r@example.com", values={
        Key.NAME: '<script>alert("x")</script>', Key.UNSUBSCRIBE_URL: "https://news.example.com/unsubscribe/t?a=1&b=2",
        Key.PREFERENCES_URL: "https://news.example.com/preferences/t", Key.WEB_URL: "https://news.example.com/w"})
    html, text = personalize(content, recipient)
    assert "__NL" not in html and "__NL" not in text
    assert "<script>alert" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert 'href="https://news.example.com/unsubscribe/t?a=1&amp;b=2"' in html
    assert '<script>alert("x")</script>' in text  # the text part is not HTML: raw value
    assert "Unsubscribe: https://news.example.com/unsubscribe/t?a=1&b=2" in text


def test_web_variant_has_no_per_recipient_links(rendered) -> None:
    assert "__NL" not in rendered.web_html
    assert "Chipmakers race" in rendered.web_html


def test_size_budget_warns_then_refuses(settings) -> None:
    story = "## Story {n}\n" + ("Long paragraph of words that fills the email quickly. " * 40) + "\n\n"
    big = GOOD.split("## First story")[0] + "".join(story.format(n=n) for n in range(30))
    issue = parse_issue(big, "big.md")
    with pytest.raises(RenderError, match="Gmail clips"):
        render_issue(issue)
    forced = render_issue(issue, force=True)
    assert forced.html_bytes > settings.html_max_bytes and forced.warnings
    settings.html_warn_bytes = forced.html_bytes - 1
    settings.html_max_bytes = forced.html_bytes + 1
    assert "close to Gmail" in render_issue(issue).warnings[0]


def test_render_email_uses_the_shared_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "_layout.mjml.j2").write_text((render_module.EMAIL_TEMPLATES / "_layout.mjml.j2").read_text())
    (tmp_path / "hello.mjml.j2").write_text(
        '{% extends "_layout.mjml.j2" %}{% block content %}<mj-section><mj-column><mj-text>'
        "Hello {{ who }}</mj-text></mj-column></mj-section>{% endblock %}")
    (tmp_path / "hello.txt.j2").write_text("Hello {{ who }}")
    monkeypatch.setattr(render_module, "EMAIL_TEMPLATES", tmp_path)
    render_module._environment.cache_clear()
    try:
        email = render_email("hello", {"who": "<Ann>", "subject": "Hi", "masthead": "Digest"})
    finally:
        render_module._environment.cache_clear()
    assert "Hello &lt;Ann&gt;" in email.html and "Digest" in email.html
    assert email.text.strip() == "Hello <Ann>"


@pytest.mark.skipif((not MJML_CLI.exists() or shutil.which("node") is None) and not os.environ.get("CI"),
                    reason="reference mjml not installed (scripts/test installs it into tools/); never skipped in CI")
def test_reference_mjml_validates_our_mjml_strictly(tmp_path: Path) -> None:
    source = tmp_path / "issue.mjml"
    source.write_text(issue_mjml(load_issue(EXAMPLE)))
    bad = tmp_path / "bad.mjml"
    bad.write_text(source.read_text().replace("<mj-text", '<mj-text nonsense="1"', 1))
    ok = subprocess.run([str(MJML_CLI), str(source), "--config.validationLevel=strict", "-s"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    failing = subprocess.run([str(MJML_CLI), str(bad), "--config.validationLevel=strict", "-s"],
                             capture_output=True, text=True, timeout=60)
    assert failing.returncode != 0 and "illegal" in failing.stderr  # the check can fail

