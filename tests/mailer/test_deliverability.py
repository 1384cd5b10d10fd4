# ruff: noqa: RUF001 - Chinese text uses full-width punctuation on purpose
"""What a subscriber's copy scores where it lands: SpamAssassin (local rules), text contrast in Chromium in light and
dark mode at phone and desktop width, quoted-printable line lengths and the list headers.

Every message is the send path's own (worker.send_content.sample: the list's rendering, content_for, recipients_for,
encode_message), for the example issues and for generated ones the suite has never tuned for: short, long, many
links, Chinese, and a branded German list.
"""

from __future__ import annotations

import email
import os
import textwrap
from email import policy
from pathlib import Path

import pytest

from mailer.batch import Content, Recipient
from mailer.brand import Brand
from mailer.i18n import translations
from mailer.issue import Issue, load_issue, parse_issue
from mailer.message import encode_message, personalize
from mailer.quality import SPAM_GOAL, spam_score, spamassassin_path, text_runs
from mailer.render import render_issue
from mailer.settings import get_settings
from mailer.transports.sendgrid import SendGridTransport
from subscribers.models import MailingList
from worker import content as send_content
from worker.models import Send

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "issues").glob("*.md"))
IN_CI = bool(os.environ.get("CI"))


def _issue(front: str, body: str) -> str:
    return f"---\n{textwrap.dedent(front).strip()}\n---\n{textwrap.dedent(body).strip()}\n"


PARAGRAPH = ("The committee met on Tuesday to review the budget for the coming year. Members agreed that the "
             "maintenance backlog comes first, and that new projects wait until the audit is published.")
GENERATED = {
    "short": _issue("""
        subject: "Short note: the office moves on Monday"
        preheader: "One thing to know before the weekend."
        date: 2026-11-20
        """, """
        ## The office moves on Monday
        From Monday we work from the new building on Harbour Street. Your badge already opens the doors.
        """),
    "long": _issue("""
        subject: "The long read: twelve stories from a busy month"
        preheader: "Budgets, buildings, people and plans."
        date: 2026-10-30
        cta:
          text: "Read the full report"
          url: "https://reports.example.com/october"
        """, "Welcome to the monthly round-up.\n\n" + "\n\n".join(
        f"## Story number {n} about the month\n\n{PARAGRAPH}\n\n{PARAGRAPH}\n\n{PARAGRAPH}" for n in range(1, 13))
        + "\n\n## Wrapping Up\n\nThanks for reading."),
    "many-links": _issue("""
        subject: "Links of the week: forty things worth your time"
        preheader: "Reading for the train, sorted by topic."
        date: 2026-11-13
        """, "\n\n".join(
        f"## Topic {t}\n\n" + " ".join(f"[Article {t}.{i}](https://site{i}.example.org/articles/{t}-{i})"
                                       f" explains part {i}." for i in range(1, 9)) for t in range(1, 6))),
    "cjk": _issue("""
        subject: "每周文摘：芯片更节能，密码更少"
        preheader: "本周八条新闻，关于更安静、更高效的计算。"
        date: 2026-11-06
        lang: zh-Hans
        title: "每周文摘"
        outro_heading: "结语"
        """, """
        早上好。本周业界少了些热闹，多了些基础工作：更便宜的芯片、更少的密码，以及让现有软件耗电更少的持续努力。

        ## 芯片厂商竞相降低推理能耗

        三家最大的芯片设计公司本周发布了新的加速器，以峰值速度换取效率，声称每次回答可节省多达百分之四十的能源。

        分析人士提醒，这些数据来自厂商自己的基准测试。独立结果预计将在第一批产品发货后公布。

        ## 通行密钥用户突破十亿

        FIDO 联盟表示，已有超过十亿个账户可以使用通行密钥登录，而不是输入密码。银行和航空公司是最早的采用者。

        ## 结语

        本周就到这里。欢迎回复这封邮件，告诉我们您的想法。
        """),
}


