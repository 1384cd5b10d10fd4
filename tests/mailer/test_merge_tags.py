"""Merge tags: parsed by their own grammar (never evaluated), one slot per tag in the render-once document, and
each recipient's values escaped for where they land (HTML, text, URL, the Subject header)."""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailer import merge_tags
from mailer.batch import Content, Recipient
from mailer.issue import Issue, IssueError, field_problems, parse_issue
from mailer.merge_tags import Ref, Slot, Tag, display, parse_tag, value_of, values_for
from mailer.message import encode_message, personal_subject, personalize
from mailer.placeholders import Key
from mailer.render import render_issue
from mailer.transports.sendgrid import SendGridTransport
from newsletter.cli import app
from tests.mailer.test_dkim import DUAL, REQUIRED, dkimpy_results, signatures
from tests.support.sendgrid_standin import API_KEY, SendGridStandIn, render

runner = CliRunner()

ISSUE = """---
subject: "Hi {{ subscriber.name | default('reader') }}: the {{ subscriber.fields.city }} digest"
---
Hello {{ subscriber.name | default("friend") }}, news for {{ subscriber.fields.city | default("your town") }}.
Your address: {{subscriber.email}}. Plan: {{ subscriber.fields.plan }}.
[Weather](https://weather.example.com/today?city={{ subscriber.fields.city }}&u=1)

## Events in {{ subscriber.fields.city | default("your town") }}
Text with a literal \\{{ 7*7 }} and _emphasis_.

## Second story
More text.
"""


def tagged(source: str = ISSUE) -> Issue:
    return parse_issue(source, "tags.md")


def problems(source: str) -> list[str]:
    with pytest.raises(IssueError) as info:
        parse_issue(source, "tags.md")
    return [str(p) for p in info.value.problems]


def body(text: str, subject: str = "Plain subject") -> str:
    return f"---\nsubject: \"{subject}\"\n---\n{text}\n\n## Story\nWords.\n"


def copy_for(issue: Issue, name: str, address: str, fields: dict[str, object] | None) -> tuple[str, str, str]:
    """(subject, html, text) as one recipient gets them: the document rendered once, then filled."""
    rendered = render_issue(issue, force=True)
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text, from_email="d@example.com")
    recipient = Recipient(email=address, values={Key.NAME: name or "there"},
                          tags=values_for(rendered.slots, name, address, fields))
    html, text = personalize(content, recipient)
    return personal_subject(content, recipient), html, text


# The grammar -------------------------------------------------------------------------------------------------

def test_grammar_accepts_the_three_references_and_one_default() -> None:
    assert parse_tag(" subscriber.name ") == Tag(Ref.NAME)
    assert parse_tag("subscriber.email") == Tag(Ref.EMAIL)
    assert parse_tag(" subscriber.fields.home_city | default(\"friend's place\") ") == \
        Tag(Ref.FIELD, "home_city", "friend's place")
    assert parse_tag("subscriber.fields.x|default('a \"b\"')") == Tag(Ref.FIELD, "x", 'a "b"')


@pytest.mark.parametrize(("inner", "message"), [
    ("subscriber.nmae", "unknown subscriber attribute 'nmae' (did you mean 'name'?)"),
    ("subscriber.fields.x | upper", "unsupported filter 'upper'"),
    ("subscriber.fields.x | default(\"a\") | upper", "one quoted string"),
    ("subscriber.fields.x | default(friend)", "one quoted string"),
    ("subscriber.fields.2x", "'2x' is not a field name"),
    ("subscriber.fields.a.b", "'a.b' is not a field name"),
    ("7*7", "not a merge tag"),
    ("''.__class__.__mro__[1].__subclasses__()", "not a merge tag"),
    ("config.items()", "not a merge tag"),
    ("subscriber.__class__", "unknown subscriber attribute"),
    ("subscriber.name | default(\"" + "x" * 201 + "\")", "longer than 200"),
])
def test_grammar_refuses_everything_else_with_a_reason(inner: str, message: str) -> None:
    problem = parse_tag(inner)
    assert isinstance(problem, str) and message in problem


def test_unknown_and_malformed_tags_are_located_problems() -> None:
    source = body("Intro {{ subscriber.name }}.\n\nSee {{ subscriber.nmae }} and {{ 7*7 }}.\n\n"
                  "Then {{ subscriber.fields.x | upper }}, {% if subscriber.name %}, and {{ unclosed",
                  subject="Hi {{ subscriber.emial }}")
    found = problems(source)
    assert "tags.md:2: unknown subscriber attribute 'emial' (did you mean 'email'?): use name, email or " \
           "fields.NAME: '{{ subscriber.emial }}'" in found
    assert any(p.startswith("tags.md:6: unknown subscriber attribute 'nmae'") for p in found)
    assert any(p.startswith("tags.md:6: not a merge tag") and "{{ 7*7 }}" in p for p in found)
    assert any(p.startswith("tags.md:8: unsupported filter 'upper'") for p in found)
    assert any(p.startswith("tags.md:8: template statements") for p in found)
    assert any(p.startswith("tags.md:8: '{{' is not closed") for p in found)
    assert len(found) == 6


