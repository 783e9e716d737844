"""The live feed and the trash: `deleted` as an item goes there, `restored` as it comes
back, to its owner and to its sharees with their roles."""

import httpx2

from tests.conftest import Account, create_item
from tests.live.conftest import Served, next_event, subscribe
from tests.live.test_live_sharing import nothing_more, seen, share

ITEMS = "/api/v1/items"


def at(item: dict[str, str]) -> str:
    return f"{ITEMS}/{item['id']}"


async def test_the_feed_says_deleted_then_restored(
    served: Served, client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    async with subscribe(served.ws(bob)) as ws, subscribe(served.ws(alice)) as owner_ws:
        # (Written after subscribing: a change made before may still reach a new socket.)
        item = await create_item(client, alice, title="shared plans")
        assert seen(await next_event(owner_ws)) == ("created", "shared plans", "owner")
        await share(client, alice, item, "bob", "viewer")
        assert seen(await next_event(ws)) == ("shared", "shared plans", "viewer")
        assert (await client.delete(at(item), headers=alice.headers)).status_code == 204
        for socket in (ws, owner_ws):
            assert seen(await next_event(socket)) == ("deleted", item["id"], None)
        assert (await client.post(f"{at(item)}/restore", headers=alice.headers)).status_code == 200
        assert seen(await next_event(ws)) == ("restored", "shared plans", "viewer")
        assert seen(await next_event(owner_ws)) == ("restored", "shared plans", "owner")
        await client.patch(at(item), json={"title": "edited"}, headers=alice.headers)
        assert seen(await next_event(ws)) == ("updated", "edited", "viewer")
        await nothing_more(ws)


async def test_restoring_a_version_reaches_the_feed_as_an_update(
    served: Served, client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    """A version restore is a change like a patch: readers see `updated` with the old
    content back, once; the history write itself sends nothing."""
    async with subscribe(served.ws(bob)) as ws:
        item = await create_item(client, alice, title="first draft")
        await client.patch(at(item), json={"title": "second draft"}, headers=alice.headers)
        await share(client, alice, item, "bob", "editor")
        assert seen(await next_event(ws)) == ("shared", "second draft", "editor")
        back = await client.post(f"{at(item)}/versions/1/restore", headers=bob.headers)
        assert back.status_code == 200, back.text
        assert seen(await next_event(ws)) == ("updated", "first draft", "editor")
        await nothing_more(ws)
