"""The database underneath: indexes, the embedded server's lifecycle and durability, outages."""

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from api.core import embedded
from api.main import create_app
from documents import Item, User
from tests.conftest import eventually, make_account, make_settings, services_of


async def test_indexes_exist_after_startup(app: FastAPI) -> None:
    db = services_of(app).client[services_of(app).settings.mongodb_db]
    users = await db.users.index_information()
    for name in ("email_ci", "username_ci"):
        assert users[name]["unique"] is True
        assert users[name]["collation"]["strength"] == 2
    items = {tuple(spec["key"]) for spec in (await db.items.index_information()).values()}
    for field in ("created_at", "updated_at", "title"):
        assert (("owner_id", 1), (field, -1), ("_id", -1)) in items
        assert ((field, -1), ("_id", -1)) in items  # superusers' lists of everyone's items
    assert (("owner_id", 1), ("tags", 1)) in items
    assert (("owner_id", 1), ("search_terms", 1)) in items


def _count_in(url: str) -> int:
    from pymongo import MongoClient

    with MongoClient(url) as client:
        return client.docstore.things.count_documents({})


def _insert_into(url: str, n: int) -> None:
    from pymongo import MongoClient

    with MongoClient(url) as client:
        client.docstore.things.insert_many([{"n": i} for i in range(n)])


async def test_embedded_server_keeps_data_across_restarts_and_kills(tmp_path: Path) -> None:
    server = await asyncio.to_thread(embedded.start_or_attach, tmp_path)
    assert server.owned
    again = await asyncio.to_thread(embedded.start_or_attach, tmp_path)
    assert (again.owned, again.url) == (False, server.url)  # a second process attaches
    await asyncio.to_thread(_insert_into, server.url, 3)
    await asyncio.to_thread(server.stop)

    restarted = await asyncio.to_thread(embedded.start_or_attach, tmp_path)
    assert restarted.owned
    assert await asyncio.to_thread(_count_in, restarted.url) == 3
    # --sync-on-commit: an acknowledged write survives SIGKILL.
    await asyncio.to_thread(_insert_into, restarted.url, 2)
    assert restarted.process is not None
    restarted.process.kill()
    restarted.process.wait()
    after_kill = await asyncio.to_thread(embedded.start_or_attach, tmp_path)
    try:
        assert await asyncio.to_thread(_count_in, after_kill.url) == 5
    finally:
        await asyncio.to_thread(after_kill.stop)


async def test_app_without_mongodb_url_runs_the_embedded_server(tmp_path: Path) -> None:
    app = create_app(make_settings(None, tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/ready")).status_code == 200
        pid = embedded._read_state(tmp_path / "mongo.json")
        assert pid is not None
    assert (tmp_path / "mongo").is_dir()
    assert (tmp_path / "secret_key").exists() is False  # SECRET_KEY was given
    assert embedded._read_state(tmp_path / "mongo.json") is None  # stopped on shutdown


@pytest.fixture
async def fragile_server(tmp_path: Path) -> AsyncIterator[embedded.EmbeddedServer]:
    server = await asyncio.to_thread(embedded.start, tmp_path / "db")
    yield server
    await asyncio.to_thread(server.stop)  # in case the test failed before stopping it


async def test_outage_is_503_and_recovers(
    tmp_path: Path, fragile_server: embedded.EmbeddedServer
) -> None:
    port = int(fragile_server.url.split(":")[2].split("/")[0])
    app = create_app(make_settings(fragile_server.url, tmp_path, mongodb_timeout_ms=1500))
    async with app.router.lifespan_context(app):
        alice = await make_account(app, "alice")
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            await asyncio.to_thread(fragile_server.stop)
            for path in ("/api/v1/auth/me", "/api/v1/items", "/ready"):
                response = await client.get(path, headers=alice.headers)
                assert response.status_code == 503, path
                assert response.headers["retry-after"]
                assert response.headers["content-type"] == "application/problem+json"
            down = await client.post("/api/v1/items", json={"title": "t"}, headers=alice.headers)
            assert down.status_code == 503

            back = await asyncio.to_thread(embedded.start, tmp_path / "db", port=port)
            try:
                assert (await client.get("/ready")).status_code == 200
                assert (
                    await client.get("/api/v1/auth/me", headers=alice.headers)
                ).status_code == 200
                created = await client.post(
                    "/api/v1/items", json={"title": "t"}, headers=alice.headers
                )
                assert created.status_code == 201
                assert await Item.count() == 1
                assert await User.count() == 1
            finally:
                await asyncio.to_thread(back.stop)


async def test_client_is_timezone_aware(app: FastAPI, alice: object) -> None:
    client: AsyncMongoClient[dict[str, object]] = services_of(app).client
    assert client.codec_options.tz_aware is True


async def test_stalled_database_is_a_quick_503(failing_server: str, tmp_path: Path) -> None:
    settings = make_settings(failing_server, tmp_path, mongodb_socket_timeout_ms=500)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        alice = await make_account(app, "alice")
        await services_of(app).client.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": {"times": 2},  # the read and its one automatic retry
                "data": {
                    "failCommands": ["find"],
                    "blockConnection": True,
                    "blockTimeMS": 5000,
                },
            }
        )
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            started = asyncio.get_running_loop().time()
            stalled = await client.get("/api/v1/auth/me", headers=alice.headers)
            assert asyncio.get_running_loop().time() - started < 3
            assert stalled.status_code == 503
            assert stalled.headers["retry-after"]
            after = await client.get("/api/v1/auth/me", headers=alice.headers)
            assert after.status_code == 200


