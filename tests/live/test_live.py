"""WS /api/v1/ws/items: real sockets against the app served by Uvicorn on a free port."""

import asyncio
import json
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from api.core import embedded
from api.main import create_app
from documents import Item
from documents.base import utcnow
from tests.conftest import (
    Account,
    app_with,
    create_item,
    drop_database,
    eventually,
    feed_of,
    make_account,
    make_settings,
    services_of,
    signer_of,
)
from tests.live.conftest import (
    WS_PATH,
    Served,
    close_of,
    next_event,
    serving,
    subscribe,
)
from tests.serving import api_env, api_process, signed_in


async def quiet(ws: ClientConnection, seconds: float = 0.5) -> None:
    """Nothing arrives for a while."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


async def test_rest_writes_arrive_as_events_shaped_like_rest(
    served: Served, client: httpx2.AsyncClient, alice: Account
) -> None:
    async with subscribe(served.ws(alice)) as ws:
        created = await create_item(client, alice, title="first", data={"a": 1})
        url = f"/api/v1/items/{created['id']}"
        patched = (await client.patch(url, json={"data": {"b": 2}}, headers=alice.headers)).json()
        assert (await client.delete(url, headers=alice.headers)).status_code == 204

        events = [await next_event(ws) for _ in range(3)]
    assert [event["event"] for event in events] == ["created", "updated", "deleted"]
    assert events[0]["item"] == created  # exactly the REST representation
    assert events[1]["item"] == patched
    assert events[2]["item"] == {"id": created["id"]}
    assert all(isinstance(event["cursor"], str) for event in events)


async def test_a_direct_database_write_arrives_too(served: Served, alice: Account) -> None:
    """Admin scripts write with Beanie, not through the API: their changes are streamed."""
    async with subscribe(served.ws(alice)) as ws:
        now = utcnow()
        item = Item(owner_id=alice.user.id, title="seeded", created_at=now, updated_at=now)
        await item.insert()
        event = await next_event(ws)
    assert event["event"] == "created"
    assert event["item"]["id"] == str(item.id)
    assert event["item"]["title"] == "seeded"


async def test_other_users_changes_never_arrive(
    served: Served, client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    async with subscribe(served.ws(alice)) as ws:
        bobs = await create_item(client, bob, title="bob's")
        url = f"/api/v1/items/{bobs['id']}"
        await client.patch(url, json={"title": "still bob's"}, headers=bob.headers)
        await client.delete(url, headers=bob.headers)
        mine = await create_item(client, alice, title="alice's")
        event = await next_event(ws)
        assert event["item"]["id"] == mine["id"]  # bob's three changes were never sent
        await quiet(ws)


async def test_superusers_see_everyone_or_one_owner(
    served: Served, client: httpx2.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    admin = await make_account(app, "root", superuser=True)
    async with (
        subscribe(served.ws(admin)) as every,
        subscribe(served.ws(admin, owner_id=bob.id)) as one,
    ):
        await create_item(client, alice, title="a")
        await create_item(client, bob, title="b")
        assert [(await next_event(every))["item"]["title"] for _ in range(2)] == ["a", "b"]
        assert (await next_event(one))["item"]["title"] == "b"
        await quiet(one)


async def test_others_items_are_refused_to_non_superusers(
    served: Served, alice: Account, bob: Account
) -> None:
    async with connect(served.ws(alice, owner_id=bob.id)) as ws:
        code, reason = await close_of(ws)
    assert code == 1008
    assert "superusers" in reason


async def test_fields_and_tag_are_applied_on_the_server(
    served: Served, client: httpx2.AsyncClient, alice: Account
) -> None:
    async with subscribe(served.ws(alice, fields="title", tag="Work")) as ws:
        await create_item(client, alice, title="home", tags=["home"])
        work = await create_item(client, alice, title="job", tags=["work", "urgent"])
        event = await next_event(ws)
        assert event["item"] == {"id": work["id"], "title": "job"}
        await client.delete(f"/api/v1/items/{work['id']}", headers=alice.headers)
        deleted = await next_event(ws)  # routed by the item's tags before deletion
        assert (deleted["event"], deleted["item"]) == ("deleted", {"id": work["id"]})


async def test_the_token_may_come_in_a_first_message(
    served: Served, client: httpx2.AsyncClient, alice: Account
) -> None:
    async with connect(served.ws()) as ws:
        await ws.send(json.dumps({"type": "auth", "token": alice.token}))
        assert (await next_event(ws))["event"] == "subscribed"
        created = await create_item(client, alice)
        assert (await next_event(ws))["item"]["id"] == created["id"]


@pytest.mark.parametrize(
    ("params", "first_message", "reason"),
    [
        ({"token": "not-a-jwt"}, None, "invalid or expired"),
        ({}, "hello", "first message"),
        ({}, json.dumps({"type": "auth"}), "first message"),
        ({"token": "{alice}", "fields": "password"}, None, "fields takes names"),
        ({"token": "{alice}", "owner_id": "nope"}, None, "owner_id"),
        ({"token": "{alice}", "resume_after": "forged.cursor"}, None, "resume_after"),
    ],
)
async def test_bad_requests_close_with_1008_and_a_reason(
    served: Served,
    alice: Account,
    params: dict[str, str],
    first_message: str | None,
    reason: str,
) -> None:
    params = {key: value.replace("{alice}", alice.token) for key, value in params.items()}
    async with connect(served.ws(**params)) as ws:
        if first_message is not None:
            await ws.send(first_message)
        code, text = await close_of(ws)
    assert code == 1008
    assert reason in text


async def test_no_auth_message_in_time_closes(served: Served, app: FastAPI) -> None:
    services_of(app).settings.live_auth_timeout_s = 0.3
    async with connect(served.ws()) as ws:
        assert await close_of(ws) == (1008, "send a token within 0.3 s")


async def test_logging_out_closes_the_socket(
    served: Served, client: httpx2.AsyncClient, alice: Account
) -> None:
    async with subscribe(served.ws(alice)) as ws:
        response = await client.post("/api/v1/auth/logout", headers=alice.headers)
        assert response.status_code == 204
        assert await close_of(ws) == (1008, "access token revoked")


async def _access_token(client: httpx2.AsyncClient, owner: Account, scopes: list[str]) -> Any:
    body = {"name": "watcher", "scopes": scopes}
    response = await client.post("/api/v1/auth/tokens", json=body, headers=owner.headers)
    assert response.status_code == 201
    return response.json()


async def test_an_access_token_watches_and_revoking_it_closes_the_socket(
    served: Served, client: httpx2.AsyncClient, alice: Account
) -> None:
    token = await _access_token(client, alice, ["items:read"])
    bearer = {"Authorization": f"Bearer {token['token']}"}
    async with subscribe(served.ws(), additional_headers=bearer) as ws:
        made = await create_item(client, alice)
        assert (await next_event(ws))["item"]["id"] == made["id"]
        revoked = await client.delete(f"/api/v1/auth/tokens/{token['id']}", headers=alice.headers)
        assert revoked.status_code == 204
        assert await close_of(ws) == (1008, "access token revoked")


async def test_an_access_token_is_refused_in_the_url(
    served: Served, client: httpx2.AsyncClient, alice: Account
) -> None:
    """URLs are logged (by the server, by proxies): a long-lived token must not be in one."""
    token = await _access_token(client, alice, ["items:read"])
    url = f"{served.url}{WS_PATH}?" + str(httpx2.QueryParams(token=token["token"]))
    async with connect(url) as ws:
        code, reason = await close_of(ws)
    assert code == 1008
    assert "never in the URL" in reason


async def test_an_access_token_without_items_read_cannot_watch(
    served: Served, client: httpx2.AsyncClient, alice: Account
) -> None:
    token = await _access_token(client, alice, ["items:write", "account:read"])
    async with connect(served.ws()) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token["token"]}))
        assert await close_of(ws) == (1008, "this access token lacks the scope items:read")


async def test_an_expiring_token_closes_the_socket(
    served: Served, app: FastAPI, alice: Account
) -> None:
    signer = signer_of(app)
    lifetime, signer.lifetime_s = signer.lifetime_s, 2
    try:
        token = signer.issue(alice.id, 0, alice.session_id)
    finally:
        signer.lifetime_s = lifetime
    started = time.monotonic()
    async with connect(served.ws(token=token)) as ws:
        code, reason = await close_of(ws)
    assert code == 1008
    assert reason.startswith("access token expired")
    assert 0.5 < time.monotonic() - started < 4


async def test_resume_replays_exactly_what_was_missed(
    served: Served, client: httpx2.AsyncClient, alice: Account
) -> None:
    async with subscribe(served.ws(alice)) as ws:
        first = await create_item(client, alice, title="seen")
        cursor = (await next_event(ws))["cursor"]
    missed = [await create_item(client, alice, title=f"missed {n}") for n in range(3)]
    await client.delete(f"/api/v1/items/{first['id']}", headers=alice.headers)

    async with subscribe(served.ws(alice, resume_after=cursor)) as ws:
        replayed = [await next_event(ws) for _ in range(4)]
        live = await create_item(client, alice, title="live")
        after = await next_event(ws)
        await quiet(ws)
    assert [e["item"]["id"] for e in replayed] == [*(m["id"] for m in missed), first["id"]]
    assert [e["event"] for e in replayed] == ["created"] * 3 + ["deleted"]
    assert after["item"]["id"] == live["id"]  # no duplicate at the seam, nothing lost


async def test_a_slow_consumer_is_closed_with_1013(
    served: Served, app: FastAPI, alice: Account
) -> None:
    feed = feed_of(app)
    assert feed is not None
    feed.queue_size = 2
    # A client that reads nothing, through a small receive buffer: the server's sends block,
    # this socket's queue fills, and the socket is closed instead of memory growing.
    host, port = served.url.removeprefix("ws://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    async with subscribe(served.ws(alice), sock=sock, max_queue=1) as ws:
        now = utcnow()
        items = [
            Item(
                owner_id=alice.user.id,
                title=f"{n}",
                data={"noise": secrets.token_urlsafe(45_000)},  # does not compress away
                created_at=now,
                updated_at=now,
            )
            for n in range(100)
        ]
        await Item.insert_many(items)
        async with asyncio.timeout(10):
            while feed.subscribers:  # noqa: ASYNC110 - the feed has no event for this
                await asyncio.sleep(0.05)
        code, reason = await close_of(ws, within_s=30)
    assert code == 1013
    assert reason == "too slow: more than 2 changes unread"


async def test_pings_drop_a_peer_that_stopped_answering(app: FastAPI, alice: Account) -> None:
    feed = feed_of(app)
    assert feed is not None
    async with (
        serving(app, ping_interval=0.2) as served,
        subscribe(served.ws(alice), close_timeout=0.5) as ws,
    ):
        await asyncio.sleep(0.6)  # idle, and kept alive: pings are answered
        assert len(feed.subscribers) == 1
        ws.transport.pause_reading()  # the peer goes silent: no pongs any more
        async with asyncio.timeout(5):
            while feed.subscribers:  # noqa: ASYNC110 - the feed has no event for this
                await asyncio.sleep(0.05)


async def test_shutdown_closes_sockets_with_1001(served: Served, alice: Account) -> None:
    async with subscribe(served.ws(alice)) as ws:
        served.server.should_exit = True
        code, _ = await close_of(ws)
    assert code == 1001


async def test_a_cursor_older_than_the_history_gets_resync(tmp_path: Path) -> None:
    """A server keeping only a few changes: resuming from a pruned one cannot replay."""
    small = await asyncio.to_thread(
        embedded.start, Path(":memory:"), extra_args=["--oplog-max-entries", "5"]
    )
    try:
        async with app_with(make_settings(small.url, tmp_path, live_feed=True)) as (app, client):
            alice = await make_account(app, "alice")
            async with serving(app) as served, subscribe(served.ws(alice)) as ws:
                await create_item(client, alice)
                cursor = (await next_event(ws))["cursor"]
            # The server prunes its history every 1,000 changes: make it forget the cursor.
            now = utcnow()
            await Item.insert_many(
                [Item(owner_id=alice.user.id, title="x", created_at=now, updated_at=now)] * 1100
            )
            async with (
                serving(app) as served,
                subscribe(served.ws(alice, resume_after=cursor)) as ws,
            ):
                assert await next_event(ws) == {"event": "resync"}
                assert await close_of(ws) == (1000, "resync: refetch by REST")
    finally:
        await asyncio.to_thread(small.stop)


async def test_without_change_streams_the_feed_says_so(tmp_path: Path) -> None:
    standalone = await asyncio.to_thread(
        embedded.start, Path(":memory:"), extra_args=["--standalone"]
    )
    try:
        async with app_with(make_settings(standalone.url, tmp_path, live_feed=True)) as (app, _):
            alice = await make_account(app, "alice")
            async with serving(app) as served, connect(served.ws(alice)) as ws:
                code, reason = await close_of(ws)
        assert code == 1011
        assert "change streams" in reason
    finally:
        await asyncio.to_thread(standalone.stop)


async def test_a_write_through_one_process_reaches_a_subscriber_of_another(
    mongodb_url: str, tmp_path: Path
) -> None:
    settings = make_settings(mongodb_url, tmp_path)
    env = api_env(mongodb_url, settings.mongodb_db, tmp_path)
    try:
        async with (
            api_process(env) as first,
            api_process(env) as second,
            httpx2.AsyncClient(base_url=first) as client,
        ):
            token = await signed_in(first, "carol")
            headers = {"Authorization": f"Bearer {token}"}
            ws_url = f"{second.replace('http', 'ws')}{WS_PATH}?token={token}"
            async with subscribe(ws_url) as ws:
                response = await client.post(
                    "/api/v1/items", json={"title": "from the first"}, headers=headers
                )
                event = await next_event(ws, within_s=10)
        assert event["event"] == "created"
        assert event["item"] == response.json()
    finally:
        await drop_database(settings)


async def test_the_feed_is_documented(client: httpx2.AsyncClient) -> None:
    openapi = (await client.get("/openapi.json")).json()
    operation = openapi["paths"][WS_PATH]["get"]
    assert "101" in operation["responses"]
    assert {p["name"] for p in operation["parameters"]} >= {"token", "resume_after", "fields"}
    asyncapi = (await client.get("/asyncapi.json")).json()
    assert asyncapi["asyncapi"].startswith("3.")
    assert asyncapi["channels"]["items"]["address"] == WS_PATH
    payload = asyncapi["components"]["schemas"]["ItemChange"]["properties"]
    events = ["created", "updated", "deleted", "restored", "shared", "unshared"]
    assert payload["event"]["enum"] == events
    subscribed = asyncapi["components"]["schemas"]["Subscribed"]["properties"]
    assert subscribed["event"]["const"] == "subscribed"


async def test_a_process_may_serve_no_feed(mongodb_url: str, tmp_path: Path) -> None:
    async with app_with(make_settings(mongodb_url, tmp_path, live_feed=False)) as (app, _):
        alice = await make_account(app, "alice")
        async with serving(app) as served, connect(served.ws(alice)) as ws:
            assert await close_of(ws) == (1011, "live changes are turned off on this server")


async def test_with_the_database_away_sockets_are_told_to_come_back(tmp_path: Path) -> None:
    server = await asyncio.to_thread(embedded.start, Path(":memory:"))
    app = create_app(make_settings(server.url, tmp_path, live_feed=True, mongodb_timeout_ms=1500))
    try:
        async with app.router.lifespan_context(app):  # its database goes away with the server
            alice = await make_account(app, "alice")
            async with serving(app) as served:
                await asyncio.to_thread(server.stop)
                async with connect(served.ws(alice)) as ws:
                    code, reason = await close_of(ws)
        assert code == 1013
        assert reason.startswith("the database is unavailable")
    finally:
        await asyncio.to_thread(server.stop)


def skipped_count(metrics_text: str, where: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(f'docstore_unrenderable_documents_total{{where="{where}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_change_the_feed_cannot_route_is_logged_counted_and_skipped(
    served: Served,
    app: FastAPI,
    client: httpx2.AsyncClient,
    alice: Account,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another tool writes an item without owner_id: the watcher lives on."""
    async with subscribe(served.ws(alice)) as ws:
        stray = await Item.get_pymongo_collection().insert_one({"title": "no owner"})
        after = await create_item(client, alice, title="after the stray one")
        event = await next_event(ws)
    assert event["item"]["id"] == after["id"]
    assert any(str(stray.inserted_id) in record.getMessage() for record in caplog.records)
    assert skipped_count((await client.get("/metrics")).text, "live") == 1
    assert (await client.get("/ready")).status_code == 200


