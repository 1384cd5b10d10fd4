"""Click and open tracking in a rendered message, applied once per send (never per recipient).

The links of the issue become `{base}/c/{token}/{n}` and a pixel `{base}/o/{token}` is added, where `{token}` is a
per-recipient placeholder (`Key.TRACK`): the document stays one template with slots, so the render-once fast path
(SendGrid substitutions, pre-encoded MIME) is unchanged and a recipient pays for one more short value.

What is never rewritten: links that already hold a placeholder (unsubscribe, preferences, the web copy, a link
with a merge tag), `mailto:`
and anything that is not http(s). Position 0 is a trap: a link no person can see or click, which scanners follow.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from mailer.placeholders import PLACEHOLDER, Key, html_token, text_token

TRAP_POSITION = 0
_ANCHOR_HREF = re.compile(r'(<a\b[^>]*?\bhref=")([^"]*)(")', re.IGNORECASE)
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body>", re.IGNORECASE)


@dataclass(frozen=True)
class Tracked:
    html: str
    text: str
    links: list[str]  # links[n - 1] is the URL of position n


def _trackable(url: str) -> bool:
    return url.startswith(("http://", "https://")) and not PLACEHOLDER.search(url)


def add_tracking(html_part: str, text_part: str, base_url: str, *, clicks: bool, opens: bool) -> Tracked:
    """The message with its links routed through our redirect and, if asked, an open pixel and the trap link."""
    base = base_url.rstrip("/")
    positions: dict[str, int] = {}
    if clicks:
        click_html = f"{base}/c/{html_token(Key.TRACK)}/"

        def rewrite(match: re.Match[str]) -> str:
            url = html.unescape(match.group(2))
            if not _trackable(url):
                return match.group(0)
            position = positions.setdefault(url, len(positions) + 1)
            return f"{match.group(1)}{click_html}{position}{match.group(3)}"

        html_part = _ANCHOR_HREF.sub(rewrite, html_part)
        # The text part names the same URLs; longest first, so a URL that prefixes another is not cut in two.
        click_text = f"{base}/c/{text_token(Key.TRACK)}/"
        for url in sorted(positions, key=len, reverse=True):
            text_part = re.sub(re.escape(url) + r"(?![\w/?#&=%.~+-])", f"{click_text}{positions[url]}", text_part)
        trap = (f'<a href="{click_html}{TRAP_POSITION}" aria-hidden="true" tabindex="-1" '
                f'style="display:none;font-size:0;line-height:0;max-height:0;overflow:hidden"></a>')
        html_part = _BODY_OPEN.sub(lambda m: m.group(0) + trap, html_part, count=1)
    if opens:
        pixel = (f'<img src="{base}/o/{html_token(Key.TRACK)}" width="1" height="1" alt="" '
                 f'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">')
        html_part, count = _BODY_CLOSE.subn(lambda m: pixel + m.group(0), html_part, count=1)
        if not count:
            html_part += pixel
    return Tracked(html_part, text_part, list(positions))
