"""One Settings object, read once from NEWSLETTER_* variables (or .env).

Embedded defaults let a new user run everything with no server: a SQLite file, inline tasks and the outbox transport.
Production mode (``NEWSLETTER_ENV=production``) refuses to start with a generated secret, because a secret that
silently appears on disk would change on every fresh container and invalidate every link already mailed. It also
refuses what would quietly make the service unsafe on the internet: a short secret (every link is signed with it),
a plain-http base URL (the links we mail would carry tokens and session cookies in clear), webhook verification
switched off (anyone could post forged bounces and complaints) and a webhook key that cannot be parsed (every genuine
event would be refused). Each refusal names the variable to set, all of them at once.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TransportName(StrEnum):
    OUTBOX = "outbox"
    SMTP = "smtp"
    SENDGRID = "sendgrid"


# The fewest days a finished send keeps its delivery rows when compaction is on (worker/retention.py): DSNs come
# back for up to five days (RFC 5321 4.5.4.1), and some mailbox providers report complaints weeks later.
MIN_LEDGER_KEEP_DAYS = 30

CAPTCHA_VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
}


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
    # Set by `newsletter serve --workers N` for its web processes: the host's intake process (web/intake_process.py).
    intake_socket: str | None = None

    # Sender identity defaults; a list may override them.
    from_name: str = "Digital Digest"
    from_email: str = "newsletter@example.com"
    reply_to: str | None = None
    postal_address: str = "Digital Digest, 1 Example Street, Springfield"
    language: str = "en"  # pages that belong to no list (the archive); a list has its own
    message_id_domain: str | None = None

    # Rendering.
    html_warn_bytes: int = 90 * 1024
    html_max_bytes: int = 102 * 1024

    # Subscribers.
    check_deliverability: bool = False
    pending_purge_days: int = 14
    engagement_raw_days: int = 90  # raw opens and clicks; their counts are kept for ever
    # A finished send's per-recipient rows are removed this many days after it finished, its figures kept on the
    # send (worker/retention.py); 0 keeps them for ever. At least MIN_LEDGER_KEEP_DAYS: late bounces need them.
    ledger_keep_days: int = 0
    confirm_token_max_age_days: int = 7
    subscribe_rate_per_ip: int = 10
    subscribe_rate_per_email: int = 3
    subscribe_rate_window_s: int = 3600
    # Optional CAPTCHA on sign-up forms (hosted and embedded): "turnstile" (Cloudflare) or "hcaptcha". The token the
    # widget puts in the form is checked server-side against the provider's siteverify URL (overridable for tests).
    captcha_provider: str | None = None
    captcha_site_key: str | None = None
    captcha_secret: SecretStr | None = None
    captcha_verify_url: str | None = None
    captcha_timeout_s: float = 5.0

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
    # Connections per worker process, each sending its share of a batch (mailer/transports/smtp.py). A relay
    # that limits connections per client sees at most this times the worker processes.
    smtp_connections: int = Field(default=4, ge=1, le=32)
    unsubscribe_mailto: str | None = None  # e.g. unsubscribe@news.example.com, also listed in List-Unsubscribe
    max_delivery_attempts: int = 5
    bounce_domain: str | None = None
    # DKIM (mailer/dkim_signing.py): the key at dkim_private_key_path (RSA, or Ed25519) signs as dkim_selector;
    # an Ed25519 key beside it adds a second signature (RFC 8463). The domain defaults to the From address's.
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key_path: Path | None = None
    dkim_ed25519_selector: str | None = None
    dkim_ed25519_private_key_path: Path | None = None

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
    max_body_bytes: int = 1 << 20  # JSON and form bodies; larger ones are refused (413) before authentication
    import_max_upload_bytes: int = 200 << 20  # the admin's CSV upload
    session_cookie_secure: bool | None = None  # None = secure when base_url is https
    login_attempts_per_window: int = 10
    public_cache_s: float | None = None  # newsletter/web/pagecache.py; None = 5 s in production, else off

    # Fields derived in the validator.
    secret_generated: bool = Field(default=False, exclude=True)

    @property
    def production(self) -> bool:
        return self.env.lower() == "production"

    @property
    def development(self) -> bool:
        """Templates are re-read when their files change only here (a deployed server restarts on a release)."""
        return self.env.lower() == "development"

    @field_validator("dkim_selector", "dkim_domain", "dkim_private_key_path", "dkim_ed25519_selector",
                     "dkim_ed25519_private_key_path", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`NEWSLETTER_DKIM_PRIVATE_KEY_PATH=` in an env file means "no key", not the current directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.data_dir / 'newsletter.db').resolve()}"
        if self.outbox_dir is None:
            self.outbox_dir = self.data_dir / "outbox"
        if self.redis_url is None and self.broker_url and self.broker_url.startswith("redis"):
            self.redis_url = self.broker_url
        if not self.sendgrid_webhook_public_key:  # compose passes an unset variable as ""
            self.sendgrid_webhook_public_key = None
        if self.production:
            problems = _production_problems(self)
            if problems:
                raise SettingsError("Refusing to start in production (NEWSLETTER_ENV=production):\n"
                                    + "\n".join(f"- {problem}" for problem in problems))
        if self.secret_key is None:
            self.secret_key = SecretStr(_local_secret(self.data_dir))
            self.secret_generated = True
        if self.captcha_provider is not None:
            self.captcha_provider = self.captcha_provider.strip().lower() or None
        if self.captcha_provider is not None:
            if self.captcha_provider not in CAPTCHA_VERIFY_URLS:
                raise SettingsError("NEWSLETTER_CAPTCHA_PROVIDER must be 'turnstile' or 'hcaptcha'")
            if not self.captcha_site_key or self.captcha_secret is None:
                raise SettingsError("a CAPTCHA provider needs NEWSLETTER_CAPTCHA_SITE_KEY and _SECRET")
            self.captcha_verify_url = self.captcha_verify_url or CAPTCHA_VERIFY_URLS[self.captcha_provider]
            if not self.captcha_verify_url.startswith(("https://", "http://")):
                raise SettingsError("NEWSLETTER_CAPTCHA_VERIFY_URL must be an http(s) URL")
        if 0 < self.ledger_keep_days < MIN_LEDGER_KEEP_DAYS:
            raise SettingsError(f"NEWSLETTER_LEDGER_KEEP_DAYS must be 0 (keep for ever) or at least "
                                f"{MIN_LEDGER_KEEP_DAYS}: a bounce can arrive days after a send, and only its "
                                f"delivery row proves it")
        self._check_dkim_pairs()
        return self

    def _check_dkim_pairs(self) -> None:
        """Half a DKIM key configuration used to mean silently unsigned mail; now it is an error at start-up."""
        for selector, path, names in (
                (self.dkim_selector, self.dkim_private_key_path, "DKIM_SELECTOR and NEWSLETTER_DKIM_PRIVATE_KEY_PATH"),
                (self.dkim_ed25519_selector, self.dkim_ed25519_private_key_path,
                 "DKIM_ED25519_SELECTOR and NEWSLETTER_DKIM_ED25519_PRIVATE_KEY_PATH")):
            if bool(selector) != bool(path):
                raise SettingsError(f"NEWSLETTER_{names} must be set together")

    @property
    def secret(self) -> str:
        assert self.secret_key is not None
        return self.secret_key.get_secret_value()

    def base_url_problem(self) -> str | None:
        """Why base_url is unfit for links in real mail, or None.

        Every unsubscribe, preferences and archive link carries it: an http link leaks the subscriber's token on
        the wire, a local host (the default, localhost:8000) is a dead link in every inbox, and a port number is
        something spam filters score (WEIRD_PORT).
        """
        parts = urlsplit(self.base_url)
        host = (parts.hostname or "").lower().rstrip(".")
        reasons = []
        if parts.scheme != "https":
            reasons.append("not https")
        if _local_host(host):
            reasons.append("on a local host")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if port is not None and port != 443:
            reasons.append(f"on port {parts.port if port != -1 else '?'}")
        if not reasons:
            return None
        return (f"NEWSLETTER_BASE_URL {self.base_url!r} is {', '.join(reasons)}: every link mailed (unsubscribe "
                "included) would use it. Set it to the public https address of this service.")

    @property
    def mail_domain(self) -> str:
        return self.message_id_domain or self.from_email.rpartition("@")[2]


MIN_SECRET_CHARS = 32


def _production_problems(settings: Settings) -> list[str]:
    problems = []
    secret = settings.secret_key.get_secret_value() if settings.secret_key is not None else ""
    if not secret:
        problems.append("NEWSLETTER_SECRET_KEY must be set: every link we mail is signed with it "
                        "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))').")
    elif len(secret) < MIN_SECRET_CHARS:
        problems.append(f"NEWSLETTER_SECRET_KEY is {len(secret)} characters: set at least {MIN_SECRET_CHARS} random "
                        "characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))').")
    if not settings.base_url.lower().startswith("https://"):
        problems.append(f"NEWSLETTER_BASE_URL is {settings.base_url!r}: set the public https:// address, since "
                        "mailed links carry signed tokens and the admin session cookie must be Secure.")
    if not settings.sendgrid_webhook_verify:
        problems.append("NEWSLETTER_SENDGRID_WEBHOOK_VERIFY is off: remove it (or set it to true) and set "
                        "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY, or anyone can post forged bounces and complaints.")
    key = settings.sendgrid_webhook_public_key
    if key is not None and not _is_ec_public_key(key):
        problems.append("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY cannot be read: paste the verification key from "
                        "SendGrid's Mail Settings > Signed Event Webhook (base64, without the PEM header lines).")
    if settings.transport is TransportName.SENDGRID:
        if settings.sendgrid_api_key is None:
            problems.append("NEWSLETTER_SENDGRID_API_KEY must be set to use the sendgrid transport.")
        if key is None and settings.sendgrid_webhook_verify:
            problems.append("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY must be set with the sendgrid transport: "
                            "without it every bounce and complaint SendGrid reports is refused.")
    return problems


def _is_ec_public_key(key: str) -> bool:
    """The check SendGrid's helper makes when it verifies (PEM-wrap, load, must be ECDSA), made at start-up."""
    # Imported here: only a production start with a webhook key pays ~90 ms for the crypto backend.
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import load_pem_public_key  # noqa: PLC0415

    pem = f"-----BEGIN PUBLIC KEY-----\n{key.strip()}\n-----END PUBLIC KEY-----"
    try:
        return isinstance(load_pem_public_key(pem.encode()), EllipticCurvePublicKey)
    except (ValueError, TypeError, UnicodeError):
        return False


def make_private_dir(path: Path) -> None:
    """Create a directory only its owner can enter (the data dir holds the secret, the database and mail)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def create_private_file(path: Path) -> None:
    """Create an empty file readable only by its owner, unless it exists; its content comes later."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".test", ".invalid")


def _local_host(host: str) -> bool:
    """A name or address no subscriber's mail client can reach."""
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        pass
    return not host or host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host  # e.g. "web"


def _local_secret(data_dir: Path) -> str:
    """A per-installation secret kept in the data dir, so links survive restarts of an embedded install."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    make_private_dir(data_dir)
    value = secrets.token_urlsafe(48)
    create_private_file(path)
    path.write_text(value)
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment between runs)."""
    get_settings.cache_clear()