def test_hostile_bodies_are_read_in_one_pass_with_a_bounded_report() -> None:
    started = time.perf_counter()
    found = problems(body("{{" * 200_000 + "\n" + "{{ x }}\n" * 20_000 + "{% %}" * 20_000))
    assert len(found) == merge_tags.MAX_PROBLEMS and found[0].startswith("tags.md:4: '{{' is not closed")
    assert found[1].startswith("tags.md:5: not a merge tag")
    many = tagged(body("{{ subscriber.name }} " * 50_000))
    assert len(many.slots) == 1 and many.intro.html.count("__NLH_TAG0__") == 50_000
    distinct = problems(body(" ".join(f"{{{{ subscriber.fields.f{i} }}}}" for i in range(41))))
    assert distinct == ["tags.md:4: 41 different merge tags: at most 40 (each is one more value per recipient)"]
    assert time.perf_counter() - started < 20  # one pass: quadratic scanning would take hours


def test_tags_outside_subject_and_body_are_refused() -> None:
    source = "---\nsubject: s\npreheader: \"Hi {{ subscriber.name }}\"\n---\nIntro.\n\n## Story\nText.\n"
    assert problems(source) == ["tags.md:3: merge tags work in the subject and the body only, not in 'preheader'"]


def test_no_template_is_ever_evaluated() -> None:
    """The body reaches Jinja2 only as a rendered value: a literal `{{ 7*7 }}` stays as written, and so does a
    subscriber value that looks like a template."""
    issue = tagged()
    subject, html, text = copy_for(issue, "{{ 7*7 }}", "a@example.com", {"city": "{% for x in range(9) %}"})
    assert "{{ 7*7 }}" in html and "{{ 7*7 }}" in text and "49" not in html + text + subject
    assert "Hello {{ 7*7 }}, news for {% for x in range(9) %}." in text
    assert subject == "Hi {{ 7*7 }}: the {% for x in range(9) %} digest"


# Values, escaping, defaults -----------------------------------------------------------------------------------

def test_each_part_gets_its_escaping() -> None:
    subject, html, text = copy_for(tagged(), "<script>alert(1)</script>", "a&b@example.com",
                                   {"city": "Tom & Jerry's \"town\"", "plan": "<b>pro</b>"})
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Tom &amp; Jerry&#x27;s &quot;town&quot;" in html and "&lt;b&gt;pro&lt;/b&gt;" in html
    assert "a&amp;b@example.com" in html
    assert "Hello <script>alert(1)</script>, news for Tom & Jerry's \"town\"." in text
    assert "Your address: a&b@example.com. Plan: <b>pro</b>." in " ".join(text.split())
    assert subject == "Hi <script>alert(1)</script>: the Tom & Jerry's \"town\" digest"


def test_missing_values_take_the_default_or_nothing() -> None:
    subject, html, text = copy_for(tagged(), "", "a@example.com", {})
    assert "Hello friend, news for your town." in text and "Plan: ." in text
    assert subject == "Hi reader: the  digest"
    assert "Events in your town" in text and "Events in your town" in html


@pytest.mark.parametrize(("stored", "shown"), [
    (42, "42"), (2.0, "2"), (3.25, "3.25"), (-0.5, "-0.5"), (True, "true"), (False, "false"),
    ("2024-05-01", "2024-05-01"), (["red", 7, None, "blue"], "red, 7, blue"), (None, ""), ({"a": 1}, ""),
    (float("nan"), ""), ("", ""), (10**20, str(10**20)),
])
def test_stored_json_values_read_sensibly(stored: object, shown: str) -> None:
    assert display(stored) == shown
    slot = Slot(Tag(Ref.FIELD, "f", "dflt"))
    assert value_of(slot, "", "", {"f": stored}) == (shown or "dflt")


def test_values_are_one_bounded_line() -> None:
    slot = Slot(Tag(Ref.NAME))
    assert value_of(slot, "Eve\r\nBcc: victim@example.com\x00\u2028x", "", None) == "Eve Bcc: victim@example.com x"
    assert len(value_of(slot, "n" * 50_000, "", None)) == merge_tags.MAX_VALUE


