"""Throughput: wrk against the app and the floor in interleaved rounds (scripts/bench)."""

import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from bench.harness import Setup

# Requests wrk abandons at its deadline still queue at the database:
# let them drain so they do not slow the next measurement.
SETTLE_S = 3


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float


def report(wrk: str, setup: Setup, args: Any) -> None:
    by_id = f"/api/v1/items/{setup.first_item}"
    endpoints = {  # name -> (path, bearer token)
        "GET /items/{id}": (by_id, setup.token),
        "  with an access token": (by_id, setup.access_token),
        "GET /items?limit=50": ("/api/v1/items?limit=50", setup.token),
        "  half shared": ("/api/v1/items?limit=50", setup.friend_token),
    }
    for path, token in endpoints.values():  # both answer 200 before anything is measured
        for base in setup.targets.values():
            response = httpx2.get(base + path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, (base, path, response.text)
    results: dict[tuple[str, str], list[Result]] = {}
    for _ in range(args.rounds):
        for name, (path, token) in endpoints.items():
            for label, base in setup.targets.items():
                run = _wrk(wrk, base + path, token, args.seconds, args.connections)
                results.setdefault((name, label), []).append(run)
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


def _wrk(
    wrk: str, url: str, token: str, seconds: int, connections: int, script: Path | None = None
) -> Result:
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        *(["-s", str(script)] if script else []),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        sys.exit(f"errors while measuring {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Result(rps, _percentile(out, "50"), _percentile(out, "99"))


def _percentile(out: str, pct: str) -> float:
    match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    assert match is not None, out
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
