"""Scale check (scripts/bench --scale N): deep pages, filters and search on N items.

Each scenario is timed one request at a time (median of a few), for the app and for
the floor doing the same query raw, so the ratio shows what the app adds. The cursor
for page 1,000 is signed here directly rather than walked to.
"""

import json
import statistics
import time
from typing import Any
from urllib.parse import quote

import httpx2
from pymongo import MongoClient

from api.core.pagination import CursorCodec, sort_tag
from bench.harness import SECRET, Setup, seed_items

REPEATS = 3
LIMIT = 50
NEWEST = [("created_at", -1), ("_id", -1)]


def sizes(count: int) -> list[int]:
    """1,000, 10,000, ... below `count`, then `count` itself."""
    steps = [10**power for power in range(3, 9) if 10**power < count]
    return [*steps, count]


def report(setup: Setup, count: int) -> None:
    """The scenarios at each size up to `count` (items seeded as it grows), then the
    database's plan for the deepest cursor query."""
    print(f"\nscale check: items of one user, limit={LIMIT}, median of {REPEATS}\n")
    print(f"{'items':>8}  {'scenario':<24}{'app ms':>10}{'floor ms':>10}{'ratio':>8}")
    seeded = 1  # the harness seeds one item
    plan: dict[str, Any] = {}
    for size in sizes(count):
        seed_items(setup.mongodb_url, setup.user_id, seeded, size)
        seeded = size
        scenarios, plan = _scenarios(setup, size)
        for name, (app_query, floor_query) in scenarios.items():
            app_ms = _time(setup, "app", app_query)
            floor_ms = _time(setup, "floor", floor_query)
            print(
                f"{size:>8,}  {name:<24}{app_ms:>10.1f}{floor_ms:>10.1f}{floor_ms / app_ms:>8.2f}"
            )
    print("\nplan of the deep cursor query:")
    print(json.dumps(plan.get("queryPlanner", {}).get("winningPlan", plan), indent=1, default=str))
    print("stages:", " -> ".join(_stages(plan.get("queryPlanner", {}).get("winningPlan", {}))))


def _scenarios(setup: Setup, count: int) -> tuple[dict[str, tuple[str, str]], dict[str, Any]]:
    """What is timed at this size (app query, floor query), and the deep query's plan."""
    client: MongoClient[dict[str, Any]] = MongoClient(setup.mongodb_url, tz_aware=True)
    with client:
        items = client["bench"].items
        deep = min(999 * LIMIT, count - LIMIT)  # the row before page 1,000 (or the last)
        last = items.find({"owner_id": setup.user_id}).sort(NEWEST).skip(deep - 1).limit(1)[0]
        keyset = {
            "created_at": {"$lte": last["created_at"]},
            "$or": [
                {"created_at": {"$lt": last["created_at"]}},
                {"created_at": last["created_at"], "_id": {"$lt": last["_id"]}},
            ],
        }
        query = {"owner_id": setup.user_id, **keyset}
        plan = items.find(query).sort(NEWEST).limit(LIMIT).explain()
    cursor = CursorCodec(SECRET).encode([sort_tag(NEWEST), last["created_at"], last["_id"]])
    after = f"{int(last['created_at'].timestamp() * 1000)},{last['_id']}"
    where = quote(json.dumps({"data.n": {"$gte": count - LIMIT}}))
    scenarios = {
        "page 1": ("sort=-created_at", ""),
        f"page {deep // LIMIT + 1:,} (cursor)": (
            f"sort=-created_at&cursor={quote(cursor)}",
            f"after={after}",
        ),
        "where data.n >= N-50": (f"where={where}", f"n_gte={count - LIMIT}"),
        "q=cherry": ("q=cherry", "q=cherry"),
    }
    return scenarios, plan


def _time(setup: Setup, label: str, query: str) -> float:
    url = f"{setup.targets[label]}/api/v1/items?limit={LIMIT}&{query}"
    headers = {"Authorization": f"Bearer {setup.token}"}
    timings = []
    with httpx2.Client(timeout=300) as client:
        for attempt in range(REPEATS + 1):
            started = time.perf_counter()
            response = client.get(url, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.text
            assert len(response.json()["items"]) > 0, url
            if attempt:  # the first is a warm-up
                timings.append(elapsed)
    return statistics.median(timings)


def _stages(plan: dict[str, Any]) -> list[str]:
    stages = [str(plan.get("stage", "?"))]
    for key in ("inputStage", "outerStage"):
        if isinstance(plan.get(key), dict):
            stages += _stages(plan[key])
    for child in plan.get("inputStages", []):
        stages += _stages(child)
    return stages
