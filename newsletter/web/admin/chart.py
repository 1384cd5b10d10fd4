"""The dashboard's chart: delivered, hard-bounce and complaint rates per send as inline SVG.

Drawn on the server, so the page needs no JavaScript and no charting library; labels are escaped here because
the result is inserted into the page as markup.
"""

from __future__ import annotations

from html import escape

COLORS = {"delivered": "#047857", "bounced": "#d97706", "complained": "#b91c1c"}


def rates_chart(rows: list[tuple[str, dict[str, int]]]) -> str:
    """One group of three bars per (label, send figures), oldest send first."""
    if not rows:
        return '<p class="muted">No sends yet.</p>'
    width, height, left, top = 760, 200, 44, 10
    group = (width - left) / max(len(rows), 4)
    bar = max(6.0, min(28.0, group / 4))
    parts = [f'<svg role="img" aria-label="Delivery, bounce and complaint rates per send" viewBox="0 0 {width} '
             f'{height + top + 48}" width="100%" style="max-width:{width}px;font-family:inherit">']
    for share in (0, 0.25, 0.5, 0.75, 1):
        y, stroke = top + height * (1 - share), "#9ca3af" if share == 0 else "#e5e7eb"
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width}" y2="{y:.1f}" stroke="{stroke}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#6b7280">'
                     f"{share:.0%}</text>")
    for index, (label, figures) in enumerate(rows):
        sent = max(1, figures["sent"])
        values = {"delivered": figures["delivered"] / sent, "bounced": figures["bounced_hard"] / sent,
                  "complained": figures["complained"] / sent}
        x0 = left + index * group + group / 2 - 1.5 * bar
        for offset, (key, value) in enumerate(values.items()):
            h = max(1.0, min(1.0, value) * height)
            parts.append(f'<rect x="{x0 + offset * bar:.1f}" y="{top + height - h:.1f}" width="{bar - 2:.1f}" '
                         f'height="{h:.1f}" rx="2" fill="{COLORS[key]}"><title>{escape(label)}: {key} {value:.1%}'
                         "</title></rect>")
        parts.append(f'<text x="{x0 + 1.5 * bar:.1f}" y="{top + height + 16}" font-size="11" text-anchor="middle" '
                     f'fill="#374151">{escape(label)}</text>')
    for offset, (key, color) in enumerate(COLORS.items()):
        x = left + offset * 120
        parts.append(f'<rect x="{x}" y="{top + height + 32}" width="11" height="11" rx="2" fill="{color}"/>'
                     f'<text x="{x + 16}" y="{top + height + 42}" font-size="12" fill="#374151">{key}</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline_chart(hours: list[dict[str, int]]) -> str:
    """Human opens and clicks per hour over a send's first 72 hours, as two rows of bars."""
    peak = max([1] + [h["opens"] for h in hours] + [h["clicks"] for h in hours])
    width, height, left, top = 760, 120, 44, 10
    step = (width - left) / max(len(hours), 1)
    parts = [f'<svg role="img" aria-label="Opens and clicks by people, per hour over the first 72 hours" '
             f'viewBox="0 0 {width} {height + top + 40}" width="100%" style="max-width:{width}px;font-family:inherit">',
             f'<line x1="{left}" y1="{top + height}" x2="{width}" y2="{top + height}" stroke="#9ca3af"/>',
             f'<text x="{left - 6}" y="{top + 8}" font-size="11" text-anchor="end" fill="#6b7280">{peak}</text>']
    for hour in hours:
        x = left + hour["hour"] * step
        for offset, (key, color) in enumerate((("opens", "#1d4ed8"), ("clicks", "#047857"))):
            h = hour[key] / peak * height
            if hour[key]:
                parts.append(f'<rect x="{x + offset * step / 2:.1f}" y="{top + height - h:.1f}" '
                             f'width="{max(1.0, step / 2 - 1):.1f}" height="{h:.1f}" fill="{color}">'
                             f'<title>hour {hour["hour"]}: {hour[key]} {key}</title></rect>')
        if hour["hour"] % 12 == 0:
            parts.append(f'<text x="{x:.1f}" y="{top + height + 14}" font-size="11" fill="#374151">'
                         f'{hour["hour"]} h</text>')
    for offset, (key, color) in enumerate((("opens by people", "#1d4ed8"), ("clicks by people", "#047857"))):
        x = left + offset * 160
        parts.append(f'<rect x="{x}" y="{top + height + 24}" width="11" height="11" rx="2" fill="{color}"/>'
                     f'<text x="{x + 16}" y="{top + height + 34}" font-size="12" fill="#374151">{escape(key)}</text>')
    parts.append("</svg>")
    return "".join(parts)
