"""The public web archive of sent issues, and its RSS feeds. Only issues that actually went out to a list whose
archive is public are shown (worker/archive.py decides which).

Languages (docs/languages.md):
- A list's pages (`/lists/{slug}/archive`, its feed `/lists/{slug}/archive.rss` and its issues
  `/lists/{slug}/archive/{issue}`) speak the list's language and wear its brand; an issue page speaks the language
  the issue was sent in (its own `lang`, else the list's), frozen on the send with the copy it shows.
- The global index `/archive` and `/archive.rss` belong to no list: the service's language (`NEWSLETTER_LANGUAGE`),
  one section per public list, each linking to the list's own pages. Not negotiated by Accept-Language: one URL,
  one page, cacheable by anyone.
- `/archive/{issue}` (the address in older emails) shows the copy of the issue's first public send.
A private list's pages answer exactly as a missing list's (no enumeration).
"""

from __future__ import annotations

import re
from email.utils import format_datetime
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from mailer.db import new_session
from mailer.i18n import long_date, translations
from mailer.settings import get_settings
from newsletter.web.deps import db_session
from newsletter.web.pagecache import TTLCache
from newsletter.web.templating import gettext_for, page_language, render_page
from subscribers.models import MailingList
from worker import archive
from worker.archive import Copy, Entry

router = APIRouter(include_in_schema=False)
SECTION_SIZE = 5  # issues per list on the global index; the list's own index has them all
FEED_SIZE = 50
_BODY = re.compile(r"<body\b[^>]*>", re.I)


def _not_found(request: Request) -> HTMLResponse:
    """The one answer for a missing list, a private one, and an issue that is not public: nothing to tell apart."""
    _ = gettext_for(None)
    return render_page(request, "public/message.html", {
        "heading": _("Not found"), "paragraphs": [_("No published issue has this address.")],
        "action_url": "/archive", "action_label": _("Past issues")}, status_code=404)


def _list_name(mailing_list: MailingList) -> str:
    return mailing_list.audience(get_settings()).brand.name or mailing_list.name


def list_archive_url(list_slug: str) -> str:
    return f"/lists/{list_slug}/archive"


def issue_url(entry: Entry) -> str:
    return f"{list_archive_url(entry.list_slug)}/{entry.issue_slug}"


# The global index ----------------------------------------------------------------------------------------------

Section = tuple[MailingList, str, list[Entry]]
_INDEX: TTLCache[list[Section]] = TTLCache()


def _index_sections() -> list[Section]:
    with new_session() as session:  # closed, not committed: it only reads
        sections = [(mailing_list, _list_name(mailing_list),
                     archive.published_to(session, mailing_list, SECTION_SIZE))
                    for mailing_list in archive.lists_with_issues(session)]
    return [section for section in sections if section[2]]


@router.get("/archive", response_class=HTMLResponse)
async def archive_index(request: Request) -> HTMLResponse:
    """Async, with its sections from the page cache (newsletter/web/pagecache.py): rendered per request, queried
    once per process every few seconds."""
    return render_page(request, "archive/index.html", {
        "sections": await _INDEX.aget("index", _index_sections), "long_date": long_date, "issue_url": issue_url,
        "list_archive_url": list_archive_url, "feed_url": "/archive.rss"})


@router.get("/archive.rss")
def feed(session: Session = db_session) -> Response:
    settings = get_settings()
    _ = gettext_for(None)
    return _rss(title=settings.from_name, link="/archive", language=page_language(None),
                description=_("Past issues of %(name)s") % {"name": settings.from_name},
                entries=archive.published(session, FEED_SIZE), global_links=True)


@router.get("/archive/{slug}", response_class=HTMLResponse)
def archived_issue(request: Request, slug: str, session: Session = db_session) -> HTMLResponse:
    copy = archive.archived_copy(session, slug)
    return _not_found(request) if copy is None else _issue_page(copy)


# A list's archive ----------------------------------------------------------------------------------------------

