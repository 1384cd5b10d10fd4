"""A list's own settings: creating one, its senders, sign-up and embedding rules, language, brand and tracking.

Split from the consent rules in `subscribers.service` (which this module uses for address checks and its error
type): these functions shape a list, the service's functions move people on and off it. Like the service, nothing
here commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.brand import BrandError, normalise_accent
from mailer.i18n import DEFAULT_LANGUAGE, catalog_for, supported_languages
from mailer.message import clean_header
from subscribers import queries
from subscribers.models import MailingList
from subscribers.service import InvalidEmail, ServiceError, normalise_email


def create_list(session: Session, slug: str, name: str, *, double_opt_in: bool = True, from_name: str | None = None,
                from_email: str | None = None, reply_to: str | None = None, welcome: bool = False,
                description: str = "", allow_international: bool = False,
                look: ListLook | None = None) -> MailingList:
    slug = slug.strip().lower()
    if not slug or not slug.replace("-", "").replace("_", "").isalnum():
        raise ServiceError("A list slug uses letters, digits, '-' and '_' only.")
    if session.scalar(select(MailingList.id).where(MailingList.slug == slug)) is not None:
        raise ServiceError(f"A list called '{slug}' already exists.")
    for address in (from_email, reply_to):
        if address:
            normalise_email(address, check_deliverability=False)
    mailing_list = MailingList(slug=slug, name=name.strip() or slug, double_opt_in=double_opt_in,
                               from_name=from_name, from_email=from_email, reply_to=reply_to,
                               welcome_enabled=welcome, description=description,
                               allow_international=allow_international, language=DEFAULT_LANGUAGE)
    apply_look(mailing_list, look or ListLook())
    session.add(mailing_list)
    session.flush()
    return mailing_list


def normalise_origin(raw: str) -> str:
    """`https://example.com` (scheme, host, optional port; no path): what a browser sends in its Origin header."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
        raise ServiceError(f"'{raw.strip()}' is not an origin like https://www.example.com (no path).")
    return f"{parts.scheme}://{parts.netloc}".lower()


def configure_signup(mailing_list: MailingList, *, embeddable: bool | None = None,
                     origins: Iterable[str] | None = None, thank_you_url: str | None = None,
                     archive_private: bool | None = None) -> None:
    """Embedding and archive settings of a list; None leaves a setting as it is ("" clears the thank-you URL)."""
    if origins is not None:
        mailing_list.embed_origins = "\n".join(dict.fromkeys(normalise_origin(o) for o in origins if o.strip()))
    if thank_you_url is not None:
        url = thank_you_url.strip()
        parts = urlsplit(url)
        if url and (parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 500):
            raise ServiceError("The thank-you URL must be a full http(s) address of at most 500 characters.")
        mailing_list.thank_you_url = url or None
    if embeddable is not None:
        mailing_list.embeddable = embeddable
    if archive_private is not None:
        mailing_list.archive_private = archive_private
@dataclass(frozen=True)
class ListLook:
    """A list's language and brand as staff set them. None leaves a field as it is; "" clears it (back to the
    service-wide default)."""

    language: str | None = None
    brand_name: str | None = None
    logo_url: str | None = None
    accent_colour: str | None = None
    postal_address: str | None = None


LOGO_MAX_BYTES = 256 * 1024
_IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
                (b"GIF89a", "image/gif"))


