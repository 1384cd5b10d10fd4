"""The issue format: the example parses, and every error path names the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.issue import IssueError, load_issue, parse_issue

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "issues" / "2023-09-22-digital-digest.md"

GOOD = """---
subject: "Digital Digest Weekly: test"
preheader: "one line"
date: 2023-09-22
cta:
  text: "Read the report"
  url: "https://reports.example.com/september"
---
Intro with [square brackets] that are not links.

## First story
Para one with a [link](https://example.com/a) and **bold** and _italics_.

Para two. ![A chart](https://img.example.com/c.png)

## Second story
Only one paragraph here.

## Wrapping Up
Closing words.
"""


def problems(source: str) -> list[str]:
    with pytest.raises(IssueError) as info:
        parse_issue(source, "weekly.md")
    return [str(p) for p in info.value.problems]


def test_example_issue_has_eight_numbered_stories_outro_and_cta() -> None:
    issue = load_issue(EXAMPLE)
    assert len(issue.stories) == 8
    assert [s.number for s in issue.stories] == list(range(1, 9))
    assert issue.outro is not None and "That" in issue.outro.text
    assert issue.cta is not None and issue.cta.url.startswith("https://")
    assert issue.date is not None and issue.date.isoformat() == "2023-09-22"
    assert all(s.headline and s.body.text for s in issue.stories)


def test_markdown_features_and_literal_brackets() -> None:
    issue = parse_issue(GOOD, "weekly.md")
    assert "[square brackets]" in issue.intro.html
    first = issue.stories[0].body
    assert '<a href="https://example.com/a">link</a>' in first.html
    assert "<strong>bold</strong>" in first.html and "<em>italics</em>" in first.html
    assert 'alt="A chart"' in first.html
    assert "[1] https://example.com/a" in first.text  # links become numbered references in text
    assert issue.outro is not None and issue.outro.text == "Closing words."
    assert [s.headline for s in issue.stories] == ["First story", "Second story"]


def test_raw_html_in_markdown_is_escaped() -> None:
    issue = parse_issue(GOOD.replace("Closing words.", "Closing <script>alert(1)</script> words."), "w.md")
    assert issue.outro is not None
    assert "<script>" not in issue.outro.html and "&lt;script&gt;" in issue.outro.html


def test_missing_subject() -> None:
    assert problems(GOOD.replace('subject: "Digital Digest Weekly: test"\n', "")) == [
        "weekly.md:1: missing subject in front matter"]


def test_no_stories() -> None:
    source = GOOD.split("## First story")[0]
    assert any("no stories" in p and p.startswith("weekly.md:9:") for p in problems(source))


def test_bad_yaml_names_the_line() -> None:
    found = problems(GOOD.replace('preheader: "one line"', 'preheader: "unclosed'))
    assert len(found) == 1 and found[0].startswith("weekly.md:") and "bad YAML" in found[0]


def test_unknown_key_names_its_line() -> None:
    assert problems(GOOD.replace("date: 2023-09-22", "date: 2023-09-22\nauthor: Ann")) == [
        "weekly.md:5: unknown front matter key 'author' (allowed: cta, date, from_name, lang, list, outro_heading, "
        "preheader, slug, subject, title)"]


def test_relative_link_and_image_without_alt_and_empty_story() -> None:
    source = GOOD.replace("(https://example.com/a)", "(/relative/page)")
    source = source.replace("![A chart]", "![]")
    source = source.replace("Only one paragraph here.\n", "")
    found = problems(source)
    assert "weekly.md:12: relative or unsupported link '/relative/page': use an absolute https:// URL" in found
    assert "weekly.md:14: image 'https://img.example.com/c.png' has no alt text" in found
    assert "weekly.md:16: 'Second story' has no text under its heading" in found


def test_all_problems_reported_at_once() -> None:
    source = GOOD.replace('subject: "Digital Digest Weekly: test"\n', "").replace("(https://example.com/a)", "(x)")
    assert len(problems(source)) == 2


def test_front_matter_required() -> None:
    assert problems("## Story\ntext\n") == ["weekly.md:1: the file must start with '---' and YAML front matter"]


def test_configurable_outro_heading_and_optional_keys() -> None:
    source = GOOD.replace("## Wrapping Up", "## Until next week").replace(
        "date: 2023-09-22", "date: 2023-09-22\noutro_heading: Until next week\nlang: de\nlist: weekly\ntitle: DDW")
    issue = parse_issue(source, "w.md")
    assert issue.outro is not None and issue.outro_heading == "Until next week"
    assert (issue.lang, issue.list_slug, issue.title, len(issue.stories)) == ("de", "weekly", "DDW", 2)


def test_not_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.md"
    path.write_bytes(b"---\nsubject: \xff\n---\n")
    with pytest.raises(IssueError, match="not UTF-8"):
        load_issue(path)
