"""Lists, subscribers, subscriptions, the consent audit trail and the suppression list."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailer.brand import Audience, Brand
from mailer.db import Base, BigId, enum_column, utcnow
from mailer.settings import Settings

EmailText = String(320).with_variant(String(320, collation="C"), "postgresql")


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"


class ConsentKind(StrEnum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    RESUBSCRIBED = "resubscribed"
    IMPORTED = "imported"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    PREFERENCES = "preferences"
    PURGED = "purged"
    ERASED = "erased"


class ConsentSource(StrEnum):
    FORM = "form"
    IMPORT = "import"
    ADMIN = "admin"
    API = "api"
    PROVIDER = "provider"
    SYSTEM = "system"


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE_LIMIT = "soft_bounce_limit"
    COMPLAINT = "complaint"
    DROPPED = "dropped"
    MANUAL = "manual"
    ERASED = "erased"


class MailingList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    from_name: Mapped[str | None] = mapped_column(String(200))
    from_email: Mapped[str | None] = mapped_column(String(320))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=True)
    welcome_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Accept local parts that mix scripts (look-alikes of other addresses are made that way); see mailer/addresses.py
    allow_international: Mapped[bool] = mapped_column(Boolean, default=False)
    # Click and open tracking (on for a new list, as in Ghost); a subscriber may still opt out for themselves.
    track_clicks: Mapped[bool] = mapped_column(Boolean, default=True)
    track_opens: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Sign-up from the publisher's own site: a form posted from any page (or only from `embed_origins`, one origin
    # a line, when set). Not embeddable = only our hosted page signs people up.
    embeddable: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    embed_origins: Mapped[str] = mapped_column(Text, default="", server_default="")
    thank_you_url: Mapped[str | None] = mapped_column(String(500))  # where an embedded form lands; else our page
    # Private archive: the list's issues never appear in the public web archive or its RSS feed.
    archive_private: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    @property
    def allowed_origins(self) -> list[str]:
        return [line.strip().rstrip("/").lower() for line in self.embed_origins.split() if line.strip()]
    # Language of the email chrome and the list's pages (a BCP 47 tag with a catalog, see mailer/i18n.py).
    language: Mapped[str] = mapped_column(String(35), default="en", server_default="en")
    # Brand: empty fields fall back to the service-wide identity. A logo is an https URL or an uploaded image
    # (served by the app at /lists/<slug>/logo); the accent was checked for contrast (mailer.brand).
    brand_name: Mapped[str | None] = mapped_column(String(200))
    logo_url: Mapped[str | None] = mapped_column(String(2000))
    logo_image: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    logo_type: Mapped[str | None] = mapped_column(String(50))
    logo_digest: Mapped[str | None] = mapped_column(String(16))  # in the logo's URL: a new upload is a new URL
    accent_colour: Mapped[str | None] = mapped_column(String(7))
    postal_address: Mapped[str | None] = mapped_column(String(500))

    def sender(self, settings: Settings) -> tuple[str, str, str | None]:
        """(from name, from email, reply-to) of the list, falling back to the service-wide defaults."""
        return (self.from_name or settings.from_name, self.from_email or settings.from_email,
                self.reply_to or settings.reply_to)

    def logo_link(self, settings: Settings) -> str:
        """Where mail and pages load the logo from: the uploaded image (versioned, so a new upload is not hidden
        by caches) or the https URL."""
        if self.logo_type:
            return f"{settings.base_url.rstrip('/')}/lists/{self.slug}/logo?v={self.logo_digest}"
        return self.logo_url or ""

    def audience(self, settings: Settings) -> Audience:
        brand = Brand(name=self.brand_name or "", logo_url=self.logo_link(settings),
                      accent=self.accent_colour or Brand().accent, postal_address=self.postal_address or "")
        return Audience(list_name=self.name, lang=self.language or "en", brand=brand)

    def feedback_id(self, campaign: str, settings: Settings) -> str:
        """Feedback-ID (Gmail's feedback loop: complaint rates per identifier) as campaign:list:sender.

        The sender is the domain of the From address: the identity a mailbox provider keeps a reputation for.
        Colons would shift the fields, so none survive in a part.
        """
        sender = self.sender(settings)[1].rpartition("@")[2]
        return ":".join(part.replace(":", "-") for part in (campaign, self.slug, sender))


class Segment(Base):
    """A saved filter on a list (subscribers/segments.py has the language)."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("list_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    expression: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ListField(Base):
    """A custom field of a list: its name, type and options (subscribers/fields.py has the rules).

    Values live in `Subscriber.attributes` under the field's name, stored typed (a number as a JSON number, a date
    as 'YYYY-MM-DD', yes/no as a boolean), so a field defined later types the values imported before it.
    The type is a stored string (not a database enum): a new type needs no migration.
    """

    __tablename__ = "list_fields"
    __table_args__ = (UniqueConstraint("list_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    options: Mapped[list[str]] = mapped_column(JSON, default=list)
    default: Mapped[Any] = mapped_column(JSON, nullable=True)
    subscriber_editable: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Normalised (see subscribers.service.normalise_email) before it is stored, so UNIQUE means "same mailbox".
    # Byte order on PostgreSQL: a normalised address needs no linguistic sorting, and the unique index is then
    # cheaper to maintain and serves `LIKE 'prefix%'` searches.
    email: Mapped[str] = mapped_column(EmailText, unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tracking_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # Engagement of a person (machines excluded), kept for segments such as "opened in the last 90 days".
    last_human_open_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_human_click_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan",
        primaryjoin="Subscriber.id == foreign(Subscription.subscriber_id)")


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "list_id"),
        Index("ix_subscriptions_list_status", "list_id", "status", "subscriber_id"),
        Index("ix_subscriptions_list_confirmed", "list_id", "confirmed_at"),  # the welcome series' window
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Plain ids, not foreign keys (migration 0019): every writer takes them from rows it has just read or upserted,
    # nothing deletes a subscriber or a list, and the two checks per row were a quarter of a bulk import. Joins on
    # this table name their condition.
    subscriber_id: Mapped[int] = mapped_column(BigId)
    list_id: Mapped[int] = mapped_column(BigId)
    status: Mapped[SubscriptionStatus] = mapped_column(enum_column(SubscriptionStatus, "subscription_status"))
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    unsubscribed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Whether the list's welcome series mails this subscription once confirmed: yes for sign-ups, no for an
    # import unless staff ask for it (worker/welcome.py).
    welcome: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    subscriber: Mapped[Subscriber] = relationship(
        back_populates="subscriptions", primaryjoin="Subscriber.id == foreign(Subscription.subscriber_id)")
    mailing_list: Mapped[MailingList] = relationship(primaryjoin="MailingList.id == foreign(Subscription.list_id)")


class ConsentEvent(Base):
    """Append-only proof of consent: who agreed to (or left) what, when, from where.

    The subscriber and list ids are plain references, not foreign keys: a proof must never be rewritten (ON DELETE
    SET NULL) or block anything, and neither subscribers nor lists are ever deleted. It also halves what a bulk
    import costs the database, where the per-row foreign-key checks were half of the work.
    """

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_events_subscriber_at", "subscriber_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(BigId)
    list_id: Mapped[int | None] = mapped_column(BigId)
    kind: Mapped[ConsentKind] = mapped_column(enum_column(ConsentKind, "consent_kind"))
    source: Mapped[ConsentSource] = mapped_column(enum_column(ConsentSource, "consent_source"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provider_event_id: Mapped[int | None] = mapped_column(BigId)


class Suppression(Base):
    """Addresses never to be mailed. Keyed by hash so that erasure can drop the address and keep the refusal."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    reason: Mapped[SuppressionReason] = mapped_column(enum_column(SuppressionReason, "suppression_reason"))
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    provider_event_id: Mapped[int | None] = mapped_column(BigId)


class ImportStatus(StrEnum):
    """A stored string (not a database enum), so adding a state needs no migration; compared as this enum."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ImportJob(Base):
    """A CSV import's checkpoint, so an interrupted import resumes after the last committed chunk."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(500))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32), default=ImportStatus.RUNNING.value)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_source: Mapped[str] = mapped_column(String(200), default="")
    byte_offset: Mapped[int] = mapped_column(BigId, default=0)
    line_no: Mapped[int] = mapped_column(BigId, default=0)
    imported: Mapped[int] = mapped_column(BigId, default=0)
    skipped: Mapped[int] = mapped_column(BigId, default=0)
    errors: Mapped[int] = mapped_column(BigId, default=0)
    report_path: Mapped[str | None] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
