"""One Settings object, read once from NEWSLETTER_* variables (or .env).

Embedded defaults let a new user run everything with no server: a SQLite file, inline tasks and the outbox transport.
Production mode (``NEWSLETTER_ENV=production``) refuses to start with a generated secret, because a secret that
silently appears on disk would change on every fresh container and invalidate every link already mailed.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TransportName(StrEnum):
    OUTBOX = "outbox"
    SMTP = "smtp"
    SENDGRID = "sendgrid"


class SettingsError(RuntimeError):
    """Configuration that cannot work; raised at start-up rather than at the first send."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWSLETTER_", env_file=".env", extra="ignore")

    env: str = "development"
    data_dir: Path = Path("data")
    database_url: str | None = None
    broker_url: str | None = None
    redis_url: str | None = None
    transport: TransportName = TransportName.OUTBOX
    outbox_dir: Path | None = None
    base_url: str = "http://localhost:8000"
    secret_key: SecretStr | None = None

    # Sender identity defaults; a list may override them.
    from_name: str = "Digital Digest"
    from_email: str = "newsletter@example.com"
    reply_to: str | None = None
    postal_address: str = "Digital Digest, 1 Example Street, Springfield"
    message_id_domain: str | None = None

    # Rendering.
    html_warn_bytes: int = 90 * 1024
    html_max_bytes: int = 102 * 1024

    # Subscribers.
    check_deliverability: bool = False
    pending_purge_days: int = 14
    token_max_age_days: int = 30
    engagement_raw_days: int = 90  # raw opens and clicks; their counts are kept for ever
    confirm_token_max_age_days: int = 7
    subscribe_rate_per_ip: int = 10
    subscribe_rate_per_email: int = 3
    subscribe_rate_window_s: int = 3600

    # Sending.
    # What one kill -9 can repeat on SendGrid (the whole HTTP call is ambiguous): see docs/operations.md.
    batch_size: int = 250
    # A live worker renews its claims every third of the lease, so a dead one's rows return within about
    # lease + a sweep (the beat runs the sweeper every third of the lease).
    claim_lease_s: int = 30
    # How long a worker keeps trying to record outcomes the provider already accepted while the database is away.
    ledger_retry_s: float = 600.0
    rate_per_second: float = 0.0  # 0 = unlimited
    rate_burst: int = 1000
    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_timeout_s: float = 30.0
    sendgrid_max_attempts: int = 5
    sendgrid_max_retry_s: float = 60.0
    sendgrid_webhook_public_key: str | None = None
    sendgrid_webhook_verify: bool = True
    webhook_max_age_s: int = 300
    webhook_max_body_bytes: int = 1_000_000
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: str = "none"  # none | starttls | ssl
    smtp_timeout_s: float = 30.0
    unsubscribe_mailto: str | None = None  # e.g. unsubscribe@news.example.com, also listed in List-Unsubscribe
    max_delivery_attempts: int = 5
    bounce_domain: str | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key_path: Path | None = None

    # Events policy.
    soft_bounce_limit: int = 3
    soft_bounce_window_days: int = 15
    autopause_window: int = 1000
    autopause_min_sample: int = 200
    autopause_hard_bounce_rate: float = 0.05
    autopause_complaint_rate: float = 0.003

    # Bounce mailbox (IMAP).
    imap_host: str | None = None
    imap_port: int = 993
    imap_ssl: bool = True
    imap_user: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"

    # Web.
    session_cookie_secure: bool | None = None  # None = secure when base_url is https
    login_attempts_per_window: int = 10

    # Fields derived in the validator.
    secret_generated: bool = Field(default=False, exclude=True)

    @property
    def production(self) -> bool:
        return self.env.lower() == "production"

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.data_dir / 'newsletter.db').resolve()}"
        if self.outbox_dir is None:
            self.outbox_dir = self.data_dir / "outbox"
        if self.redis_url is None and self.broker_url and self.broker_url.startswith("redis"):
            self.redis_url = self.broker_url
        if self.secret_key is None:
            if self.production:
                raise SettingsError("NEWSLETTER_SECRET_KEY must be set in production")
            self.secret_key = SecretStr(_local_secret(self.data_dir))
            self.secret_generated = True
        if self.production and self.transport is TransportName.SENDGRID and self.sendgrid_api_key is None:
            raise SettingsError("NEWSLETTER_SENDGRID_API_KEY must be set to use the sendgrid transport")
        return self

    @property
    def secret(self) -> str:
        assert self.secret_key is not None
        return self.secret_key.get_secret_value()

    @property
    def mail_domain(self) -> str:
        return self.message_id_domain or self.from_email.rpartition("@")[2]


def _local_secret(data_dir: Path) -> str:
    """A per-installation secret kept in the data dir, so links survive restarts of an embedded install."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(value)
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment between runs)."""
    get_settings.cache_clear()