async def test_cascade_on_a_server_without_transactions(tmp_path: Path) -> None:
    server = await asyncio.to_thread(embedded.start, Path(":memory:"), extra_args=["--standalone"])
    try:
        app = create_app(make_settings(server.url, tmp_path))
        async with app.router.lifespan_context(app):
            assert services_of(app).supports_transactions is False
            alice = await make_account(app, "alice")
            admin = await make_account(app, "admin", superuser=True)
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                for _ in range(3):
                    await client.post("/api/v1/items", json={"title": "t"}, headers=alice.headers)
                deleted = await client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers)
                assert deleted.status_code == 204
            assert await Item.count() == 0
            assert await User.count() == 1
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_killed_embedded_database_heals_itself_under_load(tmp_path: Path) -> None:
    """SIGKILL the embedded server while writes stream in: only 201s and 503s (with
    Retry-After), none slower than the timeouts allow, every acknowledged write there
    afterwards, and service back without restarting the API."""
    settings = make_settings(
        None, tmp_path, mongodb_timeout_ms=1000, mongodb_socket_timeout_ms=2000
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        alice = await make_account(app, "alice")
        transport = httpx2.ASGITransport(app=app)
        acknowledged: list[str] = []
        answers: list[tuple[int, float, str | None]] = []
        killed = asyncio.Event()

        async def write(client: httpx2.AsyncClient) -> None:
            started = time.monotonic()
            response = await client.post(
                "/api/v1/items", json={"title": f"w{len(answers)}"}, headers=alice.headers
            )
            took = time.monotonic() - started
            answers.append((response.status_code, took, response.headers.get("retry-after")))
            if response.status_code == 201:
                acknowledged.append(response.json()["id"])

        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.gather(*(write(client) for _ in range(4)))
                if not killed.is_set() and len(acknowledged) >= 40:
                    state = embedded._read_state(tmp_path / "mongo.json")
                    assert state is not None
                    os.kill(state.pid, signal.SIGKILL)
                    killed_pid = state.pid
                    killed.set()
                    after_kill = len(answers)
                elif killed.is_set() and answers[-1][0] == 201 and len(answers) > after_kill + 8:
                    break  # healed: writes land again
            assert killed.is_set()
            assert (await client.get("/ready")).status_code == 200

            async def restarted() -> bool:  # a new server, started by the API's process
                state = embedded._read_state(tmp_path / "mongo.json")
                return state is not None and state.pid != killed_pid

            await eventually(restarted)
        statuses = {status for status, _, _ in answers}
        assert statuses <= {201, 503}, statuses
        # Often none: PyMongo retries a write once the restarted server answers.
        refused = [answer for answer in answers if answer[0] == 503]
        assert all(retry is not None for _, _, retry in refused)
        assert max(took for _, took, _ in answers) < 1 + 2 + 2  # the timeouts, plus slack
        stored = {
            str(doc["_id"]) async for doc in Item.get_pymongo_collection().find({}, {"_id": 1})
        }
        assert set(acknowledged) <= stored
        print(f"{len(acknowledged)} writes acknowledged, all present; {len(refused)} 503s")
