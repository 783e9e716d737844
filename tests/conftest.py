"""The database (embedded server or MONGODB_URL), the app in its real lifespan, users, tokens."""

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from beanie import init_beanie
from fastapi import FastAPI
from pymongo import AsyncMongoClient

import tests.commands  # noqa: F401  (registers the command recorder before any client)
from api.accounts import passwords
from api.accounts.passwords import hash_password
from api.accounts.sessions import open_session
from api.accounts.tokens import TokenSigner
from api.config import Settings
from api.core import embedded
from api.core.services import Services
from api.live.feed import LiveFeed
from api.main import create_app
from documents import DOCUMENT_MODELS, User

PASSWORD = "Correct-horse-1"
TEST_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session")
def mongodb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MONGODB_URL when set; otherwise one embedded server for the whole session."""
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    server = embedded.start(tmp_path_factory.mktemp("mongo"))
    yield server.url
    server.stop()


@pytest.fixture
async def failing_server() -> AsyncIterator[str]:
    """A server of its own that takes failpoints (`configureFailPoint`): its URL."""
    server = await asyncio.to_thread(
        embedded.start, Path(":memory:"), extra_args=["--enable-test-commands"]
    )
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)


async def fail_next(client: AsyncMongoClient[Any], command: str) -> None:
    """The next `command` the server (a `failing_server`) runs fails, once (code 8)."""
    await client.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": {"times": 1},
            "data": {"failCommands": [command], "errorCode": 8},
        }
    )


def make_settings(mongodb_url: str | None, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "mongodb_url": mongodb_url,
        "mongodb_db": f"test_{uuid.uuid4().hex[:16]}",
        "data_dir": data_dir,
        "secret_key": TEST_SECRET,
        "bcrypt_rounds": 4,
        # The throttle's bursts of 40 must meet the throttle, not the bound on sign-ins
        # waiting to be hashed (a test of its own sets that).
        "bcrypt_max_waiting": 100,
        # ... and meet it concurrently: with one hashing thread, sign-ins would take turns
        # at their reservations and a burst would test nothing (a test of its own sets 1).
        "hashing_threads": 8,
        # Generous: a busy machine can keep the shared server from answering a new
        # client's first hello for a second or two. Outage tests set their own.
        "mongodb_timeout_ms": 5000,
        "log_level": "WARNING",
        # Mail is delivered, and changes streamed, only where a test is about them
        # (tests/mail, tests/live, tests/webhooks): each costs every app a background task.
        "outbox_worker": False,
        "live_feed": False,
        "webhook_dispatcher": False,
        "recovery_response_floor_ms": 20,  # the timing test sets its own
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """The passwords given to `passwords.<name>` (every call, in order); it still runs."""
    given: list[str] = []
    real = getattr(passwords, name)

    def spying(password: str, *rest: Any) -> Any:
        given.append(password)
        return real(password, *rest)

    monkeypatch.setattr(passwords, name, spying)
    return given


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords given to every bcrypt verification that runs (real or dummy)."""
    return _spy(monkeypatch, "_verify")


@pytest.fixture
def password_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords given to every bcrypt hash made."""
    return _spy(monkeypatch, "_hash")


@pytest.fixture(scope="module")
def settings(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(mongodb_url, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
async def module_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """One app per test module, inside its real lifespan, on a database of its own
    (indexes built once, dropped afterwards). Building an app, its lifespan and its
    OpenAPI description costs about 0.1 s: tests share it and start empty instead."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app
    await drop_database(settings)


@pytest.fixture
async def app(module_app: FastAPI) -> FastAPI:
    """The module's app, its database emptied: each test starts from nothing."""
    await empty_database(module_app)
    return module_app


async def empty_database(app: FastAPI) -> None:
    """Remove every document (indexes stay), and point Beanie back at this app's database:
    a test that ran another app in between (`app_with`) left Beanie bound to that one."""
    services = services_of(app)
    database = services.client[services.settings.mongodb_db]
    bound = User.get_pymongo_collection().database
    if bound.client is not services.client or bound.name != database.name:
        await init_beanie(database=database, document_models=DOCUMENT_MODELS, skip_indexes=True)
    names = await database.list_collection_names()
    await asyncio.gather(*(database[name].delete_many({}) for name in names))