def _documents() -> list[tuple[str, Issue, MailingList]]:
    # Click and open tracking on, as lists have it by default: the links and pixel a real send carries.
    plain = MailingList(slug="weekly", name="Digital Digest Weekly", language="en", track_clicks=True,
                        track_opens=True)
    german = MailingList(slug="wochenblatt", name="Das Wochenblatt", language="de", brand_name="Wochenblatt",
                         accent_colour="#7c2d12", postal_address="Wochenblatt GmbH, Hafenstraße 1, 20457 Hamburg",
                         logo_url="https://cdn.example.com/wochenblatt.png", track_clicks=True, track_opens=True)
    documents = [(path.stem, load_issue(path), plain) for path in EXAMPLES]
    documents += [(name, parse_issue(source, f"{name}.md"), plain) for name, source in GENERATED.items()]
    documents.append(("german-brand", load_issue(EXAMPLES[0]), german))
    return documents


DOCUMENTS = _documents()
IDS = [name for name, _issue, _list in DOCUMENTS]


def _sample(issue: Issue, mailing_list: MailingList) -> tuple[Content, Recipient]:
    settings = get_settings()
    send = Send(id=42)
    rendered = render_issue(issue, settings, force=True, audience=mailing_list.audience(settings))
    send_content.freeze_rendered(send, issue, rendered, mailing_list)
    return send_content.sample(send, mailing_list, issue.slug, settings)


@pytest.fixture
def public_base(monkeypatch: pytest.MonkeyPatch) -> None:
    """The links a real send carries (the test default, http://testserver, is itself something filters score)."""
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://news.example.com")
    get_settings.cache_clear()


@pytest.mark.usefixtures("public_base")
@pytest.mark.parametrize(("name", "issue", "mailing_list"), DOCUMENTS, ids=IDS)
def test_lines_and_headers_of_the_send_path_message(name: str, issue: Issue, mailing_list: MailingList) -> None:
    content, recipient = _sample(issue, mailing_list)
    data, _ = encode_message(content, recipient, message_id_domain="news.example.com")
    head, body = data.split(b"\r\n\r\n", 1)
    long_lines = [line for line in body.split(b"\r\n") if len(line) > 76]
    assert not long_lines, f"{len(long_lines)} body lines over 76 octets, e.g. {long_lines[0]!r}"
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    message = email.message_from_bytes(data, policy=policy.default)
    unsubscribe = [u.strip().strip("<>") for u in str(message["List-Unsubscribe"]).split(",")]
    assert unsubscribe[0].startswith("https://news.example.com/unsubscribe/")  # RFC 8058: an https URI
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Feedback-ID"] == f"send42:{mailing_list.slug}:news.example.com"
    assert message["List-Id"] == f"{mailing_list.name} <{mailing_list.slug}.news.example.com>"
    text = message.get_body(("plain",)).get_content()
    assert "__NL" not in text and ("Sample Reader" in text or not issue.intro.text)
    postal = mailing_list.postal_address or get_settings().postal_address
    assert postal in text and postal in message.get_body(("html",)).get_content()


@pytest.mark.skipif(spamassassin_path() is None and not IN_CI,
                    reason="spamassassin not installed (scripts/test installs it); never skipped in CI")
@pytest.mark.usefixtures("public_base")
@pytest.mark.parametrize(("name", "issue", "mailing_list"), DOCUMENTS, ids=IDS)
def test_spamassassin_local_rules_score_at_most_half_a_point(name: str, issue: Issue,
                                                             mailing_list: MailingList) -> None:
    content, recipient = _sample(issue, mailing_list)
    report = spam_score(encode_message(content, recipient, message_id_domain="news.example.com")[0])
    assert report is not None
    assert report.score <= SPAM_GOAL, f"{name}: {report.score} ({', '.join(report.rules)})"
    assert "HTML_FONT_LOW_CONTRAST" not in report.rules and "FONT_INVIS_MSGID" not in report.rules


