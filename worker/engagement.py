"""Opens and clicks that can be trusted: recorded raw, told apart as a person or a machine, then counted.

Security gateways (SafeLinks, Mimecast, Proofpoint, Barracuda) fetch every link of a message seconds after delivery,
and Apple Mail Privacy Protection loads every image, so raw counts overstate engagement by a fifth or more. A hit
is therefore classified only once the seconds around it are known (SETTLE_S), from these signals, first match wins:

- the message's trap link (no person can see it) was fetched near this hit -> every hit of that message near it;
- a HEAD request (a person's browser sends GET);
- a user agent or network listed in worker/data/machines.json (scanners, Apple's image proxy);
- within EARLY_S of delivery (no person reads that fast; gateways and prefetchers do);
- BURST_LINKS or more distinct links of one message within BURST_S (people click one link, maybe two).

Counters then move onto the delivery, the link and the subscriber (last human open/click, for segments); they are
kept for ever, the raw hits only for `engagement_raw_days`. SendGrid's own open and click events are merged in as
hits of source "sendgrid", unless the send tracked that kind itself (then they would count the same person twice).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from mailer.db import as_utc, id_in, insert_many, rowcount, table_of, utcnow
from mailer.tracking import TRAP_POSITION, add_tracking
from subscribers.models import MailingList, Subscriber
from worker import batches
from worker.models import Delivery, EngagementHit, Send, SendLink

SETTLE_S = 20
EARLY_S = 10
BURST_S = 5
BURST_LINKS = 3
TRAP_WINDOW_S = 30
MACHINES_FILE = Path(__file__).with_name("data") / "machines.json"


class EngagementKind(StrEnum):
    OPEN = "open"
    CLICK = "click"


class Verdict(StrEnum):
    HUMAN = "human"
    MACHINE = "machine"


@dataclass(frozen=True)
class Hit:
    """One request as the redirect or the pixel saw it (or one provider event)."""

    send_id: int
    delivery_id: int
    kind: EngagementKind
    position: int | None
    source: str
    method: str
    at: datetime
    network: str = ""
    user_agent: str = ""
    hint: str = ""  # a provider's own verdict ("machine open"), applied as a machine reason


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255 without leading zeros, as ipaddress wants
_DOTTED_QUAD = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET})\.{_OCTET}")


def truncate_address(address: str | None) -> str:
    """The client's network, not the client: /24 for IPv4, /48 for IPv6 (enough for a scanner's network).

    Called for every click and open, so a dotted quad is cut as text (what `ipaddress` would give, at a tenth of
    its cost); anything else goes through `ipaddress`, which also refuses what is not an address."""
    if not address:
        return ""
    quad = _DOTTED_QUAD.fullmatch(address)
    if quad is not None:
        return f"{quad[1]}.0/24"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


# Freezing a send's links ---------------------------------------------------------------------------------------

def freeze_links(session: Session, send: Send, mailing_list: MailingList, base_url: str) -> None:
    """At plan time: rewrite the frozen message for the list's tracking settings and number its links."""
    if not (mailing_list.track_clicks or mailing_list.track_opens) or send.html is None or send.text is None:
        return
    tracked = add_tracking(send.html, send.text, base_url, clicks=mailing_list.track_clicks,
                           opens=mailing_list.track_opens)
    send.html, send.text = tracked.html, tracked.text
    send.track_clicks, send.track_opens = mailing_list.track_clicks, mailing_list.track_opens
    session.add_all(SendLink(send_id=send.id, position=n, url=url, human=0, machine=0, unique_human=0)
                    for n, url in enumerate(tracked.links, start=1))


def send_links(session: Session, send_id: int) -> dict[int, str]:
    """{position: URL} of a send's tracked links: the only places its redirect may lead."""
    return dict(session.execute(select(SendLink.position, SendLink.url).where(SendLink.send_id == send_id)).all())


# Recording -----------------------------------------------------------------------------------------------------

_HIT_COLUMNS = ("send_id", "delivery_id", "kind", "position", "source", "method", "at", "network", "user_agent",
                "reason")


def _hit_row(hit: Hit) -> tuple[object, ...]:
    """A hit as a row. The user agent is whatever a client sent: PostgreSQL refuses a NUL in text, and one such
    row would fail its whole batch at every retry, so NULs are dropped here."""
    return (hit.send_id, hit.delivery_id, hit.kind.value, hit.position, hit.source, hit.method[:8], hit.at,
            hit.network[:64], hit.user_agent.replace("\x00", "")[:300], hit.hint[:200])


