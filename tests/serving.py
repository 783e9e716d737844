"""The app behind a real Uvicorn server on a free loopback port, inside the test's loop."""

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from fastapi import FastAPI

from api.core import embedded
from api.server import Server, config
from tests.conftest import PASSWORD, TEST_SECRET


@asynccontextmanager
async def uvicorn_serving(app: FastAPI, **options: Any) -> AsyncIterator[tuple[int, Server]]:
    """`app` (already in its lifespan) served as `python -m api.server` would serve it
    (`options`: `api.server.config`'s); yields the port and the server once it listens."""
    port = embedded.free_port()
    server = Server(
        config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", **options)
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.01)
    try:
        yield port, server
    finally:
        server.should_exit = True
        await task


async def signed_in(base: str, name: str) -> str:
    """Sign `name` up (name@example.com) on a running API process and log in: an access
    token."""
    async with httpx2.AsyncClient(base_url=base, timeout=30) as client:
        body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD}
        assert (await client.post("/api/v1/users", json=body)).status_code == 201
        form = {"username": name, "password": PASSWORD}
        token: str = (await client.post("/api/v1/auth/login", data=form)).json()["access_token"]
        return token


def api_env(mongodb_url: str, database: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a `python -m api.server` for a test: its database, the tests'
    secret, cheap hashing; `extra` settings on top (names as in the environment)."""
    return {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": database,
        "SECRET_KEY": TEST_SECRET,
        "BCRYPT_ROUNDS": "4",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


@asynccontextmanager
async def api_process(env: dict[str, str]) -> AsyncIterator[str]:
    """`python -m api.server` as a separate process; yields its base URL once it answers."""
    async with running_api(env) as (base, _):
        yield base


@asynccontextmanager
async def running_api(
    env: dict[str, str], *args: str, without: tuple[str, ...] = (), stderr: int | None = None
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """As `api_process`, with the process too (for tests that kill it); `args` go to
    `python -m api.server`, the variables named in `without` are left unset, and
    `stderr` (say, asyncio.subprocess.PIPE) is where its logs go."""
    port = embedded.free_port()
    environment = {k: v for k, v in {**os.environ, **env}.items() if k not in without}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.server", "--port", str(port), "--log-level", "warning",
        *args, env=environment, stderr=stderr,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx2.AsyncClient(base_url=base) as client, asyncio.timeout(60):
            while True:
                with contextlib.suppress(httpx2.TransportError):
                    if (await client.get("/health")).status_code == 200:
                        break
                assert process.returncode is None, "the API process exited"
                await asyncio.sleep(0.1)
        yield base, process
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