def apply_look(mailing_list: MailingList, look: ListLook) -> None:
    """Validate every field first, then set them: a refused field changes nothing."""
    values: dict[str, str | None] = {}
    if look.language is not None:
        language = look.language.strip() or DEFAULT_LANGUAGE
        if catalog_for(language) is None and language.lower().split("-")[0] != DEFAULT_LANGUAGE:
            raise ServiceError(f"No translation for language '{language}'. Available: "
                               f"{', '.join(supported_languages())} (docs/languages.md adds one).")
        values["language"] = language
    if look.brand_name is not None:
        values["brand_name"] = look.brand_name.strip()[:200] or None
    if look.logo_url is not None:
        url = look.logo_url.strip()
        parts = urlsplit(url)
        if url and (parts.scheme != "https" or not parts.hostname or any(c in url for c in "\"'<> ")):
            raise ServiceError(f"A logo URL must be an absolute https:// address, not {url!r}.")
        values["logo_url"] = url or None
    if look.accent_colour is not None:
        try:
            values["accent_colour"] = normalise_accent(look.accent_colour) if look.accent_colour.strip() else None
        except BrandError as exc:
            raise ServiceError(str(exc)) from exc
    if look.postal_address is not None:
        values["postal_address"] = clean_header(look.postal_address)[:500] or None
    for name, value in values.items():
        setattr(mailing_list, name, value)


def set_logo_image(mailing_list: MailingList, data: bytes | None) -> None:
    """An uploaded logo (PNG, JPEG or GIF, at most 256 KB), served by the app; None removes it. SVG is refused:
    it can carry script, and many mail clients do not show it."""
    if data is None:
        mailing_list.logo_image = mailing_list.logo_type = mailing_list.logo_digest = None
        return
    if len(data) > LOGO_MAX_BYTES:
        raise ServiceError(f"The logo is {len(data) // 1024} KB; the limit is {LOGO_MAX_BYTES // 1024} KB.")
    kind = next((mime for magic, mime in _IMAGE_TYPES if data.startswith(magic)), None)
    if kind is None:
        raise ServiceError("A logo must be a PNG, JPEG or GIF image.")
    mailing_list.logo_image, mailing_list.logo_type = data, kind
    mailing_list.logo_digest = hashlib.sha256(data).hexdigest()[:16]


MAX_URL_SLUG = 200  # longer than any slug we store


def plausible_slug(slug: str) -> bool:
    """A slug from a URL that could name something: not absurdly long, and no NUL (PostgreSQL refuses it in text,
    which would be a 500 where a 404 is the answer)."""
    return len(slug) <= MAX_URL_SLUG and "\x00" not in slug


def get_list(session: Session, slug: str) -> MailingList:
    if not plausible_slug(slug):
        raise ServiceError("No such list.")
    found = session.scalar(select(MailingList).where(MailingList.slug == slug.strip().lower()))
    if found is None:
        raise ServiceError(f"No list called '{slug}'.")
    return found


def update_list(mailing_list: MailingList, *, name: str, from_name: str, from_email: str, reply_to: str,
                double_opt_in: bool, welcome_enabled: bool) -> MailingList:
    """Both addresses are checked before anything changes, so a refused edit leaves the list as it was.

    An empty name keeps the old one; an empty sender name or address falls back to the service-wide default.
    """
    addresses: dict[str, str | None] = {}
    for field_name, value in (("from_email", from_email.strip()), ("reply_to", reply_to.strip())):
        try:
            addresses[field_name] = normalise_email(value, check_deliverability=False) if value else None
        except InvalidEmail as exc:
            raise InvalidEmail(f"{field_name}: {exc}") from exc
    mailing_list.name = (name or mailing_list.name)[:200]
    mailing_list.from_name = from_name[:200] or None
    mailing_list.from_email = addresses["from_email"]
    mailing_list.reply_to = addresses["reply_to"]
    mailing_list.double_opt_in = double_opt_in
    mailing_list.welcome_enabled = welcome_enabled
    return mailing_list


def list_counts(session: Session, list_id: int) -> dict[str, int]:
    return queries.counts_by_list(session, [list_id])[list_id]


def set_list_tracking(session: Session, mailing_list: MailingList, *, clicks: bool | None = None,
                      opens: bool | None = None) -> MailingList:
    """Open and click tracking of a list; applies to sends planned from now on (a send freezes its choice)."""
    if clicks is not None:
        mailing_list.track_clicks = clicks
    if opens is not None:
        mailing_list.track_opens = opens
    return mailing_list
