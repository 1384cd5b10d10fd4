"""Sends, the per-recipient delivery ledger and the provider events that come back."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from mailer.db import Base, BigId, enum_column, utcnow
from mailer.events import EventKind


class SendStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"
    FAILED = "failed"


class SendKind(StrEnum):
    """A stored string (no database enum): a campaign goes draft -> running -> done; a welcome step's send stays
    running for as long as its step exists, taking new recipients as their delay passes (worker/welcome.py)."""

    CAMPAIGN = "campaign"
    WELCOME = "welcome"


class DeliveryStatus(StrEnum):
    """A row's own status. `planned` rows (a campaign's first pass) say nothing themselves: their batch's row
    (`SendBatch`) is their status, so a batch is claimed and marked in one row write (worker/batches.py). Every
    other status is the row's own: the exceptions of a batch (skipped, failed, retried, or sent with a message id
    of its own) and rows that go through the per-row path (retries, released rows, the welcome series)."""

    PLANNED = "planned"
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class Send(Base):
    """One issue going to one list. The rendered parts are frozen here at plan time so later edits change nothing."""

    __tablename__ = "sends"
    __table_args__ = (Index("ix_sends_status_scheduled", "status", "scheduled_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="RESTRICT"))
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="RESTRICT"))
    status: Mapped[SendStatus] = mapped_column(enum_column(SendStatus, "send_status"), default=SendStatus.DRAFT)
    transport: Mapped[str] = mapped_column(String(32))
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    allow_resend: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Frozen at plan time.
    subject: Mapped[str | None] = mapped_column(String(998))
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(35))  # of the frozen parts: the issue's, else the list's
    web_html: Mapped[str | None] = mapped_column(Text)  # the archive's copy: no personal parts, no tracking
    # The merge-tag slots of the frozen parts (mailer/merge_tags.py to_json); None: no tags, no fields to read.
    merge_tags: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    planned: Mapped[int] = mapped_column(BigId, default=0)
    # Whether this send's links and pixel were rewritten for tracking (decided at plan time from the list).
    track_clicks: Mapped[bool] = mapped_column(Boolean, default=False)
    track_opens: Mapped[bool] = mapped_column(Boolean, default=False)
    # A segment of the list; its expression is frozen here when the send is created, so editing the segment
    # later cannot change who a running or resumed send goes to.
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id", ondelete="SET NULL"))
    segment_expression: Mapped[str | None] = mapped_column(Text)
    # A compacted send (worker/retention.py) has no delivery rows left; its counters and report live here.
    figures: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    compacted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A welcome step's send is never "done", never in the archive's list nor in the recent sends (SendKind).
    kind: Mapped[str] = mapped_column(String(16), default=SendKind.CAMPAIGN.value, server_default="campaign")


class WelcomeStep(Base):
    """One email of a list's welcome series: its send (kind 'welcome', issue frozen when the step was added)
    takes every subscriber confirmed at or after `eligible_from` once `delay_seconds` have passed since their
    confirmation. The ledger's unique (send, subscriber) row makes it once per subscriber, re-confirmations
    included. Steps are numbered by delay (then age) when shown, so the series reads in the order it is mailed.
    """

    __tablename__ = "welcome_steps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), index=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"), unique=True)
    delay_seconds: Mapped[int] = mapped_column(Integer)
    eligible_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Confirmations up to here were admitted (less a margin for late commits): each run looks at a short window.
    covered_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


SENDING_ONLY = "status = 'sending'"
CLAIMED_ONLY = "state = 'claimed'"


class BatchState(StrEnum):
    """Where a batch of `planned` rows is: what each of them is (open: pending, claimed: sending, done: sent)."""

    OPEN = "open"
    CLAIMED = "claimed"
    DONE = "done"


class SendBatch(Base):
    """One batch of a send's first pass: the `planned` delivery rows with ids in [first_id, last_id].

    Claimed, renewed, released and marked as this one row, so a batch that goes out costs O(1) row writes however
    many it holds; a recipient's own row is written only when it is an exception (worker/batches.py). Ranges of a
    send never overlap, and every planned row lies in one, so a row's batch is the one with the greatest
    first_id not above its id.
    """

    __tablename__ = "send_batches"
    __table_args__ = (
        UniqueConstraint("send_id", "first_id"),
        Index("ix_send_batches_claimed", "claimed_at", postgresql_where=text(CLAIMED_ONLY),
              sqlite_where=text(CLAIMED_ONLY)),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"))
    first_id: Mapped[int] = mapped_column(BigId)
    last_id: Mapped[int] = mapped_column(BigId)
    state: Mapped[BatchState] = mapped_column(enum_column(BatchState, "batch_state"), default=BatchState.OPEN)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the lease, while claimed
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))  # one id for the whole call (SendGrid)
    # The planned rows it holds (pending while open, in flight while claimed, sent once done), kept as rows leave
    # it, so a send's counters add up its batch rows instead of counting its rows.
    size: Mapped[int] = mapped_column(Integer, default=0)


class Delivery(Base):
    """The ledger: one row per recipient per send. Its status is the truth about who got what."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # Few indexes, on purpose: an index entry costs every UPDATE that moves a row, and the ledger moves each
        # row twice (migration 0016). Unique per plan, and "this subscriber's deliveries" by its prefix.
        UniqueConstraint("subscriber_id", "send_id"),
        Index("ix_deliveries_send_status_id", "send_id", "status", "id"),
        # Partial: only in-flight rows are looked up by claim time (the lease sweeper).
        Index("ix_deliveries_sending_claimed", "claimed_at", postgresql_where=text(SENDING_ONLY),
              sqlite_where=text(SENDING_ONLY)),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Plain ids, no foreign keys (migration 0018): the plan takes both from rows it reads in its own statement,
    # and neither sends nor subscribers are ever deleted (erasure blanks a person), so the constraints' cascades
    # never fired; their per-row checks were 8.6 of the 15.4 s that planning a million recipients took.
    send_id: Mapped[int] = mapped_column(BigId)
    subscriber_id: Mapped[int] = mapped_column(BigId)
    status: Mapped[DeliveryStatus] = mapped_column(enum_column(DeliveryStatus, "delivery_status"),
                                                   default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    # What came back (filled by the events policy).
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    bounce: Mapped[str | None] = mapped_column(String(16))  # "hard" | "soft"
    complained_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    unsubscribed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    opens: Mapped[int] = mapped_column(Integer, default=0)
    machine_opens: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    machine_clicks: Mapped[int] = mapped_column(Integer, default=0)


class ProviderEvent(Base):
    """Every event a provider reported, stored before it is applied, deduplicated on the provider's own id."""

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        Index("ix_provider_events_email_kind_at", "email", "kind", "occurred_at"),
        Index("ix_provider_events_unprocessed", "processed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_event_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[EventKind] = mapped_column(enum_column(EventKind, "event_kind"))
    email: Mapped[str | None] = mapped_column(String(320))
    send_id: Mapped[int | None] = mapped_column(ForeignKey("sends.id", ondelete="SET NULL"), index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set (with processed_at) when the event was refused: malformed at the edge, or it failed to apply. A rejected
    # event changes nothing and stays here for a person to read; the events after it are applied as usual.
    error: Mapped[str | None] = mapped_column(Text)


class SendLink(Base):
    """A link of a send's message, numbered at plan time: the click redirect goes only to these URLs."""

    __tablename__ = "send_links"
    __table_args__ = (UniqueConstraint("send_id", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    human: Mapped[int] = mapped_column(Integer, default=0)
    machine: Mapped[int] = mapped_column(Integer, default=0)
    unique_human: Mapped[int] = mapped_column(Integer, default=0)


UNCLASSIFIED = "verdict IS NULL"


class EngagementHit(Base):
    """One open or click as it arrived (raw, kept for a while), with its verdict once classified.

    No foreign keys: hits are written in batches off the request path, and a send deleted meanwhile must not make
    a whole batch fail. The client network is truncated (/24, /48) before it is stored.
    """

    __tablename__ = "engagement_hits"
    __table_args__ = (
        Index("ix_engagement_hits_unclassified", "at", postgresql_where=text(UNCLASSIFIED),
              sqlite_where=text(UNCLASSIFIED)),
        Index("ix_engagement_hits_delivery_at", "delivery_id", "at"),
        Index("ix_engagement_hits_send_at", "send_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_id: Mapped[int] = mapped_column(BigId)
    delivery_id: Mapped[int] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(8))  # EngagementKind
    position: Mapped[int | None] = mapped_column(Integer)  # the link; None for an open
    source: Mapped[str] = mapped_column(String(16))  # "redirect", "pixel", "sendgrid"
    method: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    network: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    verdict: Mapped[str | None] = mapped_column(String(8))  # "human" | "machine", None until classified
    reason: Mapped[str] = mapped_column(String(200), default="")


class UnmatchedBounce(Base):
    """A bounce that names no delivery of ours by a genuine VERP address. It suppresses nobody: the VERP token is
    the only proof a bounce is about our message to that address, so anything else waits here for a person."""

    __tablename__ = "unmatched_bounces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # the same message fetched twice is kept once
    via: Mapped[str] = mapped_column(String(16))  # smtp | imap
    why: Mapped[str] = mapped_column(String(500))
    envelope_to: Mapped[str] = mapped_column(String(1000), default="")
    sender: Mapped[str] = mapped_column(String(500), default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    named: Mapped[list[Any]] = mapped_column(JSON, default=list)  # the failures the message claims
    raw: Mapped[str] = mapped_column(Text, default="")  # the message, cut at a bound
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SendOutcome(Base):
    """What is known of a send's deliveries, counted as it becomes known, in short time buckets: auto-pause reads
    the newest few rows instead of scanning the ledger, and judges only deliveries whose fate is known."""

    __tablename__ = "send_outcomes"

    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    outcomes: Mapped[int] = mapped_column(Integer, default=0)
    hard_bounces: Mapped[int] = mapped_column(Integer, default=0)
    complaints: Mapped[int] = mapped_column(Integer, default=0)