def test_subject_header_cannot_be_injected() -> None:
    issue = tagged()
    rendered = render_issue(issue, force=True)
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text, from_email="d@example.com")
    evil = "Eve\r\nBcc: victim@example.com\r\n\r\n<html>"
    for tags in (values_for(rendered.slots, evil, "e@example.com", {"city": "X\nY"}),
                 tuple(evil for _slot in rendered.slots)):  # even values that skipped merge_tags.one_line
        recipient = Recipient(email="e@example.com", values={Key.NAME: "Eve"}, tags=tags)
        raw, _id = encode_message(content, recipient, message_id_domain="example.com")
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc:" not in head and head.count(b"\r\nSubject:") == 1
        message = email.message_from_bytes(raw, policy=policy.default)
        assert message["Bcc"] is None and message["Subject"].startswith("Hi Eve Bcc: victim@example.com")
        assert "\n" not in str(message["Subject"])


def test_a_long_non_ascii_subject_is_folded_and_encoded() -> None:
    issue = tagged()
    rendered = render_issue(issue, force=True)
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text, from_email="d@example.com")
    name = "Zoë Ångström-" + "Øster" * 40
    recipient = Recipient(email="z@example.com", values={}, tags=values_for(rendered.slots, name, "z@example.com",
                                                                            {"city": "Malmö"}))
    raw, _id = encode_message(content, recipient, message_id_domain="example.com")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and max(len(line) for line in head.split(b"\r\n")) <= 78
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["Subject"] == f"Hi {name}: the Malmö digest"


def test_a_personal_subject_and_tag_values_are_signed_by_dkim() -> None:
    """The Subject is one line per recipient and slot values are spliced into the pre-encoded body: both must be
    covered by the DKIM signature, which a verifier sharing no code with ours accepts."""
    rendered = render_issue(tagged(), force=True)
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text,
                      from_email="digest@news.example.com", list_id="Weekly <weekly.news.example.com>")
    for name, fields in (("Zoë <b>", {"city": "Malmö & co", "plan": 2.5}), ("", {})):
        recipient = Recipient(email="z@example.com", values={Key.NAME: name or "there"},
                              unsubscribe_url="https://news.example.com/u/t",
                              tags=values_for(rendered.slots, name, "z@example.com", fields))
        raw, _id = encode_message(content, recipient, message_id_domain="news.example.com", dkim=DUAL)
        assert dkimpy_results(raw) == [True, True]
        assert set(signatures(raw)[0]["h"].lower().split(":")) >= REQUIRED
        assert email.message_from_bytes(raw, policy=policy.default)["Subject"] == personal_subject(content, recipient)


# Where tags may stand -----------------------------------------------------------------------------------------

def test_tags_in_a_link_are_url_escaped_and_not_tracked_as_plain_links() -> None:
    _subject, html, text = copy_for(tagged(), "Ann", "a@example.com", {"city": "São Paulo & co/x?y=1#z"})
    escaped = "S%C3%A3o%20Paulo%20%26%20co%2Fx%3Fy%3D1%23z"
    assert f'href="https://weather.example.com/today?city={escaped}&amp;u=1"' in html
    assert f"https://weather.example.com/today?city={escaped}&u=1" in text
    assert "news for São Paulo &amp; co/x?y=1#z." in html


def test_a_tag_cannot_choose_where_a_link_goes() -> None:
    for link in ("[x]({{ subscriber.fields.site }})", "[x](https://{{ subscriber.fields.host }}/a)",
                 "![x](https://{{ subscriber.fields.host }}.example.com/a.png)",
                 "[x]({{ subscriber.fields.scheme }}://example.com/)"):
        [problem] = problems(body(link))
        assert problem.startswith("tags.md:4: a merge tag in the scheme or host of '") and "{{ subscriber" in problem
    assert tagged(body("[x](https://example.com/u/{{ subscriber.fields.id }}#{{ subscriber.name }})")).links == (
        "https://example.com/u/{{ subscriber.fields.id }}#{{ subscriber.name }}",)


def test_tags_in_headings_alt_text_and_code_are_filled() -> None:
    issue = tagged(body("![Map of {{ subscriber.fields.city }}](https://img.example.com/m.png)\n\n"
                        "`id={{ subscriber.fields.id }}`\n\n### For **{{ subscriber.name }}**"))
    _subject, html, text = copy_for(issue, "Ann <3", "a@example.com", {"city": "Oslo", "id": 7})
    assert 'alt="Map of Oslo"' in html and "<code>id=7</code>" in html and "<strong>Ann &lt;3</strong>" in html
    assert "[Map of Oslo]" in text and "id=7" in text and "For Ann <3" in text
    _subject, html, text = copy_for(tagged(), "Ann", "a@example.com", {"city": "Oslo"})
    assert "Events in Oslo</h2>" in html and "1. Events in Oslo\n" in text


