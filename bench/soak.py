"""Soak (scripts/bench --soak SECONDS): a mixed workload at saturation against one process.

Workers sign up and log in, create, list, read and patch items, while live subscribers
read the feed; for the given seconds, as fast as the process answers. Prints the
requests made, how many were 5xx (must be 0), and the process's RSS and open file
descriptors at the start and the end (a leak shows as growth that does not level off).
"""

import asyncio
import os
import random
import secrets
import sys
import time
from collections import Counter
from typing import Any

import httpx2
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.harness import Setup
from bench.live import rss_kb

WORKERS = 16
SUBSCRIBERS = 20
PASSWORD = "Soak-pass-1"


def report(setup: Setup, seconds: float) -> None:
    asyncio.run(_report(setup, seconds))


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _report(setup: Setup, seconds: float) -> None:
    base, pid = setup.targets["app"], setup.pids["app"]
    statuses: Counter[int] = Counter()
    limits = httpx2.Limits(max_connections=WORKERS)
    async with httpx2.AsyncClient(base_url=f"{base}/api/v1", timeout=60, limits=limits) as api:
        auth = {"Authorization": f"Bearer {setup.token}"}
        start = (rss_kb(pid), _fds(pid))
        deadline = time.monotonic() + seconds
        delivered = Counter[str]()
        ws_url = base.replace("http", "ws") + f"/api/v1/ws/items?token={setup.token}"
        readers = [
            asyncio.create_task(_subscriber(ws_url, deadline, delivered))
            for _ in range(SUBSCRIBERS)
        ]
        await asyncio.gather(*(_worker(api, auth, deadline, statuses) for _ in range(WORKERS)))
        await asyncio.gather(*readers)
    await asyncio.sleep(1)  # every client connection closed: let the process settle
    end = (rss_kb(pid), _fds(pid))
    total = sum(statuses.values())
    errors = sum(count for status, count in statuses.items() if status >= 500)
    print(f"\nsoak: {seconds:g}s, {WORKERS} workers, {SUBSCRIBERS} live subscribers, 1 process")
    print(
        f"requests: {total} ({total / seconds:.0f}/s); by status {dict(sorted(statuses.items()))}"
    )
    closed = {k: v for k, v in delivered.items() if k != "events"}
    print(f"5xx: {errors} (must be 0); live events delivered: {delivered['events']}, {closed}")
    print(f"RSS: {start[0] / 1024:.1f} MiB at the start, {end[0] / 1024:.1f} MiB at the end")
    print(f"open file descriptors: {start[1]} at the start, {end[1]} at the end")
    if errors:
        sys.exit(f"{errors} responses were 5xx")


async def _worker(
    api: httpx2.AsyncClient, auth: dict[str, str], deadline: float, statuses: Counter[int]
) -> None:
    mine: list[str] = []
    name = f"soak{secrets.token_hex(4)}"
    user = {"email": f"{name}@example.com", "username": name, "password": PASSWORD}
    statuses[(await api.post("/users", json=user)).status_code] += 1
    while time.monotonic() < deadline:
        roll = random.random()
        if roll < 0.03:
            form = {"username": name, "password": PASSWORD}
            response = await api.post("/auth/login", data=form)
        elif roll < 0.35 or not mine:
            body = {"title": f"soak {random.randrange(10**6)}", "tags": ["soak"], "data": {"n": 1}}
            response = await api.post("/items", json=body, headers=auth)
            if response.status_code == 201:
                mine.append(response.json()["id"])
                del mine[:-50]
        elif roll < 0.6:
            response = await api.get("/items", params={"limit": 20}, headers=auth)
        elif roll < 0.8:
            response = await api.get(f"/items/{random.choice(mine)}", headers=auth)
        else:
            patch: dict[str, Any] = {"data": {"n": random.randrange(100)}}
            response = await api.patch(f"/items/{random.choice(mine)}", json=patch, headers=auth)
        statuses[response.status_code] += 1


async def _subscriber(url: str, deadline: float, delivered: Counter[str]) -> None:
    async with connect(url) as ws:
        while (left := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            except ConnectionClosed as closed:  # reported, not a crash of the bench
                delivered[f"closed {closed.rcvd.code if closed.rcvd else 'abruptly'}"] += 1
                return
            delivered["events"] += 1