async def test_an_item_a_socket_cannot_render_is_skipped_for_it(
    served: Served, client: httpx2.AsyncClient, alice: Account
) -> None:
    """Routable (it has an owner) but not an item: that event is skipped, the socket stays."""
    async with subscribe(served.ws(alice)) as ws:
        now = utcnow()
        odd = {"owner_id": alice.user.id, "title": 123, "created_at": now, "updated_at": now}
        await Item.get_pymongo_collection().insert_one(odd)
        after = await create_item(client, alice, title="after the odd one")
        event = await next_event(ws)
    assert event["item"]["id"] == after["id"]
    assert skipped_count((await client.get("/metrics")).text, "live") == 1


async def test_a_failed_watcher_restarts_and_ready_says_so_meanwhile(
    served: Served, app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    feed = feed_of(app)
    assert feed is not None
    opening = feed._open

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the watcher")

    feed._dispatch = broken  # type: ignore[method-assign]  # the next change kills the loop
    feed._open = broken  # type: ignore[method-assign]  # and it cannot come back yet
    await create_item(client, alice)

    async def is_down() -> bool:
        return not feed.up

    async def is_up() -> bool:
        return feed.up

    await eventually(is_down)
    down = await client.get("/ready")
    assert (down.status_code, down.headers["retry-after"]) == (503, "5")
    assert "live feed" in down.json()["detail"]
    async with connect(served.ws(alice)) as ws:
        assert (await close_of(ws))[0] == 1013  # come back in a moment
    del feed._dispatch, feed._open  # the bug is fixed: the class's methods again
    assert feed._open == opening
    await eventually(is_up)
    assert (await client.get("/ready")).status_code == 200
    async with subscribe(served.ws(alice)) as ws:
        later = await create_item(client, alice, title="after the restart")
        assert (await next_event(ws))["item"]["id"] == later["id"]


async def test_a_list_skips_what_it_cannot_show_and_one_item_says_why(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    """A superuser listing everyone's items meets a document another tool wrote."""
    good = await create_item(client, alice, title="fine")
    stray = await Item.get_pymongo_collection().insert_one({"title": 5, "owner_id": "nobody"})
    listed = await client.get("/api/v1/items", headers=admin.headers)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [good["id"]]
    one = await client.get(f"/api/v1/items/{stray.inserted_id}", headers=admin.headers)
    assert (one.status_code, one.json()["type"]) == (409, "urn:docstore:problem:unreadable-item")
    counted = (await client.get("/metrics")).text
    assert (skipped_count(counted, "list"), skipped_count(counted, "item")) == (1, 1)


async def test_a_role_change_keeps_what_is_still_allowed_and_ends_what_is_not(
    served: Served, app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    """The account watch asks the access policy again: alice, promoted, keeps her own
    items' socket; a superuser watching everyone's, demoted, is closed."""
    root = await make_account(app, "root", superuser=True)
    other_root = await make_account(app, "toor", superuser=True)
    async with subscribe(served.ws(alice)) as own, subscribe(served.ws(root)) as every:
        for user, superuser in ((alice, True), (root, False)):
            changed = await client.patch(
                f"/api/v1/users/{user.id}",
                json={"is_superuser": superuser},
                headers=other_root.headers,
            )
            assert changed.status_code == 200, changed.text
        assert await close_of(every) == (1008, "no longer allowed to watch these items")
        made = await create_item(client, alice, title="still watched")
        assert (await next_event(own))["item"]["id"] == made["id"]
