"""`/webhooks` over HTTP: what is stored and shown, the secret shown once and stored
sealed, URLs refused where the address policy says, other accounts' webhooks a 404,
the per-account limit under a burst, and personal tokens' scope."""

import asyncio
from typing import Any

import httpx2
import pytest
from bson import ObjectId

from documents import Webhook
from documents.webhook import EVENT_TYPES
from tests.conftest import Account
from tests.webhooks.conftest import make_webhook

PUBLIC = "https://93.184.215.14/hooks/docstore"  # a public address: no lookup needed
BASE = "/api/v1/webhooks"


async def test_a_webhook_is_made_shown_changed_and_deleted(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    made = await make_webhook(client, alice, PUBLIC, description="indexer")
    assert made["secret"].startswith("whsec_")
    assert made["events"] == list(EVENT_TYPES)  # all of them by default
    assert (made["enabled"], made["disabled_reason"], made["description"]) == (
        True,
        None,
        "indexer",
    )
    shown = (await client.get(f"{BASE}/{made['id']}", headers=alice.headers)).json()
    assert "secret" not in shown
    assert shown == {k: v for k, v in made.items() if k != "secret"}
    listed = (await client.get(BASE, headers=alice.headers)).json()
    assert [hook["id"] for hook in listed["items"]] == [made["id"]]
    changed = await client.patch(
        f"{BASE}/{made['id']}",
        json={"events": ["item.created"], "enabled": False},
        headers=alice.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["item.created"]
    assert (changed.json()["enabled"], changed.json()["disabled_reason"]) == (
        False,
        "disabled by its owner",
    )
    back_on = await client.patch(
        f"{BASE}/{made['id']}", json={"enabled": True}, headers=alice.headers
    )
    assert (back_on.json()["enabled"], back_on.json()["disabled_reason"]) == (True, None)
    assert (await client.delete(f"{BASE}/{made['id']}", headers=alice.headers)).status_code == 204
    assert (await client.get(f"{BASE}/{made['id']}", headers=alice.headers)).status_code == 404


async def test_the_secret_is_stored_sealed_and_rotation_shows_a_new_one(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    made = await make_webhook(client, alice, PUBLIC)
    stored = await Webhook.get_pymongo_collection().find_one({"_id": ObjectId(made["id"])})
    assert stored is not None
    secret_key = made["secret"].removeprefix("whsec_")
    assert secret_key not in str(stored)
    rotated = await client.post(f"{BASE}/{made['id']}/rotate-secret", headers=alice.headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in (made["secret"], None)
    assert rotated.json()["previous_valid_until"] is not None
    stored = await Webhook.get_pymongo_collection().find_one({"_id": ObjectId(made["id"])})
    assert stored is not None
    assert [s["retires_at"] is None for s in stored["secrets"]] == [True, False]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost/hook",  # a name that resolves to loopback
        "http://2130706433/hook",  # 127.0.0.1 spelled as one number
        "http://0177.0.0.1/hook",  # ... and in octal
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
        "http://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "http://10.0.0.5/hook",
        "http://100.64.0.1/hook",  # CGNAT
        "http://[fd00::1]/hook",  # unique local
        "http://user:pass@93.184.215.14/hook",
        "ftp://93.184.215.14/hook",
    ],
)
async def test_a_url_that_is_not_public_is_refused_and_nothing_is_stored(
    client: httpx2.AsyncClient, alice: Account, url: str
) -> None:
    response = await client.post(BASE, json={"url": url}, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    made = await make_webhook(client, alice, PUBLIC)
    changed = await client.patch(f"{BASE}/{made['id']}", json={"url": url}, headers=alice.headers)
    assert changed.status_code == 422, changed.text
    stored = [hook async for hook in Webhook.get_pymongo_collection().find()]
    assert [hook["url"] for hook in stored] == [PUBLIC]


@pytest.mark.parametrize(
    "body",
    [
        {"url": PUBLIC, "events": []},
        {"url": PUBLIC, "events": ["item.created", "item.created"]},
        {"url": PUBLIC, "events": ["item.exploded"]},
        {"url": PUBLIC, "description": "x" * 501},
        {"url": PUBLIC, "surprise": 1},
        {"url": None},
        {},
    ],
)
async def test_bad_bodies_are_a_422(
    client: httpx2.AsyncClient, alice: Account, body: dict[str, Any]
) -> None:
    response = await client.post(BASE, json=body, headers=alice.headers)
    assert response.status_code == 422, response.text


async def test_null_in_a_change_is_a_422(client: httpx2.AsyncClient, alice: Account) -> None:
    made = await make_webhook(client, alice, PUBLIC)
    for field in ("url", "events", "description", "enabled"):
        response = await client.patch(
            f"{BASE}/{made['id']}", json={field: None}, headers=alice.headers
        )
        assert response.status_code == 422, (field, response.text)


async def test_another_accounts_webhook_is_a_404_everywhere(
    client: httpx2.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    made = await make_webhook(client, alice, PUBLIC)
    hook = f"{BASE}/{made['id']}"
    for stranger in (bob, admin):
        for method, path, body in [
            ("GET", hook, None),
            ("PATCH", hook, {"description": "mine now"}),
            ("DELETE", hook, None),
            ("POST", f"{hook}/rotate-secret", None),
            ("POST", f"{hook}/ping", None),
            ("GET", f"{hook}/deliveries", None),
            ("POST", f"{hook}/deliveries/msg_{'a' * 26}/retry", None),
        ]:
            response = await client.request(method, path, json=body, headers=stranger.headers)
            assert response.status_code == 404, (method, path, response.text)
        listed = (await client.get(BASE, headers=stranger.headers)).json()
        assert listed["items"] == []
    stored = await Webhook.get_pymongo_collection().find_one({"_id": ObjectId(made["id"])})
    assert stored is not None
    assert stored["description"] == ""


async def test_a_burst_of_creations_stops_exactly_at_the_limit(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    answers = await asyncio.gather(
        *(client.post(BASE, json={"url": PUBLIC}, headers=alice.headers) for _ in range(40))
    )
    assert sorted(answer.status_code for answer in answers) == [201] * 20 + [409] * 20
    count = await Webhook.get_pymongo_collection().count_documents({})
    assert count == 20


async def test_a_personal_token_needs_the_webhooks_scope(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    async def token(scopes: list[str]) -> dict[str, str]:
        made = await client.post(
            "/api/v1/auth/tokens", json={"name": "ci", "scopes": scopes}, headers=alice.headers
        )
        assert made.status_code == 201, made.text
        return {"Authorization": f"Bearer {made.json()['token']}"}

    reader = await token(["items:read", "items:write", "items:share", "account:read"])
    refused = await client.post(BASE, json={"url": PUBLIC}, headers=reader)
    assert refused.status_code == 403
    assert (await client.get(BASE, headers=reader)).status_code == 403
    writer = await token(["webhooks:write"])
    assert (await client.post(BASE, json={"url": PUBLIC}, headers=writer)).status_code == 201
    assert len((await client.get(BASE, headers=writer)).json()["items"]) == 1


async def test_a_webhook_another_tool_mangled_is_a_clear_answer_not_a_500(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    odd = await make_webhook(client, alice, PUBLIC)
    fine = await make_webhook(client, alice, PUBLIC, description="fine")
    await Webhook.get_pymongo_collection().update_one(
        {"_id": ObjectId(odd["id"])},
        {"$set": {"events": ["item.exploded"], "secrets.0.retires_at": "tomorrow"}},
    )
    shown = await client.get(f"{BASE}/{odd['id']}", headers=alice.headers)
    assert shown.status_code == 409, shown.text
    assert shown.json()["type"] == "urn:docstore:problem:unreadable-webhook"
    listed = (await client.get(BASE, headers=alice.headers)).json()
    assert [hook["id"] for hook in listed["items"]] == [fine["id"]]
    rotated = await client.post(f"{BASE}/{odd['id']}/rotate-secret", headers=alice.headers)
    assert rotated.status_code == 200, rotated.text  # the odd secret counts as retired
    assert rotated.json()["previous_valid_until"] is None
    assert (await client.delete(f"{BASE}/{odd['id']}", headers=alice.headers)).status_code == 204
