"""Measurements of a finished message that mailbox providers and readers judge it by: the spam score SpamAssassin's
local rules give it, and the contrast of every visible text run in light and dark mode.

Both need tools outside Python (the `spamassassin` script, a Chromium); each function says None when its tool is
missing, so `newsletter check` reports what it can and the suite (which installs both) always measures.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCORE = re.compile(rb"^X-Spam-Status: \w+, score=(-?[\d.]+)", re.M)
_TESTS = re.compile(rb"tests=(.*?)(?:\s+autolearn=|\s+version=)", re.S)
SPAM_TIMEOUT_S = 120
SPAM_GOAL = 0.5  # the floor for a bare MJML message is 0.1 (HTML_MESSAGE and informational rules)

# 3:1 is WCAG's floor for large text; the team counts 24 px and up as large whatever the weight.
LARGE_TEXT_PX = 24.0
MIN_CONTRAST = 4.5
MIN_CONTRAST_LARGE = 3.0
WIDTHS = (375, 1024)
SCHEMES = ("light", "dark")


@dataclass(frozen=True)
class SpamReport:
    score: float
    rules: tuple[str, ...]


def spamassassin_path() -> str | None:
    return shutil.which("spamassassin")


def spam_score(message: bytes, *, timeout_s: float = SPAM_TIMEOUT_S) -> SpamReport | None:
    """SpamAssassin's score with local rules only (-L: no DNS, no network tests). None when it is not installed.

    Local rules are what can be checked anywhere and the part we control: network tests (blocklists, DKIM
    reputation) judge the sending infrastructure, not the message.
    """
    path = spamassassin_path()
    if path is None:
        return None
    result = subprocess.run([path, "-L", "-t", "--cf=report_safe 0"], input=message, capture_output=True,
                            timeout=timeout_s, check=False)
    header = result.stdout.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = _SCORE.search(header)
    if found is None:
        raise RuntimeError(f"spamassassin gave no score: {result.stderr.decode(errors='replace')[-500:]}")
    tests = _TESTS.search(header)
    rules = tuple(r for r in re.split(r"[\s,]+", tests.group(1).decode()) if r) if tests else ()
    return SpamReport(float(found.group(1)), rules)


# Every text node with a box on screen: its colour, the first opaque background behind it (alpha-blended over
# what is under it), its size. Hidden text (display:none, visibility, zero-size, clipped to nothing) has no box.
_CONTRAST_JS = """
() => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const blend = (top, under) => { const a = top[3]; return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a))
    .concat([1]); };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const canvas = parse(getComputedStyle(document.documentElement).colorScheme.includes('dark')
    && matchMedia('(prefers-color-scheme: dark)').matches ? 'rgb(18, 18, 18)' : 'rgb(255, 255, 255)');
  const background = (el) => {
    const layers = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = canvas;
    for (const layer of layers.reverse()) bg = blend(layer, bg);
    return bg;
  };
  const runs = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.replace(/\\s+/g, ' ').trim();
    if (!text || /^[\\u200a\\u200b\\u00a0 ]+$/.test(text)) continue;
    const el = node.parentElement; const style = getComputedStyle(el);
    if (style.visibility !== 'visible' || Number(style.opacity) === 0) continue;
    const range = document.createRange(); range.selectNodeContents(node);
    const rects = [...range.getClientRects()].filter(r => r.width > 1 && r.height > 1);
    if (!rects.length) continue;
    const bg = background(el); const fg = blend(parse(style.color), bg);
    const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    runs.push({text: text.slice(0, 60), ratio: (l1 + 0.05) / (l2 + 0.05), size: parseFloat(style.fontSize),
               color: style.color, background: 'rgb(' + bg.slice(0, 3).map(Math.round).join(', ') + ')'});
  }
  return runs;
}
"""


@dataclass(frozen=True)
class TextRun:
    scheme: str
    width: int
    text: str
    ratio: float
    size: float
    color: str
    background: str

    @property
    def required(self) -> float:
        return MIN_CONTRAST_LARGE if self.size >= LARGE_TEXT_PX else MIN_CONTRAST

    @property
    def ok(self) -> bool:
        return self.ratio >= self.required

    def __str__(self) -> str:
        return (f"{self.ratio:.2f}:1 (needs {self.required}:1) {self.scheme} {self.width}px {self.size:.0f}px "
                f"{self.color} on {self.background}: {self.text!r}")


def text_runs(browser: Any, html_file: Path) -> list[TextRun]:
    """Every visible text run of a page, in light and dark mode, at phone and desktop width."""
    runs: list[TextRun] = []
    for scheme in SCHEMES:
        for width in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
            try:
                page.goto(html_file.as_uri())
                runs.extend(TextRun(scheme=scheme, width=width, **run) for run in page.evaluate(_CONTRAST_JS))
            finally:
                page.close()
    return runs


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def measure_contrast(html: str, workdir: Path) -> list[TextRun] | None:
    """text_runs in a Chromium of its own; None when Playwright or a Chromium is missing (they are test tools)."""
    path = chromium_path()
    if path is None:
        return None
    try:
        # Imported here because Playwright is a test dependency: the CLI works without it and says so.
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional: a test dependency)
    except ImportError:
        return None
    html_file = workdir / "contrast.html"
    html_file.write_text(html, encoding="utf-8")
    # Playwright's sync API refuses to start where an event loop runs (a caller that already drives a browser,
    # a notebook): its own thread has none.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_measure_in_thread, sync_playwright, path, html_file).result()


def _measure_in_thread(sync_playwright: Any, path: str, html_file: Path) -> list[TextRun]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            return text_runs(browser, html_file)
        finally:
            browser.close()
