"""Idempotency-Key on POST /items: a retry replays the first answer and writes nothing."""

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from api.items import idempotency
from api.main import create_app
from documents import IdempotencyRecord, Item
from documents.base import utcnow
from tests.conftest import Account, app_with, make_account, make_settings, services_of

ITEMS = "/api/v1/items"
NOTE = {"title": "pay invoice 42", "data": {"amount": 10}}


def keyed(owner: Account, key: str) -> dict[str, str]:
    return {**owner.headers, "Idempotency-Key": key}


async def test_a_retry_replays_the_first_answer_without_writing(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    first = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "retry-1"))
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "retry-1"))
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    for header in ("location", "etag", "content-type"):
        assert again.headers[header] == first.headers[header]
    assert await Item.find_all().count() == 1
    shown = await client.get(first.headers["location"], headers=alice.headers)
    assert shown.json() == first.json()  # the answer is the item as REST shows it


async def test_the_same_json_in_other_spacing_or_order_is_the_same_request(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    headers = {**keyed(alice, '"sf-string"'), "Content-Type": "application/json"}
    one = await client.post(ITEMS, content=b'{"title":"t","data":{"a":1,"b":2}}', headers=headers)
    headers["Idempotency-Key"] = "sf-string"
    two = await client.post(
        ITEMS, content=b'{ "data": {"b": 2, "a": 1}, "title": "t" }', headers=headers
    )
    assert (one.status_code, two.status_code) == (201, 201)
    assert two.headers["idempotent-replayed"] == "true"
    assert await Item.find_all().count() == 1


@pytest.mark.parametrize("other", [{"title": "pay invoice 43"}, {**NOTE, "data": {"amount": 10.0}}])
async def test_the_same_key_with_another_body_is_a_422(
    client: httpx2.AsyncClient, alice: Account, other: dict[str, Any]
) -> None:
    assert (await client.post(ITEMS, json=NOTE, headers=keyed(alice, "k"))).status_code == 201
    reused = await client.post(ITEMS, json=other, headers=keyed(alice, "k"))
    assert reused.status_code == 422
    assert reused.json()["type"] == "urn:docstore:problem:idempotency-key-reused"
    assert await Item.find_all().count() == 1


async def test_a_burst_with_one_key_writes_once(client: httpx2.AsyncClient, alice: Account) -> None:
    burst = [client.post(ITEMS, json=NOTE, headers=keyed(alice, "burst")) for _ in range(40)]
    answers = await asyncio.gather(*burst)
    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.content for answer in answers}) == 1
    assert sum("idempotent-replayed" not in answer.headers for answer in answers) == 1
    assert await Item.find_all().count() == 1


async def test_keys_belong_to_their_caller(
    client: httpx2.AsyncClient, alice: Account, bob: Account
) -> None:
    mine = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "shared"))
    theirs = await client.post(ITEMS, json=NOTE, headers=keyed(bob, "shared"))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["owner_id"] == bob.id
    assert await Item.find_all().count() == 2