@router.get("/lists/{slug}/archive", response_class=HTMLResponse)
def list_archive(request: Request, slug: str, session: Session = db_session) -> HTMLResponse:
    mailing_list = archive.public_list(session, slug)
    if mailing_list is None:
        return _not_found(request)
    return render_page(request, "archive/list.html", {
        "mailing_list": mailing_list, "list_name": _list_name(mailing_list),
        "issues": archive.published_to(session, mailing_list), "long_date": long_date, "issue_url": issue_url,
        "feed_url": f"{list_archive_url(mailing_list.slug)}.rss"}, mailing_list=mailing_list)


@router.get("/lists/{slug}/archive.rss")
def list_feed(request: Request, slug: str, session: Session = db_session) -> Response:
    mailing_list = archive.public_list(session, slug)
    if mailing_list is None:
        return _not_found(request)
    _ = gettext_for(mailing_list)
    name = _list_name(mailing_list)
    return _rss(title=name, link=list_archive_url(mailing_list.slug), language=page_language(mailing_list),
                description=_("Past issues of %(name)s") % {"name": name},
                entries=archive.published_to(session, mailing_list, FEED_SIZE), global_links=False)


@router.get("/lists/{slug}/archive/{issue_slug}", response_class=HTMLResponse)
def list_issue(request: Request, slug: str, issue_slug: str, session: Session = db_session) -> HTMLResponse:
    mailing_list = archive.public_list(session, slug)
    copy = archive.archived_copy(session, issue_slug, mailing_list) if mailing_list is not None else None
    return _not_found(request) if copy is None else _issue_page(copy)


# Rendering -----------------------------------------------------------------------------------------------------

def _issue_page(copy: Copy) -> HTMLResponse:
    """The archived copy (the email's own HTML, without its personal parts) with a line of page chrome on top, in
    the language of the copy: back to the list's archive, and its sign-up page."""
    _ = translations(copy.language).gettext
    mailing_list = copy.mailing_list
    name = _list_name(mailing_list)
    archive_url = list_archive_url(mailing_list.slug)
    back = _("Previous issues of %(name)s") % {"name": name}
    subscribe = _("Subscribe")
    link_style = 'style="color:#52606d"'
    nav = ('<div class="masthead dm-text" style="max-width:600px;margin:0 auto;padding:14px 28px 0;'
           "font:13px/1.6 -apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
           'color:#52606d;text-align:center"><nav>'
           f'<a href="{archive_url}" {link_style}>{escape(back)}</a> &middot; '
           f'<a href="/lists/{mailing_list.slug}/subscribe" {link_style}>{escape(subscribe)}</a></nav></div>')
    feed_link = f'<link rel="alternate" type="application/rss+xml" title="{escape(name)}" href="{archive_url}.rss">'
    html = copy.html.replace("</head>", feed_link + "</head>", 1)
    found = _BODY.search(html)
    html = html[:found.end()] + nav + html[found.end():] if found else nav + html
    return HTMLResponse(html)


def _rss(*, title: str, link: str, language: str, description: str, entries: list[Entry],
         global_links: bool) -> Response:
    base = get_settings().base_url.rstrip("/")
    items = []
    for entry in entries:
        url = f"{base}/archive/{entry.issue_slug}" if global_links else f"{base}{issue_url(entry)}"
        when = f"<pubDate>{format_datetime(entry.sent_at)}</pubDate>" if entry.sent_at else ""
        items.append(f"<item><title>{escape(entry.subject)}</title><link>{escape(url)}</link>"
                     f'<guid isPermaLink="true">{escape(url)}</guid>{when}'
                     f"<description>{escape(entry.preheader)}</description></item>")
    body = (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{escape(title)}</title>'
            f"<link>{escape(base + link)}</link><description>{escape(description)}</description>"
            f"<language>{escape(language)}</language>{''.join(items)}</channel></rss>")
    return Response(body, media_type="application/rss+xml")