def test_the_spam_check_can_fail() -> None:
    """The measurement itself: a hidden, background-coloured preheader (what mj-preview wrote) is scored."""
    if spamassassin_path() is None and not IN_CI:
        pytest.skip("spamassassin not installed")
    html = ('<html><body style="background:#ffffff"><div style="display:none;color:#ffffff">hidden preheader text'
            '</div><p style="color:#222222">Hello there, this is the body of a letter.</p>'
            '<font color="#fefefe">light text on white</font></body></html>')
    content = Content(subject="Hello", html=html, text="Hello there", from_email="a@news.example.com")
    report = spam_score(encode_message(content, Recipient(email="r@example.com", values={}),
                                       message_id_domain="news.example.com")[0])
    assert report is not None and "HTML_FONT_LOW_CONTRAST" in report.rules


@pytest.mark.browser
@pytest.mark.usefixtures("public_base")
@pytest.mark.parametrize(("name", "issue", "mailing_list"), DOCUMENTS, ids=IDS)
def test_every_text_run_has_enough_contrast_light_and_dark(browser, tmp_path: Path, name: str, issue: Issue,
                                                           mailing_list: MailingList) -> None:
    content, recipient = _sample(issue, mailing_list)
    page = tmp_path / "email.html"
    page.write_text(personalize(content, recipient)[0])
    runs = text_runs(browser, page)
    assert {(run.scheme, run.width) for run in runs} == {("light", 375), ("light", 1024), ("dark", 375),
                                                          ("dark", 1024)}
    unsubscribe = translations(issue.lang or mailing_list.language).gettext("Unsubscribe")
    assert sum(1 for run in runs if unsubscribe in run.text) >= 4  # the footer was measured in every mode
    low = sorted((run for run in runs if not run.ok), key=lambda run: run.ratio)
    assert not low, "\n".join(map(str, low[:12]))


@pytest.mark.browser
def test_the_contrast_check_can_fail(browser, tmp_path: Path) -> None:
    """The old dark mode: light text over a section whose table keeps its light background."""
    page = tmp_path / "low.html"
    page.write_text('<html><head><meta name="color-scheme" content="light dark"><style>@media (prefers-color-scheme:'
                    ' dark) { .t { color: #e5e7eb !important; } }</style></head><body style="background:#f3f4f6">'
                    '<table style="background:#f3f4f6"><tr><td class="t" style="color:#52606d;font-size:12px">'
                    'Unsubscribe</td></tr></table><p style="display:none;color:#fff">hidden</p></body></html>')
    runs = text_runs(browser, page)
    dark = [run for run in runs if run.scheme == "dark"]
    light = [run for run in runs if run.scheme == "light"]
    assert dark and all(not run.ok and run.ratio < 1.2 for run in dark)
    assert light and all(run.ok for run in light)
    assert not any("hidden" in run.text for run in runs)


def test_brand_is_in_the_mail(public_base: None) -> None:
    _name, issue, german = DOCUMENTS[-1]
    content, recipient = _sample(issue, german)
    html, text = personalize(content, recipient)
    assert Brand(accent="#7c2d12").accent_dark in html and "#7c2d12" in html and "#1d4ed8" not in html
    assert 'src="https://cdn.example.com/wochenblatt.png"' in html and 'alt="Wochenblatt"' in html
    assert "Wochenblatt GmbH, Hafenstraße 1" in text


def test_sendgrid_requests_carry_feedback_id_and_list_headers(public_base: None) -> None:
    """SendGrid builds the MIME itself: the shared headers travel in the request body."""
    _name, issue, german = DOCUMENTS[-1]
    content, recipient = _sample(issue, german)
    body = SendGridTransport("SG.test", host="http://127.0.0.1:9", timeout_s=1).payload(content, [recipient])
    assert body["headers"] == {"List-Id": "Das Wochenblatt <wochenblatt.news.example.com>",
                               "Feedback-ID": "send42:wochenblatt:news.example.com"}
    assert body["personalizations"][0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
