"""On a real mongod, cursor pages walk the (readers, <sort key>, _id) index in order:
no in-memory sort, no collection scan, so page 1,000 costs what page 1 costs; for a
list of own and shared items alike, and with `access=` narrowing it.

The embedded server cannot show this (its planner sorts in memory whatever the
indexes): this runs only when MONGODB_URL points at a real mongod, as the CI
workflow for users' CI (.github/workflows/ci.yml) does.
"""

from datetime import timedelta
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from documents import Item
from documents.base import utcnow
from tests.commands import recording
from tests.conftest import Account, services_of

ITEMS = "/api/v1/items"


def sharing(owner: Account, reader: Account, n: int, now: Any) -> dict[str, Any]:
    """Half of the other owner's items shared with `reader` (viewer, editor in turn)."""
    if owner is reader or n % 2:
        return {"readers": [owner.user.id], "shares": []}
    role = "viewer" if n % 4 else "editor"
    share = {"user_id": reader.user.id, "role": role, "created_at": now, "updated_at": now}
    return {"readers": [owner.user.id, reader.user.id], "shares": [share]}


def stages(plan: dict[str, Any]) -> list[str]:
    found = [str(plan.get("stage", "?"))]
    for key in ("inputStage", "outerStage", "innerStage"):
        if isinstance(plan.get(key), dict):
            found += stages(plan[key])
    for child in plan.get("inputStages", []):
        found += stages(child)
    return found


@pytest.mark.parametrize(
    ("sort", "access"),
    [
        ("-created_at", None),
        ("created_at", None),
        ("-updated_at", None),
        ("title", None),
        ("-created_at", ["viewer"]),
        ("-updated_at", ["owner", "editor"]),
    ],
)
async def test_cursor_pages_walk_the_index_on_real_mongodb(
    app: FastAPI,
    client: httpx2.AsyncClient,
    alice: Account,
    bob: Account,
    sort: str,
    access: list[str] | None,
) -> None:
    settings = services_of(app).settings
    database = services_of(app).client[settings.mongodb_db]
    if "secantusVersion" in await database.command("buildInfo"):
        pytest.skip("needs a real mongod: set MONGODB_URL (the embedded server sorts in memory)")
    now = utcnow()
    docs = [
        {
            "owner_id": owner.user.id, "title": f"item {n:04}", "description": None,
            "tags": [], "data": {"n": n}, "search_terms": [], "version": 1,
            "created_at": now - timedelta(seconds=n), "updated_at": now - timedelta(seconds=n),
            **sharing(owner, alice, n, now),
        }
        for owner in (alice, bob)
        for n in range(300)
    ]  # fmt: skip
    await Item.get_pymongo_collection().insert_many(docs)
    query: dict[str, Any] = {"limit": 50, "sort": sort, "access": access or []}
    first = await client.get(ITEMS, params=query, headers=alice.headers)
    cursor = first.json()["next_cursor"]
    assert cursor is not None
    with recording(settings.mongodb_db) as commands:
        page = await client.get(ITEMS, params={**query, "cursor": cursor}, headers=alice.headers)
    assert page.status_code == 200
    [find] = [c for c in commands if c["name"] == "find" and c["find"] == "items"]
    query = {k: find[k] for k in ("filter", "sort", "limit", "projection") if k in find}
    explained = await database.command(
        {"explain": {"find": "items", **query}, "verbosity": "queryPlanner"}
    )
    walked = stages(explained["queryPlanner"]["winningPlan"])
    assert "IXSCAN" in walked, walked
    assert "SORT" not in walked, walked
    assert "COLLSCAN" not in walked, walked
