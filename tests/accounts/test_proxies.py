"""Behind a reverse proxy: X-Forwarded-For names the client only when a trusted proxy
sent it. Through a real Uvicorn server, as `python -m api.server` runs the app."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pydantic
import pytest
from fastapi import FastAPI

from api.config import Settings
from api.server import config
from documents import LoginAttempts
from tests.conftest import app_with, make_settings, services_of
from tests.serving import uvicorn_serving


@asynccontextmanager
async def behind(
    mongodb_url: str, tmp_path: Path, trusted: str | None
) -> AsyncIterator[httpx2.AsyncClient]:
    """A client on loopback to the app served with TRUSTED_PROXIES = `trusted`."""
    overrides = {} if trusted is None else {"trusted_proxies": trusted}
    settings = make_settings(mongodb_url, tmp_path, **overrides)
    async with (
        app_with(settings) as (app, _),
        uvicorn_serving(app, settings=settings) as (port, _),
        httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        yield client


async def counted_clients(client: httpx2.AsyncClient, forwarded_for: str) -> list[str]:
    """Fail a login with `X-Forwarded-For: forwarded_for`; the client counters it made."""
    failed = await client.post(
        "/api/v1/auth/login",
        data={"username": "ghost", "password": "Wrong-pass-1"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    assert failed.status_code == 401
    counters = await LoginAttempts.find({"_id": {"$regex": "^client:"}}).to_list()
    return [counter.id for counter in counters]


async def test_forwarded_for_is_honoured_from_a_trusted_proxy(
    mongodb_url: str, tmp_path: Path
) -> None:
    async with behind(mongodb_url, tmp_path, "127.0.0.1") as client:
        assert await counted_clients(client, "203.0.113.9") == ["client:203.0.113.9"]


async def test_a_client_cannot_pick_its_address_by_prepending_to_the_header(
    mongodb_url: str, tmp_path: Path
) -> None:
    """The proxy appends the peer it saw; what the client sent ahead of it is not trusted."""
    async with behind(mongodb_url, tmp_path, "127.0.0.1, 10.0.0.0/8") as client:
        clients = await counted_clients(client, "198.51.100.1, 203.0.113.9, 10.1.2.3")
        assert clients == ["client:203.0.113.9"]


@pytest.mark.parametrize("trusted", [None, "10.0.0.0/8"], ids=["nobody", "another-host"])
async def test_forwarded_for_is_ignored_from_anyone_else(
    mongodb_url: str, tmp_path: Path, trusted: str | None
) -> None:
    async with behind(mongodb_url, tmp_path, trusted) as client:
        assert await counted_clients(client, "203.0.113.9") == ["client:127.0.0.1"]


def test_the_server_reads_trusted_proxies_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`python -m api.server` passes TRUSTED_PROXIES on to Uvicorn; unset, it trusts none."""
    monkeypatch.chdir(tmp_path)  # no .env of the machine's in the way
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)
    untrusting = config(host="127.0.0.1", port=8000)
    assert untrusting.proxy_headers is False
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
    trusting = config(host="127.0.0.1", port=8000)
    assert (trusting.proxy_headers, trusting.forwarded_allow_ips) == (True, "10.0.0.0/8,192.0.2.1")


@pytest.mark.parametrize(
    "value",
    ["proxy.internal", "10.0.0.0/33", "1.2.3", "10.0.0.1/8"],
    ids=["a-name", "no-such-network", "no-address", "host-bits-uvicorn-would-not-match"],
)
def test_trusted_proxies_must_be_addresses_or_networks(value: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="neither an IP address nor a network"):
        Settings(_env_file=None, trusted_proxies=value)  # type: ignore[call-arg]


@pytest.mark.parametrize("value", ["*", "10.0.0.1, *"])
def test_trusting_everyone_is_refused(value: str) -> None:
    """With `*`, Uvicorn takes the leftmost X-Forwarded-For entry: the client's own words."""
    with pytest.raises(pydantic.ValidationError, match="any caller choose its address"):
        Settings(_env_file=None, trusted_proxies=value)  # type: ignore[call-arg]


async def test_a_forwarded_for_nobody_trusts_is_logged_once(
    app: FastAPI,
    client: httpx2.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Behind a proxy nobody named, every client counts as the proxy: say so in the log."""
    monkeypatch.setattr(services_of(app), "_said", set())
    for _ in range(3):
        await client.post(
            "/api/v1/auth/login",
            data={"username": "ghost", "password": "Wrong-pass-1"},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
    told = [r for r in caplog.records if "TRUSTED_PROXIES is not set" in r.getMessage()]
    assert len(told) == 1
