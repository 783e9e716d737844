"""On a real mongod, cursor pages walk the (owner_id, <sort key>, _id) index in order:
no in-memory sort, no collection scan, so page 1,000 costs what page 1 costs.

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


def stages(plan: dict[str, Any]) -> list[str]:
    found = [str(plan.get("stage", "?"))]
    for key in ("inputStage", "outerStage", "innerStage"):
        if isinstance(plan.get(key), dict):
            found += stages(plan[key])
    for child in plan.get("inputStages", []):
        found += stages(child)
    return found


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "-updated_at", "title"])
async def test_cursor_pages_walk_the_index_on_real_mongodb(
    app: FastAPI, client: httpx2.AsyncClient, alice: Account, bob: Account, sort: str
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
        }
        for owner in (alice, bob)
        for n in range(300)
    ]  # fmt: skip
    await Item.get_pymongo_collection().insert_many(docs)
    first = await client.get(ITEMS, params={"limit": 50, "sort": sort}, headers=alice.headers)
    cursor = first.json()["next_cursor"]
    with recording(settings.mongodb_db) as commands:
        params = {"limit": 50, "sort": sort, "cursor": cursor}
        page = await client.get(ITEMS, params=params, headers=alice.headers)
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