def store_hits(session: Session, hits: Sequence[Hit]) -> int:
    """Write raw hits in one statement (the redirect's writer thread calls this with a batch).

    On PostgreSQL the rows are streamed with COPY (mailer.db.insert_many): the writer shares its process (and the
    interpreter lock) with the redirect, and a parameterised INSERT spends ~20 us of Python a row where COPY spends
    ~3 us, so a flush of 4,000 hits holds the lock for ~11 ms instead of ~80 ms, which was the slowest 1% of clicks
    (bench/tracking.py).
    """
    insert_many(session, table_of(EngagementHit), _HIT_COLUMNS, [_hit_row(hit) for hit in hits])
    return len(hits)


def from_provider(session: Session, delivery: Delivery, kind: EngagementKind, at: datetime,
                  payload: dict[str, Any], machine_hint: bool) -> bool:
    """A SendGrid open or click as a hit, unless this send tracked that kind itself. Returns whether it was kept."""
    send = session.get(Send, delivery.send_id)
    if send is None or (send.track_opens if kind is EngagementKind.OPEN else send.track_clicks):
        return False  # our own pixel or redirect saw the same person: counting both would double them
    position = None
    if kind is EngagementKind.CLICK:
        url = str(payload.get("url") or "")
        position = session.scalar(select(SendLink.position).where(SendLink.send_id == send.id, SendLink.url == url))
    store_hits(session, [Hit(send.id, delivery.id, kind, position, "sendgrid", "GET", at,
                             truncate_address(str(payload.get("ip") or "")), str(payload.get("useragent") or ""),
                             "provider reported a machine open" if machine_hint else "")])
    return True


# Classifying ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MachineSignatures:
    user_agents: tuple[tuple[str, str, frozenset[str]], ...]  # (lower-case substring, label, kinds)
    exact_agents: tuple[tuple[str, str, frozenset[str]], ...]
    networks: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, frozenset[str]], ...]

    def match(self, kind: str, user_agent: str, network: str) -> str | None:
        agent = user_agent.lower()
        for exact, label, kinds in self.exact_agents:
            if kind in kinds and agent == exact:
                return label
        for needle, label, kinds in self.user_agents:
            if kind in kinds and needle in agent:
                return label
        if network:
            try:
                net = ipaddress.ip_network(network, strict=False)
            except ValueError:
                return None
            for known, label, kinds in self.networks:
                if kind in kinds and net.version == known.version and net.subnet_of(known):  # type: ignore[arg-type]
                    return label
        return None


@lru_cache(maxsize=2)
def machine_signatures(path: Path = MACHINES_FILE) -> MachineSignatures:
    data = json.loads(path.read_text(encoding="utf-8"))

    def kinds(entry: dict[str, Any]) -> frozenset[str]:
        return frozenset(entry.get("kinds") or ("open", "click"))

    return MachineSignatures(
        tuple((e["contains"].lower(), e["label"], kinds(e)) for e in data["user_agents"] if "contains" in e),
        tuple((e["equals"].lower(), e["label"], kinds(e)) for e in data["user_agents"] if "equals" in e),
        tuple((ipaddress.ip_network(e["cidr"]), e["label"], kinds(e)) for e in data["networks"]))



def judge(hit: EngagementHit, neighbours: Sequence[EngagementHit], delivered_at: datetime | None,
          signatures: MachineSignatures) -> tuple[Verdict, str]:
    """The verdict on one hit, given every hit of the same message (neighbours, itself included)."""
    at = as_utc(hit.at)
    if hit.reason:
        return Verdict.MACHINE, hit.reason
    if hit.kind == EngagementKind.CLICK and hit.position == TRAP_POSITION:
        return Verdict.MACHINE, "fetched the hidden link"
    if any(n.kind == EngagementKind.CLICK and n.position == TRAP_POSITION
           and abs((as_utc(n.at) - at).total_seconds()) <= TRAP_WINDOW_S for n in neighbours):
        return Verdict.MACHINE, "the message's hidden link was fetched at the same time"
    if hit.method.upper() == "HEAD":
        return Verdict.MACHINE, "HEAD request"
    label = signatures.match(hit.kind, hit.user_agent, hit.network)
    if label:
        return Verdict.MACHINE, label
    if delivered_at is not None and (at - as_utc(delivered_at)).total_seconds() < EARLY_S:
        return Verdict.MACHINE, f"within {EARLY_S} s of delivery"
    if hit.kind == EngagementKind.CLICK:
        near = {n.position for n in neighbours if n.kind == EngagementKind.CLICK
                and abs((as_utc(n.at) - at).total_seconds()) <= BURST_S}
        if len(near) >= BURST_LINKS:
            return Verdict.MACHINE, f"{len(near)} links of one message within {BURST_S} s"
    return Verdict.HUMAN, ""


