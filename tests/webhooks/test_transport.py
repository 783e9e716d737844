"""One delivery attempt against a real HTTP receiver on a loopback port: signed as the
reference library verifies, no redirect followed, a slow receiver timed out, a large
answer not read whole, Retry-After and 410 reported, and nothing sent where the
address policy refuses."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import uvicorn
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.core import embedded
from api.webhooks import signing
from api.webhooks.addresses import allowed_networks
from api.webhooks.transport import USER_AGENT, Transport, retry_after

LOOPBACK = allowed_networks("127.0.0.0/8,::1")


class Receiver:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], bytes]] = []

    async def record(self, request: Request) -> Response:
        self.seen.append((request.url.path, dict(request.headers), await request.body()))
        path = request.url.path
        if path == "/redirect":
            return RedirectResponse("/ok", status_code=302)
        if path == "/gone":
            return Response(status_code=410)
        if path == "/busy":
            return Response(status_code=503, headers={"Retry-After": "7"})
        if path == "/slow":
            await asyncio.sleep(5)
        if path == "/big":
            return Response(b"x" * 5_000_000)
        return Response(status_code=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    seen = Receiver()
    app = Starlette(routes=[Route("/{path:path}", seen.record, methods=["POST"])])
    port = embedded.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the receiver did not start"
        await asyncio.sleep(0.01)
    yield seen, port
    server.should_exit = True
    await task


async def test_a_delivery_arrives_signed_and_verifies(receiver: tuple[Receiver, int]) -> None:
    seen, port = receiver
    secret = signing.new_secret()
    body = b'{"type": "item.created", "timestamp": "t", "data": {"item": {"id": "a"}}}'
    transport = Transport(2.0, LOOPBACK)
    try:
        headers = signing.headers([secret], "msg_a", int(time.time()), body)
        outcome = await transport.post(f"http://localhost:{port}/ok", body, headers)
    finally:
        await transport.close()
    assert outcome.delivered, outcome
    [(path, got, sent)] = seen.seen
    assert (path, sent) == ("/ok", body)
    assert got["user-agent"] == USER_AGENT
    assert got["host"] == f"localhost:{port}"  # named as given, connected to as checked
    assert got["content-type"] == "application/json"
    assert Webhook(secret).verify(sent, got)["data"] == {"item": {"id": "a"}}


async def test_redirects_gone_busy_slow_and_big_answers(receiver: tuple[Receiver, int]) -> None:
    seen, port = receiver
    transport = Transport(1.0, LOOPBACK)
    base = f"http://127.0.0.1:{port}"
    try:
        redirected = await transport.post(f"{base}/redirect", b"{}", {})
        gone = await transport.post(f"{base}/gone", b"{}", {})
        busy = await transport.post(f"{base}/busy", b"{}", {})
        started = time.monotonic()
        slow = await transport.post(f"{base}/slow", b"{}", {})
        took = time.monotonic() - started
        big = await transport.post(f"{base}/big", b"{}", {})
    finally:
        await transport.close()
    assert (redirected.status, redirected.delivered) == (302, False)
    assert [path for path, _, _ in seen.seen].count("/ok") == 0  # never followed
    assert gone.gone
    assert not gone.delivered
    assert (busy.status, busy.retry_after_s) == (503, 7.0)
    assert slow.status is None
    assert "timed out" in (slow.error or "")
    assert took < 3
    assert big.status == 200  # read up to the cap, not the whole 5 MB


async def test_nothing_is_sent_where_the_policy_refuses(receiver: tuple[Receiver, int]) -> None:
    seen, port = receiver
    transport = Transport(1.0)  # no network allowed: loopback is refused
    try:
        for host in ("127.0.0.1", "localhost", "2130706433", "[::ffff:127.0.0.1]"):
            outcome = await transport.post(f"http://{host}:{port}/ok", b"{}", {})
            assert outcome.status is None
            assert (outcome.error or "").startswith("refused:"), outcome
    finally:
        await transport.close()
    assert seen.seen == []


async def test_a_closed_port_is_an_error_not_an_exception() -> None:
    transport = Transport(1.0, LOOPBACK)
    try:
        outcome = await transport.post(f"http://127.0.0.1:{embedded.free_port()}/", b"{}", {})
    finally:
        await transport.close()
    assert outcome.status is None
    assert "could not connect" in (outcome.error or "")


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("120") == 120.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == 60.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None
