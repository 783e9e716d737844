"""The live feed follows access: shared, updated with the new access, unshared, and
nothing more of an item once its share has ended, live and on a replay."""

import asyncio
import contextlib
import json
from typing import Any

import httpx2
import pytest
from websockets.asyncio.client import ClientConnection

from tests.conftest import Account, create_item
from tests.live.conftest import Served, next_event, subscribe

ITEMS = "/api/v1/items"


async def share(
    client: httpx2.AsyncClient, owner: Account, item: dict[str, Any], user: str, role: str
) -> None:
    url = f"{ITEMS}/{item['id']}/shares"
    response = await client.post(url, json={"user": user, "role": role}, headers=owner.headers)
    assert response.status_code in (200, 201), response.text


async def unshare(
    client: httpx2.AsyncClient, by: Account, item: dict[str, Any], user: Account
) -> None:
    url = f"{ITEMS}/{item['id']}/shares/{user.id}"
    assert (await client.delete(url, headers=by.headers)).status_code == 204


async def nothing_more(ws: ClientConnection, within_s: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        await next_event(ws, within_s)


def seen(event: dict[str, Any]) -> tuple[str, str, str | None]:
    item = event["item"]
    return event["event"], item.get("title", item["id"]), item.get("access")


async def test_a_sharee_sees_access_begin_change_and_end(
    served: Served, client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    async with subscribe(served.ws(bob)) as ws, subscribe(served.ws(alice)) as owner_ws:
        # Written after subscribing: a change made before may still reach a new socket
        # (the feed lists from where its watcher stands), so no test counts on that.
        item = await create_item(client, alice, title="trip")
        url = f"{ITEMS}/{item['id']}"
        assert seen(await next_event(owner_ws)) == ("created", "trip", "owner")
        await share(client, alice, item, "bob", "viewer")
        assert seen(await next_event(ws)) == ("shared", "trip", "viewer")
        await client.patch(url, json={"title": "trip v2"}, headers=alice.headers)
        assert seen(await next_event(ws)) == ("updated", "trip v2", "viewer")
        await share(client, alice, item, "bob", "editor")
        assert seen(await next_event(ws)) == ("updated", "trip v2", "editor")
        await unshare(client, alice, item, bob)
        assert seen(await next_event(ws)) == ("unshared", item["id"], None)
        await client.patch(url, json={"title": "trip v3"}, headers=alice.headers)
        await client.delete(url, headers=alice.headers)
        # The owner saw their own item change; the sharee nothing of it any more.
        owner_events = [seen(await next_event(owner_ws)) for _ in range(2)]
        assert owner_events == [("updated", "trip v2", "owner"), ("updated", "trip v3", "owner")]
        assert seen(await next_event(owner_ws)) == ("deleted", item["id"], None)
        await nothing_more(ws)


async def test_someone_elses_share_sends_nothing(
    served: Served, client: httpx2.AsyncClient, alice: Account, bob: Account, app: Any
) -> None:
    from tests.conftest import make_account

    carol = await make_account(app, "carol")
    async with subscribe(served.ws(bob)) as ws, subscribe(served.ws(alice)) as owner_ws:
        item = await create_item(client, alice, title="plan")
        assert seen(await next_event(owner_ws)) == ("created", "plan", "owner")
        await share(client, alice, item, "bob", "viewer")
        assert seen(await next_event(ws)) == ("shared", "plan", "viewer")
        await share(client, alice, item, "carol", "editor")
        await unshare(client, alice, item, carol)
        await client.patch(f"{ITEMS}/{item['id']}", json={"title": "plan b"}, headers=alice.headers)
        # The next event either gets is the content change: the share changes were
        # about someone else.
        assert seen(await next_event(ws)) == ("updated", "plan b", "viewer")
        assert seen(await next_event(owner_ws)) == ("updated", "plan b", "owner")


async def test_the_owner_deleting_an_item_tells_its_sharees(
    served: Served, client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    async with subscribe(served.ws(bob)) as ws:
        item = await create_item(client, alice, title="old")
        await share(client, alice, item, "bob", "editor")
        assert seen(await next_event(ws)) == ("shared", "old", "editor")
        assert (
            await client.delete(f"{ITEMS}/{item['id']}", headers=alice.headers)
        ).status_code == 204
        assert seen(await next_event(ws)) == ("deleted", item["id"], None)


async def test_a_replay_never_hands_over_what_was_unshared_meanwhile(
    served: Served, client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    """Bob's socket drops; while he is away Alice writes a secret into the item and
    then ends his share. His resume tells him the share ended, and nothing of the
    secret (the change stream still holds it, with him among its readers then)."""
    async with subscribe(served.ws(bob)) as ws:
        item = await create_item(client, alice, title="draft")
        other = await create_item(client, alice, title="still shared")
        await share(client, alice, item, "bob", "viewer")
        await share(client, alice, other, "bob", "viewer")
        assert [seen(await next_event(ws))[0] for _ in range(2)] == ["shared", "shared"]
        await client.patch(
            f"{ITEMS}/{other['id']}", json={"title": "still shared 2"}, headers=alice.headers
        )
        cursor = (await next_event(ws))["cursor"]
    url = f"{ITEMS}/{item['id']}"
    await client.patch(url, json={"title": "the secret"}, headers=alice.headers)
    await client.patch(
        f"{ITEMS}/{other['id']}", json={"title": "still shared 3"}, headers=alice.headers
    )
    await unshare(client, alice, item, bob)
    async with subscribe(served.ws(bob, resume_after=cursor)) as ws:
        replayed = [await next_event(ws) for _ in range(2)]
        await nothing_more(ws)
    assert [seen(event) for event in replayed] == [
        ("updated", "still shared 3", "viewer"),
        ("unshared", item["id"], None),
    ]
    assert "the secret" not in json.dumps(replayed)


async def test_a_burst_of_sharees_each_get_their_own_access(
    served: Served, client: httpx2.AsyncClient, alice: Account, app: Any
) -> None:
    from tests.conftest import make_account

    people = [await make_account(app, f"watcher{n}") for n in range(6)]
    sockets = [subscribe(served.ws(person)) for person in people]
    opened = [await socket.__aenter__() for socket in sockets]
    try:
        item = await create_item(client, alice, title="busy")
        for n, person in enumerate(people):
            role = "editor" if n % 2 else "viewer"
            await share(client, alice, item, person.user.username, role)
        shared = await asyncio.gather(*(next_event(ws) for ws in opened))
        assert {event["event"] for event in shared} == {"shared"}
        await client.patch(f"{ITEMS}/{item['id']}", json={"title": "busy 2"}, headers=alice.headers)
        events = await asyncio.gather(*(next_event(ws) for ws in opened))
    finally:
        for socket in sockets:
            await socket.__aexit__(None, None, None)
    assert [seen(event) for event in events] == [
        ("updated", "busy 2", "editor" if n % 2 else "viewer") for n in range(len(people))
    ]


async def test_a_replay_checks_access_as_it_is_now(
    app: Any, client: httpx2.AsyncClient, alice: Account, bob: Account, monkeypatch: Any
) -> None:
    """Where the server keeps true post-images (a real mongod), a replayed change shows
    the item as it was, to those who could read it then: it is sent only to a
    subscriber who may still read it now."""
    from bson import ObjectId
    from bson.timestamp import Timestamp

    from api.items import policy
    from api.live.feed import Change, Position
    from api.live.routes import _readable_now
    from tests.conftest import feed_of

    feed = feed_of(app)
    assert feed is not None
    kept = await create_item(client, alice, title="kept")
    ended = await create_item(client, alice, title="ended")
    for item in (kept, ended):
        await share(client, alice, item, "bob", "viewer")
    await unshare(client, alice, ended, bob)
    then = policy.Acl(alice.user.id, {bob.user.id: policy.Role.viewer})

    def change(item: dict[str, Any], seconds: int) -> Change:
        position = Position(f"t{seconds}", Timestamp(seconds, 1))
        document = {**item, "_id": ObjectId(item["id"]), "title": f"{item['title']} then"}
        return Change(
            "updated", ObjectId(item["id"]), then, then, frozenset(), frozenset(), document,
            position,
        )  # fmt: skip

    async def replay(start: Position, limit: int) -> Any:
        for n, item in enumerate((ended, kept, ended)):
            yield change(item, 10 + n)

    monkeypatch.setattr(feed, "_replay", replay)
    subscriber = feed.subscribe(None, bob.user.id, policy.readable(bob.user), (), None)
    try:
        start = Position("t0", Timestamp(1, 1))
        changes = feed.changes(subscriber, start, 100, readable_now=_readable_now(bob.user))
        sent = []
        with contextlib.suppress(TimeoutError):
            while True:  # the replay, then whatever live changes the setup left queued
                sent.append(await asyncio.wait_for(anext(changes), 0.5))
    finally:
        feed.unsubscribe(subscriber)
    shown = [(seen.change.item_id, seen.change.document["title"]) for seen in sent if seen.access]
    assert (ObjectId(kept["id"]), "kept then") in shown
    assert all(title != "ended then" for _, title in shown), shown
