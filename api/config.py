"""Settings: the only module that reads the environment."""

import ipaddress
import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

API_PREFIX = "/api/v1"  # where the versioned API is mounted
MIN_SECRET_LENGTH = 32
WEAK_SECRETS = {"changethis", "secret", "changeme", "password", "development"}


class Environment(StrEnum):
    development = "development"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Environment = Environment.development
    mongodb_url: str | None = None
    mongodb_db: str = "docstore"
    # How long a request waits for an unreachable database before answering 503.
    mongodb_timeout_ms: int = Field(default=3000, ge=100)
    # The longest the API waits for one database reply before answering 503, never a hang.
    mongodb_socket_timeout_ms: int = Field(default=10_000, ge=100)
    data_dir: Path = Path("./data")
    secret_key: str | None = None
    # Keys retired from signing whose tokens are still accepted until they expire
    # (comma-separated): rotate by moving SECRET_KEY here and setting a new one.
    previous_secret_keys: Annotated[list[str], NoDecode] = []
    public_url: str = "http://127.0.0.1:8000"
    registration_open: bool = True
    # Open sign-ups (each sends a welcome email) one client address may make per window.
    signup_max_per_client: int = Field(default=20, ge=1)
    signup_window_s: int = Field(default=3600, ge=1)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    # Threads hashing passwords; by default one fewer than the cores (at least one), so
    # a storm of sign-ins leaves a core to everything else.
    hashing_threads: int | None = Field(default=None, ge=1, le=256)
    # Sign-ins (and other hashes) that may be in progress beyond one per hashing thread;
    # more at once are a 503 with Retry-After, before any database work.
    bcrypt_max_waiting: int = Field(default=32, ge=0)
    access_token_expire_minutes: int = Field(default=30, ge=1)
    refresh_token_expire_days: int = Field(default=30, ge=1)
    # How long a spent refresh token may be presented again to get the same new one (a lost
    # response); after that, presenting it is reuse and ends the whole session.
    refresh_reuse_grace_s: int = Field(default=10, ge=0)
    # Failed logins allowed in a window, then 429: for one account from one client
    # address (tight), for one account from all addresses together (looser, so a spread
    # of addresses still cannot guess freely), and for one address across accounts.
    login_max_failures_per_account_client: int = Field(default=5, ge=1)
    login_max_failures_per_account: int = Field(default=30, ge=1)
    login_max_failures_per_client: int = Field(default=50, ge=1)
    login_failure_window_s: int = Field(default=900, ge=1)
    jwt_issuer: str = "docstore"
    jwt_audience: str = "docstore-api"
    cors_origins: Annotated[list[str], NoDecode] = []
    # Addresses or networks (comma-separated) of the reverse proxies whose X-Forwarded-For
    # and X-Forwarded-Proto are believed. Nobody's, by default; never `*`.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # POST /items/batch: at most this many operations, in a body of at most this size.
    # (At most 150: the answer, up to 150 full items, is kept for Idempotency-Key retries
    # in one MongoDB document, which holds 16 MiB.)
    batch_max_operations: int = Field(default=100, ge=1, le=150)
    batch_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Idempotency-Key: how long a first answer is replayed; how long a retry waits for a
    # first request still running (then 409, Retry-After); how long a request may hold a
    # key before another may take it over (its writer is presumed dead).
    idempotency_ttl_hours: int = Field(default=24, ge=1)
    idempotency_wait_s: float = Field(default=5.0, ge=0)
    idempotency_lease_s: float = Field(default=30.0, gt=0)
    # Email: SMTP when SMTP_HOST is set, else .eml files under DATA_DIR/mail (and the log).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    mail_from: str = "Docstore <docstore@localhost>"
    # Whether this process delivers mail; any number of processes may (leases keep it safe).
    outbox_worker: bool = True
    outbox_poll_s: float = Field(default=1.0, gt=0)
    outbox_lease_s: float = Field(default=60.0, gt=0)
    outbox_max_attempts: int = Field(default=8, ge=1)
    outbox_backoff_s: float = Field(default=2.0, gt=0)
    # Sent and dead messages are removed (TTL index) this long after they settle.
    outbox_retention_days: int = Field(default=14, ge=1)
    password_reset_expire_minutes: int = Field(default=60, ge=1)
    email_verification_expire_hours: int = Field(default=48, ge=1)
    require_verified_email: bool = False
    recovery_max_per_email: int = Field(default=3, ge=1)
    recovery_max_per_client: int = Field(default=20, ge=1)
    recovery_window_s: int = Field(default=3600, ge=1)
    # Verification emails an account (and a client address) may ask for per window.
    verification_max_per_account: int = Field(default=3, ge=1)
    verification_max_per_client: int = Field(default=20, ge=1)
    verification_window_s: int = Field(default=3600, ge=1)
    # Password recovery answers no sooner than this, account or not: the work done for a
    # real account (a token and an email, in a transaction) must not show in the timing.
    recovery_response_floor_ms: int = Field(default=300, ge=0)
    # Live changes (WS /api/v1/ws/items): unread events a socket may hold before it is
    # closed with 1013, how many missed changes a resume may replay, and how long a
    # socket without ?token= has to send its auth message.
    live_feed: bool = True  # whether this process serves WS /api/v1/ws/items at all
    live_queue_size: int = Field(default=1000, ge=1)
    live_replay_max: int = Field(default=10_000, ge=1)
    live_auth_timeout_s: float = Field(default=5.0, gt=0)
    log_level: str = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, values: dict[str, object]) -> dict[str, object]:
        for name in ("cors_origins", "previous_secret_keys", "trusted_proxies"):
            value = values.get(name)
            if isinstance(value, str):
                values[name] = [part.strip() for part in value.split(",") if part.strip()]
        return values

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, proxies: list[str]) -> list[str]:
        """Exactly what Uvicorn will match: an address, or a network without host bits
        (Uvicorn would keep `10.0.0.1/8` as a name that matches nothing). `*` is refused:
        it trusts every caller's X-Forwarded-For, so any caller picks its own address."""
        for proxy in proxies:
            if proxy == "*":
                raise ValueError("'*' would let any caller choose its address; name the proxies")
            try:
                ipaddress.ip_network(proxy, strict=True)
            except ValueError:
                raise ValueError(
                    f"{proxy!r} is neither an IP address nor a network (without host bits)"
                ) from None
        return proxies

    @model_validator(mode="after")
    def _refuse_weak_secret_in_production(self) -> Self:
        if self.environment is Environment.production:
            problem = secret_problem(self.secret_key)
            if problem:
                raise ValueError(f"SECRET_KEY {problem}; production refuses to start without one.")
            # A retired key still verifies tokens: a weak one would let tokens be forged.
            for position, previous in enumerate(self.previous_secret_keys, start=1):
                if problem := secret_problem(previous):
                    raise ValueError(
                        f"PREVIOUS_SECRET_KEYS entry {position} {problem}; "
                        "production refuses to accept tokens signed with it."
                    )
        return self

    @cached_property
    def signing_secret(self) -> str:
        """The JWT secret: SECRET_KEY, or in development one generated once per data folder."""
        if self.secret_key and not secret_problem(self.secret_key):
            return self.secret_key
        return _development_secret(self.data_dir)


def secret_problem(secret: str | None) -> str | None:
    if not secret:
        return "is not set"
    if secret.lower() in WEAK_SECRETS or len(secret) < MIN_SECRET_LENGTH:
        return f"is weak (use at least {MIN_SECRET_LENGTH} random characters)"
    return None


def _development_secret(data_dir: Path) -> str:
    # Kept in the data folder so tokens survive restarts of a development server.
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret
