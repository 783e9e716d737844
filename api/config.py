"""Settings: the only module that reads the environment."""

import contextlib
import ipaddress
import os
import secrets
import time
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

    environment: Environment = Field(
        default=Environment.development,
        description=(
            "`development` or `production`. Production refuses to start without a strong "
            "`SECRET_KEY` (and strong `PREVIOUS_SECRET_KEYS`), and sends HSTS."
        ),
    )
    mongodb_url: str | None = Field(
        default=None,
        description=(
            "The MongoDB to use. Unset: the app starts its embedded development database "
            "(SecantusDB) with its data under `DATA_DIR`."
        ),
    )
    mongodb_db: str = Field(default="docstore", description="The database's name.")
    mongodb_timeout_ms: int = Field(
        default=3000,
        ge=100,
        description="How long a request waits for an unreachable database before answering 503.",
    )
    mongodb_socket_timeout_ms: int = Field(
        default=10_000,
        ge=100,
        description=(
            "The longest the API waits for one database reply before answering 503, never a hang."
        ),
    )
    data_dir: Path = Field(
        default=Path("./data"),
        description=(
            "The local data folder: the embedded database, development mail (`mail/`) and "
            "the development secret key (`secret_key`)."
        ),
    )
    secret_key: str | None = Field(
        default=None,
        description=(
            "Signs access tokens and cursors, and seals feed cursors and emailed tokens: "
            "32+ random characters. Required in production; in development one is "
            "generated once and kept in `DATA_DIR/secret_key`, so tokens survive restarts."
        ),
    )
    previous_secret_keys: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "Keys retired from signing whose tokens are still accepted until they expire "
            "(comma-separated): rotate by moving `SECRET_KEY` here and setting a new one. "
            "In production each must be as strong as `SECRET_KEY`."
        ),
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description=(
            "Where people reach the service: the links in emails, and the server named in "
            "the AsyncAPI document."
        ),
    )
    registration_open: bool = Field(
        default=True,
        description=(
            "Whether anyone may sign up (`POST /api/v1/users`); superusers may always create users."
        ),
    )
    signup_max_per_client: int = Field(
        default=20,
        ge=1,
        description=(
            "Open sign-ups (each sends a welcome email) one client address may make per "
            "`SIGNUP_WINDOW_S`; superusers creating accounts are not counted."
        ),
    )
    signup_window_s: int = Field(
        default=3600, ge=1, description="The window of `SIGNUP_MAX_PER_CLIENT`, in seconds."
    )
    bcrypt_rounds: int = Field(
        default=12,
        ge=4,
        le=16,
        description=(
            "The bcrypt cost of new password hashes. A successful login re-hashes a "
            "password stored at another cost, so raising it upgrades accounts as they "
            "sign in."
        ),
    )
    hashing_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=(
            "Threads hashing passwords, per API process; by default one fewer than the "
            "cores (at least one), so a storm of sign-ins leaves a core to everything else."
        ),
    )
    bcrypt_max_waiting: int = Field(
        default=32,
        ge=0,
        description=(
            "Sign-ins (and other hashes) that may be in progress beyond one per hashing "
            "thread; more at once are a 503 with Retry-After, before any database work."
        ),
    )
    access_token_expire_minutes: int = Field(
        default=30, ge=1, description="How long an access token (a JWT) is valid."
    )
    refresh_token_expire_days: int = Field(
        default=30, ge=1, description="How long a refresh token is valid."
    )
    refresh_reuse_grace_s: int = Field(
        default=10,
        ge=0,
        description=(
            "How long a spent refresh token may be presented again to get the same new one "
            "(a lost response); after that, presenting it is reuse and ends the whole session."
        ),
    )
    login_max_failures_per_account_client: int = Field(
        default=5,
        ge=1,
        description=(
            "Failed logins allowed per window for one account from one client address "
            "(tight), then 429."
        ),
    )
    login_max_failures_per_account: int = Field(
        default=30,
        ge=1,
        description=(
            "Failed logins allowed per window for one account from all addresses together "
            "(looser, so a spread of addresses still cannot guess freely), then 429."
        ),
    )
    login_max_failures_per_client: int = Field(
        default=50,
        ge=1,
        description=(
            "Failed logins allowed per window for one client address across accounts, then 429."
        ),
    )
    reset_max_failures_per_client: int = Field(
        default=10,
        ge=1,
        description=(
            "Failed password resets (a wrong, used or expired token) allowed per window "
            "(`LOGIN_FAILURE_WINDOW_S`) from one client address, then 429."
        ),
    )
    login_failure_window_s: int = Field(
        default=900, ge=1, description="The window failed logins are counted in, in seconds."
    )
    jwt_issuer: str = Field(
        default="docstore", description="The `iss` claim access tokens carry and must carry."
    )
    jwt_audience: str = Field(
        default="docstore-api", description="The `aud` claim access tokens carry and must carry."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "Origins (comma-separated) that browsers may call the API from; none by default."
        ),
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "Addresses or networks (comma-separated) of the reverse proxies whose "
            "X-Forwarded-For and X-Forwarded-Proto are believed. Nobody's, by default; "
            "never `*`."
        ),
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description=(
            "The largest request body of a signed-in caller (1 MiB by default); past it, "
            "a 413. Until a route knows its caller, a body is held to 64 KiB."
        ),
    )
    # At most 150: the answer, up to 150 full items, is kept for Idempotency-Key retries
    # in one MongoDB document, which holds 16 MiB.
    batch_max_operations: int = Field(
        default=100,
        ge=1,
        le=150,
        description=(
            "The most operations one `POST /api/v1/items/batch` may carry; the OpenAPI "
            "document states the configured value."
        ),
    )
    batch_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description=(
            "The largest body of `POST /api/v1/items/batch` (8 MiB by default), instead of "
            "`MAX_BODY_BYTES`."
        ),
    )
    # A share is ~100 bytes on the item, and every sharee's id sits in its `readers`
    # index entries: 10,000 keeps an item far below MongoDB's 16 MiB document.
    shares_max_per_item: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description=(
            "The most users one item may be shared with; one more is a 409. Each share "
            "adds an entry to the item's reader index for every list order."
        ),
    )
    idempotency_ttl_hours: int = Field(
        default=24, ge=1, description="How long an Idempotency-Key's first answer is replayed."
    )
    idempotency_wait_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How long a retry waits for a first request still running, then 409 with Retry-After."
        ),
    )
    idempotency_lease_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "How long a request may hold an Idempotency-Key before another may take it over "
            "(its writer is presumed dead)."
        ),
    )
    smtp_host: str | None = Field(
        default=None,
        description=(
            "Send email by SMTP through this host. Unset: email is written as `.eml` files "
            "under `DATA_DIR/mail`, and logged."
        ),
    )
    smtp_port: int = Field(default=587, description="The SMTP server's port.")
    smtp_user: str | None = Field(default=None, description="The SMTP user, if it asks for one.")
    smtp_password: str | None = Field(default=None, description="The SMTP user's password.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="How the SMTP connection is secured: `starttls`, `tls` or `none`.",
    )
    mail_from: str = Field(
        default="Docstore <docstore@localhost>", description="The sender of every email."
    )
    outbox_worker: bool = Field(
        default=True,
        description=(
            "Whether this process delivers mail; any number of processes may (leases keep it safe)."
        ),
    )
    outbox_poll_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "How often, in seconds, an idle outbox worker looks for due messages (it is "
            "woken at once when mail is enqueued in its process)."
        ),
    )
    outbox_lease_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "How long a worker holds a message it claimed; a dead worker's message is "
            "claimed again when its lease lapses."
        ),
    )
    outbox_max_attempts: int = Field(
        default=8, ge=1, description="Sending attempts before a message is marked dead."
    )
    outbox_backoff_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "The first retry's delay, in seconds, doubled at each further attempt, with "
            "jitter (a delay between half and all of it)."
        ),
    )
    outbox_retention_days: int = Field(
        default=14,
        ge=1,
        description=("Sent and dead messages are removed (TTL index) this long after they settle."),
    )
    outbox_concurrency: int = Field(
        default=16,
        ge=1,
        le=256,
        description=(
            "Deliveries (emails, webhook calls) one API process makes at once; one webhook "
            "takes at most `WEBHOOK_MAX_IN_FLIGHT` of them, so a slow receiver holds up "
            "only its own deliveries."
        ),
    )
    webhooks_max_per_user: int = Field(
        default=20, ge=1, le=1000, description="How many webhooks one account may have."
    )
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "Networks (comma-separated CIDRs) a webhook may point into although they are "
            "not public (loopback, private, link-local, ...); none by default. The only "
            "way around the address checks: for receivers on your own network."
        ),
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="How long one delivery attempt may take, connection included.",
    )
    webhook_backoff_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "A failed delivery's first retry comes after this many seconds, doubled at "
            "each further attempt, with jitter; later if the receiver's Retry-After asks."
        ),
    )
    webhook_max_attempts: int = Field(
        default=10,
        ge=1,
        le=30,
        description="Attempts at one delivery before it is given up on (`dead`).",
    )
    webhook_disable_after: int = Field(
        default=5,
        ge=1,
        description=(
            "Deliveries given up on in a row that disable a webhook (its owner is emailed)."
        ),
    )
    webhook_secret_overlap_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 30,
        description=(
            "After a secret rotation, how long deliveries are signed by the old secret too."
        ),
    )
    webhook_max_in_flight: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Deliveries to one webhook that one API process makes at once.",
    )
    webhook_dispatcher: bool = Field(
        default=True,
        description=(
            "Whether this process may be the one that turns item changes into webhook "
            "deliveries (a lease in the database lets exactly one process do it at a time)."
        ),
    )
    webhook_lease_s: float = Field(
        default=30.0,
        ge=1,
        description=(
            "How long the dispatcher's lease lasts unrenewed: a process that dies holding "
            "it is replaced after this long."
        ),
    )
    trash_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="How long a deleted item stays in its owner's trash before it is purged.",
    )
    history_max_versions: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="How many versions of an item its history keeps (the newest).",
    )
    audit_retention_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="How long an account's security log keeps an event (TTL index).",
    )
    password_reset_expire_minutes: int = Field(
        default=60, ge=1, description="How long an emailed password-reset token is valid."
    )
    email_verification_expire_hours: int = Field(
        default=48, ge=1, description="How long an emailed email-confirmation token is valid."
    )
    require_verified_email: bool = Field(
        default=False, description="Whether login waits for a confirmed email address."
    )
    recovery_max_per_email: int = Field(
        default=3,
        ge=1,
        description=(
            "Password recovery emails per account (however its address is spelled) per "
            "`RECOVERY_WINDOW_S`."
        ),
    )
    recovery_max_per_client: int = Field(
        default=20,
        ge=1,
        description="Password recovery requests per client address per `RECOVERY_WINDOW_S`.",
    )
    recovery_window_s: int = Field(
        default=3600, ge=1, description="The window of the recovery limits, in seconds."
    )
    verification_max_per_account: int = Field(
        default=3,
        ge=1,
        description="Verification emails an account may ask for per `VERIFICATION_WINDOW_S`.",
    )
    verification_max_per_client: int = Field(
        default=20,
        ge=1,
        description=(
            "Verification emails one client address may ask for per `VERIFICATION_WINDOW_S`."
        ),
    )
    verification_window_s: int = Field(
        default=3600, ge=1, description="The window of the verification limits, in seconds."
    )
    recovery_response_floor_ms: int = Field(
        default=300,
        ge=0,
        description=(
            "Password recovery answers no sooner than this, account or not: the work done "
            "for a real account (a token and an email, in a transaction) must not show in "
            "the timing."
        ),
    )
    live_feed: bool = Field(
        default=True,
        description="Whether this process serves `WS /api/v1/ws/items` at all.",
    )
    live_queue_size: int = Field(
        default=1000,
        ge=1,
        description="Unread events a live socket may hold before it is closed with 1013.",
    )
    live_replay_max: int = Field(
        default=10_000,
        ge=1,
        description=("How many missed changes a resume may replay; more get a `resync` event."),
    )
    live_replays_per_user: int = Field(
        default=2,
        ge=1,
        description=(
            "How many resumes (`resume_after`) one account may have replaying at once in "
            "one API process; one more is closed with 1013, to reconnect shortly. A replay "
            "reads every account's changes since its cursor, up to `LIVE_REPLAY_MAX`."
        ),
    )
    live_auth_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "How long a live socket without a token in its handshake has to send its auth message."
        ),
    )
    log_level: str = Field(default="INFO", description="The log level (`DEBUG`, `INFO`, ...).")

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, values: dict[str, object]) -> dict[str, object]:
        for name in (
            "cors_origins",
            "previous_secret_keys",
            "trusted_proxies",
            "webhook_allowed_networks",
        ):
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

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=True)
            except ValueError:
                raise ValueError(
                    f"{network!r} is not a network (CIDR, without host bits)"
                ) from None
        return networks

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
    def webhook_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """WEBHOOK_ALLOWED_NETWORKS, parsed once (each was checked by its validator)."""
        return tuple(ipaddress.ip_network(network) for network in self.webhook_allowed_networks)

    @cached_property
    def signing_secret(self) -> str:
        """The JWT secret: SECRET_KEY, or in development one generated once per data folder."""
        if self.secret_key and not secret_problem(self.secret_key):
            return self.secret_key
        return development_secret(self.data_dir)


def secret_problem(secret: str | None) -> str | None:
    if not secret:
        return "is not set"
    if secret.lower() in WEAK_SECRETS or len(secret) < MIN_SECRET_LENGTH:
        return f"is weak (use at least {MIN_SECRET_LENGTH} random characters)"
    return None


def development_secret(data_dir: Path) -> str:
    """Kept in the data folder so tokens survive restarts of a development server.

    Workers starting together on a fresh folder must all end up with the same one: each
    writes a candidate to a file of its own, created readable by its owner only, and
    links it into place; a link never replaces an existing file, so the first to link
    wins and the others read the winner's. Where the folder takes no hard links (some
    network or FUSE mounts), the file itself is created exclusively instead, and a
    reader waits for its writer to finish."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        candidate = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        _write_new(candidate, secret)
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here
            with contextlib.suppress(FileExistsError):
                _write_new(path, secret)
        finally:
            candidate.unlink()
    for _ in range(100):  # a writer without links may not have finished yet
        written = path.read_text().strip()
        if written:
            return written
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: remove it, and a new secret is made")


def _write_new(path: Path, text: str) -> None:
    """Create `path` (never replacing one) readable by its owner only, from the start."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