def moment(text: str) -> datetime:
    """A timestamp from a response, for ordering: the strings are not comparable as text
    (a whole second prints without a fraction)."""
    return datetime.fromisoformat(text)


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


def signer_of(app: FastAPI) -> TokenSigner:
    return services_of(app).get(TokenSigner)


def feed_of(app: FastAPI) -> LiveFeed | None:
    return services_of(app).find(LiveFeed)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@asynccontextmanager
async def client_from(app: FastAPI, address: str) -> AsyncIterator[httpx2.AsyncClient]:
    """A client whose requests reach the app from `address` (as the server saw the peer)."""
    transport = httpx2.ASGITransport(app=app, client=(address, 40000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@dataclass
class Account:
    user: User
    token: str
    refresh_token: str
    session_id: str

    @property
    def id(self) -> str:
        return str(self.user.id)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_account(app: FastAPI, name: str, *, superuser: bool = False) -> Account:
    """Seed a user straight into the database (setup, not the point of the test)."""
    user = User(
        email=f"{name}@example.com",
        username=name,
        full_name=name.title(),
        hashed_password=await hash_password(PASSWORD, 4),
        is_superuser=superuser,
    )
    await user.insert()
    opened = await open_session(user, services_of(app).settings, "tests", "127.0.0.1")
    token = signer_of(app).issue(str(user.id), 0, str(opened.session.id))
    user.session_ids = [opened.session.id]  # type: ignore[list-item]
    return Account(user, token, opened.refresh_token, str(opened.session.id))


@pytest.fixture
async def alice(app: FastAPI) -> Account:
    return await make_account(app, "alice")


@pytest.fixture
async def bob(app: FastAPI) -> Account:
    return await make_account(app, "bob")


@pytest.fixture
async def admin(app: FastAPI) -> Account:
    return await make_account(app, "admin", superuser=True)


async def walk_pages(
    client: httpx2.AsyncClient, url: str, headers: dict[str, str], limit: int, **query: Any
) -> list[dict[str, Any]]:
    """Every row of a list endpoint, following `next_cursor` until it is null."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {**query, "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(url, params=params, headers=headers)).json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


LOGIN = "/api/v1/auth/login"


async def login(
    client: httpx2.AsyncClient, username: str, password: str = PASSWORD
) -> httpx2.Response:
    """A password sign-in, as Swagger UI's Authorize sends it (a form)."""
    return await client.post(LOGIN, data={"username": username, "password": password})


async def create_item(client: httpx2.AsyncClient, owner: Account, **fields: Any) -> dict[str, Any]:
    """POST an item (title "note" unless given) and return its JSON."""
    response = await client.post(
        "/api/v1/items", json={"title": "note", **fields}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def app_with(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx2.AsyncClient]]:
    """An app on particular settings, in its lifespan, with a client; its database dropped after."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client
    await drop_database(settings)


async def drop_database(settings: Settings) -> None:
    """Drop a test's database once its app has shut down (its outbox worker stopped too:
    dropping under a worker polling every 50 ms could stall on the embedded server)."""
    async with AsyncMongoClient(settings.mongodb_url, serverSelectionTimeoutMS=5000) as client:
        await client.drop_database(settings.mongodb_db)


async def interleaved_timings(
    tries: int,
    send: Callable[[str], Awaitable[httpx2.Response]],
    first: str,
    second: str,
    status: int,
) -> tuple[list[float], list[float]]:
    """Seconds each of `tries` requests took for `first` and for `second`, sent in turns so
    drift in the machine hits both alike; every answer must be `status`."""
    timings: tuple[list[float], list[float]] = ([], [])
    for _ in range(tries):
        for argument, samples in zip((first, second), timings, strict=True):
            started = time.perf_counter()
            response = await send(argument)
            samples.append(time.perf_counter() - started)
            assert response.status_code == status
    return timings


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 10) -> None:
    """Poll `check` until it holds (failing after `within_s`): for state that another
    task, thread or process changes, which no event of ours can signal."""
    async with asyncio.timeout(within_s):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
