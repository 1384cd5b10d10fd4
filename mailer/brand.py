"""A list's look: name, logo, accent colour and footer address, and the contrast rules an accent must pass.

The accent paints links and buttons. In light mode it is link text on the white card and the background of white
button text: both need 4.5:1 against white, which is what `accent_problem` checks. In dark mode links are drawn in a
tint of the accent lightened until it reaches 4.5:1 on the dark card (`dark_tint`), and buttons keep the accent
under white text (the same ratio as in light mode), so an accepted accent reads in both modes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

DEFAULT_ACCENT = "#1d4ed8"
LIGHT_CARD = "#ffffff"
DARK_CARD = "#1f2937"
MIN_RATIO = 4.5
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


class BrandError(ValueError):
    """A brand setting that would make the email or the pages unreadable or unsafe."""


def parse_colour(value: str) -> tuple[int, int, int]:
    found = _HEX.fullmatch(value.strip())
    if found is None:
        raise BrandError(f"accent colour {value!r} is not a hex colour such as #1d4ed8")
    digits = found.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def luminance(rgb: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        v = value / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(parse_colour(a)), luminance(parse_colour(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def normalise_accent(value: str) -> str:
    """The accent as #rrggbb, or BrandError when text in it (or on it) would read below 4.5:1."""
    colour = hex_colour(parse_colour(value))
    ratio = contrast(colour, LIGHT_CARD)
    if ratio < MIN_RATIO:
        raise BrandError(f"accent colour {colour} gives {ratio:.2f}:1 against white (links in light mode, white "
                         f"button text in both modes); it needs at least {MIN_RATIO}:1. Choose a darker colour.")
    if contrast(dark_tint(colour), DARK_CARD) < MIN_RATIO:  # cannot happen (white is reachable), kept as a guard
        raise BrandError(f"accent colour {colour} cannot be lightened to {MIN_RATIO}:1 for dark mode")
    return colour


@lru_cache(maxsize=256)
def dark_tint(colour: str, background: str = DARK_CARD) -> str:
    """The accent mixed with white in 5% steps until it reads at 4.5:1 on the dark card: the dark-mode link colour.
    Kept per colour: every page and email of a list asks for it, and the search costs ~0.1 ms."""
    rgb = parse_colour(colour)
    for step in range(21):
        mix = step / 20
        tinted = hex_colour(tuple(c + (255 - c) * mix for c in rgb))  # type: ignore[arg-type]
        if contrast(tinted, background) >= MIN_RATIO:
            return tinted
    return "#ffffff"


@dataclass(frozen=True)
class Brand:
    """What the email and the list's pages show. Empty fields fall back to the service-wide settings."""

    name: str = ""
    logo_url: str = ""
    accent: str = DEFAULT_ACCENT
    postal_address: str = ""

    @property
    def accent_dark(self) -> str:
        return dark_tint(self.accent)


@dataclass(frozen=True)
class Audience:
    """What the list an email goes to changes in it: the list's name, its language (an issue's `lang` front matter
    overrides it) and its brand. The default is the service-wide identity, in English."""

    list_name: str = ""
    lang: str = "en"
    brand: Brand = field(default_factory=Brand)
