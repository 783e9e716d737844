"""Writes (scripts/bench --patch): wrk sends PATCH /items/{id} to the app and the floor
in interleaved rounds, each request a merge patch of a new `data.n` on one of the user's
items at random, so every request changes an item: a compare-and-swap on `version` and
its history insert, in one transaction, on both sides (see bench/floor.py)."""

import tempfile
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from bench.harness import DB, Setup
from bench.load import SETTLE_S, Result, _median, _wrk

SCRIPT = """
local ids = {%s}
local counter = 0
wrk.headers["Content-Type"] = "application/merge-patch+json"
-- A value no earlier run wrote: a patch the item already matches writes nothing in
-- the app (no change, no version), which would flatter it.
math.randomseed(os.time())
local run = tostring(math.random(1, 1000000000))
request = function()
  counter = counter + 1
  local id = ids[math.random(#ids)]
  local body = '{"data": {"n": "' .. run .. '-' .. counter .. '"}}'
  return wrk.format("PATCH", "/api/v1/items/" .. id, nil, body)
end
"""


def report(wrk: str, setup: Setup, args: Any) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(setup.mongodb_url, tz_aware=True)
    with client:
        found = client[DB].items.find({"owner_id": setup.user_id}, {"_id": 1}).limit(1000)
        ids = [str(doc["_id"]) for doc in found]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "patch.lua"
        script.write_text(SCRIPT % ", ".join(f'"{i}"' for i in ids))
        results: dict[str, list[Result]] = {}
        for _ in range(args.rounds):
            for label, base in setup.targets.items():
                run = _wrk(
                    wrk, f"{base}/api/v1/items", setup.token, args.seconds, args.connections,
                    script=script,
                )  # fmt: skip
                results.setdefault(label, []).append(run)
                time.sleep(SETTLE_S)
    check: MongoClient[dict[str, Any]] = MongoClient(setup.mongodb_url, tz_aware=True)
    with check:
        versions = check[DB].versions.count_documents({})
    app, floor = _median(results["app"]), _median(results["floor"])
    print(
        f"\nPATCH /items/{{id}} over {len(ids)} items, {args.rounds} rounds x {args.seconds}s, "
        f"{args.connections} connections ({versions} versions written in all)\n"
    )
    print(f"{'':<8}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for label, result in (("app", app), ("floor", floor)):
        print(f"{label:<8}{result.rps:>8.0f}{result.p50_ms:>9.1f}{result.p99_ms:>9.1f}")
    print(f"ratio app/floor: {app.rps / floor.rps:.2f}")