def classify_pending(session: Session, now: datetime | None = None, limit: int = 20000) -> int:
    """Classify hits older than SETTLE_S and count them. Returns how many were classified."""
    now = now or utcnow()
    pending = session.scalars(select(EngagementHit).where(EngagementHit.verdict.is_(None),
                                                          EngagementHit.at <= now - timedelta(seconds=SETTLE_S))
                              .order_by(EngagementHit.at, EngagementHit.id).limit(limit)).all()
    if not pending:
        return 0
    delivery_ids = sorted({h.delivery_id for h in pending})
    dialect = session.get_bind().dialect.name
    earliest = min(h.at for h in pending) - timedelta(seconds=TRAP_WINDOW_S)
    neighbours: dict[int, list[EngagementHit]] = defaultdict(list)
    for hit in session.scalars(select(EngagementHit).where(id_in(EngagementHit.delivery_id, delivery_ids, dialect),
                                                           EngagementHit.at >= earliest)):
        neighbours[hit.delivery_id].append(hit)
    # A planned row's send time is its batch's (worker/batches.py): read as readers mean it, not off the row.
    rows = session.execute(select(Delivery, batches.sent_at_of()).where(id_in(Delivery.id, delivery_ids, dialect)))
    deliveries: dict[int, tuple[Delivery, datetime | None]] = {row.id: (row, at) for row, at in rows}
    signatures = machine_signatures()
    for hit in pending:
        delivery, sent_at = deliveries.get(hit.delivery_id, (None, None))
        delivered_at = (delivery.delivered_at or sent_at) if delivery else None
        hit.verdict, hit.reason = judge(hit, neighbours[hit.delivery_id], delivered_at, signatures)
        if delivery is not None:
            _count(session, hit, delivery)
    return len(pending)


def _count(session: Session, hit: EngagementHit, delivery: Delivery) -> None:
    human = hit.verdict == Verdict.HUMAN
    if hit.kind == EngagementKind.OPEN:
        if human:
            delivery.opens += 1
            _touch(session, delivery.subscriber_id, hit.at, opened=True)
        else:
            delivery.machine_opens += 1
        return
    if human:
        delivery.clicks += 1
        _touch(session, delivery.subscriber_id, hit.at, opened=False)
    else:
        delivery.machine_clicks += 1
    if hit.position is None or hit.position == TRAP_POSITION:
        return
    first = human and not session.scalar(select(func.count()).where(
        EngagementHit.delivery_id == hit.delivery_id, EngagementHit.position == hit.position,
        EngagementHit.verdict == Verdict.HUMAN.value, EngagementHit.id != hit.id))
    session.execute(update(SendLink).where(SendLink.send_id == hit.send_id, SendLink.position == hit.position)
                    .values(human=SendLink.human + (1 if human else 0), machine=SendLink.machine + (0 if human else 1),
                            unique_human=SendLink.unique_human + (1 if first else 0)))


def _touch(session: Session, subscriber_id: int, at: datetime, *, opened: bool) -> None:
    column = Subscriber.last_human_open_at if opened else Subscriber.last_human_click_at
    session.execute(update(Subscriber).where(Subscriber.id == subscriber_id,
                                             (column.is_(None)) | (column < at)).values({column: at}))


def purge_raw(session: Session, keep_days: int, now: datetime | None = None) -> int:
    """Drop classified raw hits older than the retention; their counts stay on deliveries, links and subscribers."""
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    return rowcount(session.execute(delete(EngagementHit).where(EngagementHit.at < cutoff,
                                                                 EngagementHit.verdict.is_not(None))))