async def test_a_failed_request_leaves_the_key_free(
    client: httpx2.AsyncClient, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails changes nothing, so a retry with the same key goes ahead; and
    one that fails between writing and recording its answer (a crash) keeps neither."""

    async def crash(*_: Any) -> None:
        raise RuntimeError("killed before the answer was recorded")

    monkeypatch.setattr(idempotency, "_settle", crash)
    failed = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "crash"))
    assert failed.status_code == 500
    assert await Item.find_all().count() == 0  # the item was written, then rolled back
    assert await IdempotencyRecord.find_all().count() == 0
    monkeypatch.undo()
    retried = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "crash"))
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert await Item.find_all().count() == 1


async def _pending(owner: Account, key: str, fingerprint: str, lease_s: float) -> None:
    now = utcnow()
    await IdempotencyRecord.get_pymongo_collection().insert_one(
        {
            "owner_id": owner.user.id,
            "key": key,
            "fingerprint": fingerprint,
            "state": "pending",
            "lease": "someone-else",
            "lease_until": now + timedelta(seconds=lease_s),
            "headers": {},
            "created_at": now,
            "expires_at": now + timedelta(hours=1),
        }
    )


def _print_of(body: dict[str, Any]) -> str:
    return idempotency.fingerprint("POST", ITEMS, httpx2.Request("POST", "/", json=body).content)


async def test_a_key_in_use_is_a_409_with_retry_after(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account
) -> None:
    services_of(app).settings.idempotency_wait_s = 0.2
    await _pending(alice, "busy", _print_of(NOTE), lease_s=20)
    busy = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "busy"))
    assert busy.status_code == 409
    assert busy.json()["type"] == "urn:docstore:problem:idempotency-key-in-use"
    assert 1 <= int(busy.headers["retry-after"]) <= 20
    assert await Item.find_all().count() == 0


async def test_a_key_whose_request_died_is_taken_over(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    await _pending(alice, "orphan", _print_of(NOTE), lease_s=-1)
    taken = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "orphan"))
    assert taken.status_code == 201
    again = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "orphan"))
    assert again.headers["idempotent-replayed"] == "true"
    assert await Item.find_all().count() == 1


async def test_an_expired_key_is_a_new_request(client: httpx2.AsyncClient, alice: Account) -> None:
    assert (await client.post(ITEMS, json=NOTE, headers=keyed(alice, "old"))).status_code == 201
    past = {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}}
    await IdempotencyRecord.get_pymongo_collection().update_one({}, past)
    later = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "old"))
    assert later.status_code == 201
    assert "idempotent-replayed" not in later.headers
    assert await Item.find_all().count() == 2


async def test_keys_survive_a_restart_and_expire_by_a_ttl_index(
    mongodb_url: str, tmp_path: Path
) -> None:
    settings = make_settings(mongodb_url, tmp_path, idempotency_ttl_hours=24)
    async with app_with(settings) as (app, client):
        alice = await make_account(app, "alice")
        first = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "restart"))
        [record] = await IdempotencyRecord.get_pymongo_collection().find().to_list()
        lifetime = record["expires_at"] - record["created_at"]
        assert lifetime == timedelta(hours=24)
        indexes = await IdempotencyRecord.get_pymongo_collection().index_information()
        assert any(
            spec["key"] == [("expires_at", 1)] and spec["expireAfterSeconds"] == 0
            for spec in indexes.values()
        )
        other = create_app(settings)  # as a new process on the same database would
        async with other.router.lifespan_context(other):
            transport = httpx2.ASGITransport(app=other)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as again:
                replay = await again.post(ITEMS, json=NOTE, headers=keyed(alice, "restart"))
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.content == first.content


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", " padded", "tab\there"])
async def test_a_malformed_key_is_refused(
    client: httpx2.AsyncClient, alice: Account, key: str
) -> None:
    response = await client.post(
        ITEMS, json=NOTE, headers=[*alice.headers.items(), ("Idempotency-Key", key.encode())]
    )
    assert response.status_code == 422, response.text
    assert await Item.find_all().count() == 0


async def kept_answers() -> list[dict[str, Any]]:
    return [record async for record in IdempotencyRecord.get_pymongo_collection().find()]


async def test_deleting_an_item_for_good_drops_the_answers_that_show_it(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """A kept answer would keep a deleted item's content readable for a day: it goes
    with the item. A retry then gets a 410: neither that content nor a second item."""
    for_good = {"permanent": "true"}
    made = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "create-1"))
    ops = [{"op": "create", "item": {"title": f"batch {n}"}} for n in range(2)]
    batch = await client.post(
        f"{ITEMS}/batch", json={"operations": ops}, headers=keyed(alice, "b-1")
    )
    assert (made.status_code, batch.status_code) == (201, 200)
    kept = await client.post(ITEMS, json={"title": "kept"}, headers=keyed(alice, "create-2"))
    first = made.headers["location"]
    assert (await client.delete(first, params=for_good, headers=alice.headers)).status_code == 204
    second = f"{ITEMS}/{batch.json()['results'][1]['item']['id']}"
    assert (await client.delete(second, params=for_good, headers=alice.headers)).status_code == 204

    records = await kept_answers()
    assert not any(b"pay invoice" in (r.get("body") or b"") for r in records)
    assert not any(b"batch 1" in (r.get("body") or b"") for r in records)
    for key, body in [("create-1", NOTE), ("b-1", {"operations": ops})]:
        url = ITEMS if key.startswith("create") else f"{ITEMS}/batch"
        gone = await client.post(url, json=body, headers=keyed(alice, key))
        assert gone.status_code == 410
        assert gone.headers["content-type"] == "application/problem+json"
        assert gone.json()["type"] == "urn:docstore:problem:idempotency-answer-gone"
    assert await Item.find_all().count() == 2  # "batch 0" and "kept": nothing re-created
    again = await client.post(ITEMS, json={"title": "kept"}, headers=keyed(alice, "create-2"))
    assert again.content == kept.content  # an answer whose item lives is still replayed


async def test_a_trashed_items_answer_is_kept_but_not_replayed_until_restored(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    """The trash keeps the item, so its answer may stay; while the item is there nobody
    can read it, so a retry gets a 410 (and creates nothing); restored, it replays."""
    made = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "create-1"))
    url = made.headers["location"]
    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    retried = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "create-1"))
    assert retried.status_code == 410
    assert b"pay invoice" not in retried.content
    assert await Item.find_all().count() == 0
    assert (await client.post(f"{url}/restore", headers=alice.headers)).status_code == 200
    replayed = await client.post(ITEMS, json=NOTE, headers=keyed(alice, "create-1"))
    assert (replayed.status_code, replayed.content) == (201, made.content)


async def test_deleting_an_account_drops_other_callers_answers_showing_its_items(
    client: httpx2.AsyncClient, alice: Account, admin: Account
) -> None:
    item = (await client.post(ITEMS, json=NOTE, headers=alice.headers)).json()
    patch = {"op": "patch", "id": item["id"], "patch": {"title": "secret plan"}}
    batch = await client.post(
        f"{ITEMS}/batch", json={"operations": [patch]}, headers=keyed(admin, "admin-1")
    )
    assert batch.status_code == 200
    assert any(b"secret plan" in (r.get("body") or b"") for r in await kept_answers())
    deleted = await client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers)
    assert deleted.status_code == 204
    assert not any(b"secret plan" in (r.get("body") or b"") for r in await kept_answers())


async def test_a_batch_that_deletes_what_it_patched_keeps_no_answer(
    client: httpx2.AsyncClient, alice: Account
) -> None:
    item = (await client.post(ITEMS, json=NOTE, headers=alice.headers)).json()
    ops = [
        {"op": "patch", "id": item["id"], "patch": {"title": "secret plan"}},
        {"op": "delete", "id": item["id"]},
    ]
    url, body = f"{ITEMS}/batch", {"operations": ops}
    first = await client.post(url, json=body, headers=keyed(alice, "b-gone"))
    assert first.status_code == 200
    assert first.json()["results"][0]["item"]["title"] == "secret plan"  # sent, this once
    assert not any(b"secret plan" in (r.get("body") or b"") for r in await kept_answers())
    retry = await client.post(url, json=body, headers=keyed(alice, "b-gone"))
    assert retry.status_code == 410