def test_archive_copy_and_stored_subject_show_defaults() -> None:
    rendered = render_issue(tagged(), force=True)
    assert "__NL" not in rendered.web_html and "Hello friend, news for your town." in rendered.web_html
    assert "Events in your town" in rendered.web_html and "city=&amp;u=1" in rendered.web_html
    assert rendered.web_subject == "Hi reader: the  digest" and "__NLT_TAG" in rendered.subject
    assert "<title>Hi __NLH_TAG" in rendered.html


def test_an_issue_without_tags_has_no_slots() -> None:
    issue = tagged(body("Nothing personal, only {braces} and { {spaced} }."))
    assert issue.slots == () and issue.mail_subject == "" and merge_tags.to_json(issue.slots) is None


def test_slots_survive_their_json_round_trip() -> None:
    slots = tagged().slots
    assert merge_tags.from_json(merge_tags.to_json(slots)) == slots
    assert Slot(Tag(Ref.FIELD, "city"), url=True) in slots and Slot(Tag(Ref.FIELD, "city")) in slots
    assert merge_tags.from_json("garbage") == ()


# newsletter check --------------------------------------------------------------------------------------------

def test_check_flags_unknown_tags_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.md"
    path.write_text(body("Hi {{ subscriber.nmae }}.\n\nAnd {{ subscriber.fields.x | upper }}."))
    result = runner.invoke(app, ["check", str(path), "--no-measure"])
    assert result.exit_code == 1
    assert f"{path}:4: unknown subscriber attribute 'nmae' (did you mean 'name'?)" in result.output
    assert f"{path}:6: unsupported filter 'upper'" in result.output


def test_field_problems_name_each_unknown_field() -> None:
    issue = tagged()
    assert field_problems(issue, None, "tags.md") == []
    assert field_problems(issue, {"city", "plan"}, "tags.md") == []
    found = [str(p) for p in field_problems(issue, {"town"}, "tags.md")]
    assert found[0] == "tags.md:2: 'subscriber.fields.city' is not a field of this list (its fields: town)"
    assert [p.split(":")[1] for p in found] == ["2", "4", "5", "6", "8"]


@pytest.fixture
def issue_file(tmp_path: Path) -> Path:
    path = tmp_path / "tags.md"
    path.write_text(ISSUE)
    return path


def test_check_with_a_list_flags_fields_it_does_not_define(sqlite_url: str, issue_file: Path) -> None:
    result = runner.invoke(app, ["lists", "create", "weekly", "--name", "Weekly"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["fields", "add", "weekly", "city", "--type", "text"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["check", str(issue_file), "--no-measure", "--list", "weekly"])
    assert result.exit_code == 1
    assert f"{issue_file}:5: 'subscriber.fields.plan' is not a field of this list (its fields: city)" in \
        result.output
    result = runner.invoke(app, ["check", str(issue_file), "--no-measure", "--list", "nope"])
    assert result.exit_code == 1 and "no list 'nope'" in result.output and "Traceback" not in result.output


# SendGrid: the same slots as substitutions --------------------------------------------------------------------

@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    server = SendGridStandIn().start()
    yield server
    server.stop()


def test_sendgrid_fills_tags_by_substitution(standin: SendGridStandIn) -> None:
    rendered = render_issue(tagged(), force=True)
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text, from_email="d@example.com")
    people = [("Ann", {"city": "Oslo", "plan": 3}), ("<i>Bo</i>\r\nBcc: x@example.com", {"city": "A&B"}),
              ("", {})]
    batch = [Recipient(email=f"p{i}@example.com", values={Key.NAME: name or "there"},
                       tags=values_for(rendered.slots, name, f"p{i}@example.com", fields))
             for i, (name, fields) in enumerate(people)]
    SendGridTransport(API_KEY, host=standin.url, timeout_s=5.0).send(content, batch)
    sent = standin.state.bodies[0]
    for index, recipient in enumerate(batch):
        html, text = personalize(content, recipient)
        assert render(sent, index) == (personal_subject(content, recipient), text, html)
    assert render(sent, 0)[0] == "Hi Ann: the Oslo digest"
    subject, text, html = render(sent, 1)
    assert subject == "Hi <i>Bo</i> Bcc: x@example.com: the A&B digest" and "\n" not in subject
    assert "&lt;i&gt;Bo&lt;/i&gt;" in html and "<i>Bo</i>" not in html and "Hello <i>Bo</i>" in text
    assert render(sent, 2)[0] == "Hi reader: the  digest"
    for item in sent["personalizations"]:
        tags = {k: v for k, v in item.get("substitutions", {}).items() if "_TAG" in k}
        assert tags and all("\r" not in v and "\n" not in v for v in tags.values())
