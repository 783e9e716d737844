"""scripts/bench: the app against the raw floor, side by side, on one embedded database.

Both run as single Uvicorn workers; wrk drives them over loopback in interleaved
rounds, so drift in the machine hits both alike. Prints requests/s, p50/p99 and
the app/floor ratio for each endpoint. Not part of the test suite.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import httpx2
from bson import ObjectId
from pymongo import MongoClient

from api import embedded
from api.security import TokenSigner

SECRET = "bench-secret-" + "b" * 40
DB = "bench"
SETTLE_S = 3


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per round and target")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("scripts/bench needs wrk (Debian: apt-get install wrk).")

    with tempfile.TemporaryDirectory() as tmp:
        server = embedded.start(Path(tmp) / "db")
        try:
            token, item_id = _seed(server.url, args.items)
            env = {
                **os.environ,
                "MONGODB_URL": server.url,
                "MONGODB_DB": DB,
                "SECRET_KEY": SECRET,
                "LOG_LEVEL": "WARNING",
                "DATA_DIR": tmp,
            }
            targets = {
                "app": _serve(["--factory", "api.main:app_from_env"], env),
                "floor": _serve(["scripts.bench_floor:app"], env),
            }
            try:
                _report(wrk, targets, token, item_id, args)
            finally:
                for process, _ in targets.values():
                    process.terminate()
                    process.wait()
        finally:
            server.stop()


def _seed(url: str, count: int) -> tuple[str, str]:
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    with client:
        db = client[DB]
        user_id = ObjectId()
        now = datetime.now(UTC).replace(microsecond=0)
        db.users.insert_one(
            {
                "_id": user_id,
                "email": "bench@example.com",
                "username": "bench",
                "full_name": None,
                "hashed_password": bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode(),
                "is_active": True,
                "is_superuser": False,
                "email_verified": False,
                "token_version": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        items = [
            {
                "_id": ObjectId(),
                "owner_id": user_id,
                "title": f"item {i}",
                "description": "d",
                "tags": ["bench", f"t{i % 10}"],
                "data": {"n": i, "nested": {"ok": True}},
                "created_at": now - timedelta(seconds=i),
                "updated_at": now,
                "version": 1,
            }
            for i in range(count)
        ]
        db.items.insert_many(items)
    token = TokenSigner(SECRET, "docstore", "docstore-api", 3600).issue(str(user_id), 0)
    return token, str(items[0]["_id"])


def _serve(target: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = embedded.free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        *target,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx2.get(f"{base}/api/v1/items?limit=1", timeout=1)
            return process, base
        except httpx2.TransportError:
            time.sleep(0.2)
    process.kill()
    sys.exit(f"{target} did not start")


def _report(wrk: str, targets: dict[str, Any], token: str, item_id: str, args: Any) -> None:
    endpoints = {
        "GET /items/{id}": f"/api/v1/items/{item_id}",
        "GET /items?limit=50": "/api/v1/items?limit=50",
    }
    for path in endpoints.values():
        for _, base in targets.values():  # check both answer 200 before measuring
            response = httpx2.get(base + path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, (base, path, response.text)
    results: dict[tuple[str, str], list[Result]] = {}
    for _ in range(args.rounds):
        for name, path in endpoints.items():
            for label, (_, base) in targets.items():
                run = _wrk(wrk, base + path, token, args.seconds, args.connections)
                results.setdefault((name, label), []).append(run)
                # Requests wrk abandoned at the deadline still queue at the database:
                # let them drain so they do not slow the next measurement.
                time.sleep(SETTLE_S)
    print(
        f"\n{args.rounds} rounds x {args.seconds}s, {args.connections} connections, "
        f"1 Uvicorn worker each, {args.items} items\n"
    )
    print(
        f"{'endpoint':<22}{'app req/s':>11}{'floor req/s':>13}{'ratio':>8}"
        f"{'app p50/p99 ms':>18}{'floor p50/p99 ms':>19}"
    )
    for name in endpoints:
        app, floor = (_median(results[(name, label)]) for label in ("app", "floor"))
        print(
            f"{name:<22}{app.rps:>11.0f}{floor.rps:>13.0f}{app.rps / floor.rps:>8.2f}"
            f"{app.p50_ms:>9.1f}/{app.p99_ms:<8.1f}{floor.p50_ms:>10.1f}/{floor.p99_ms:<8.1f}"
        )


def _median(runs: list[Result]) -> Result:
    return Result(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
    )


def _wrk(wrk: str, url: str, token: str, seconds: int, connections: int) -> Result:
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        sys.exit(f"errors while measuring {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Result(rps, _percentile(out, "50"), _percentile(out, "99"))


def _percentile(out: str, pct: str) -> float:
    value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


if __name__ == "__main__":
    main()
