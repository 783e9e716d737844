"""`python -m api.server --workers N`: N processes on one port, one embedded database,
every worker's sockets fed, and each closing them with 1001 on shutdown."""

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import httpx2
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.core import embedded
from tests.conftest import eventually
from tests.live.conftest import WS_PATH, close_of, next_event
from tests.serving import api_env, running_api, signed_in


def workers_of(pid: int) -> list[int]:
    """The worker processes Uvicorn's supervisor spawned (not the embedded database, nor
    multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


async def test_two_workers_share_a_port_a_database_and_a_clean_shutdown(tmp_path: Path) -> None:
    env = api_env("unused", "docstore", tmp_path, LIVE_FEED="true")
    async with running_api(env, "--workers", "2", without=("MONGODB_URL",)) as (base, process):
        assert len(workers_of(process.pid)) == 2
        token = await signed_in(base, "worker")
        async with httpx2.AsyncClient(base_url=base) as client:
            url = base.replace("http", "ws") + f"{WS_PATH}?token={token}"
            sockets = [await connect(url) for _ in range(6)]  # spread by the kernel
            for ws in sockets:
                assert (await next_event(ws))["event"] == "subscribed"
            headers = {"Authorization": f"Bearer {token}"}
            made = await client.post("/api/v1/items", json={"title": "t"}, headers=headers)
            assert made.status_code == 201
            for ws in sockets:  # whichever worker holds it, its feed saw the write
                event = await next_event(ws)
                assert (event["event"], event["item"]["id"]) == ("created", made.json()["id"])
        process.send_signal(signal.SIGTERM)
        closes = await asyncio.gather(*(close_of(ws) for ws in sockets))
        assert {code for code, _ in closes} == {1001}
        assert await asyncio.wait_for(process.wait(), 30) == 0
    assert embedded.running_server(tmp_path / "mongo.json") is None  # stopped with them


def health_count(exposition: str) -> float:
    for line in exposition.splitlines():
        if line.startswith("docstore_http_requests_total{") and 'route="/health"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_any_scrape_counts_the_requests_of_every_worker(tmp_path: Path) -> None:
    """Requests spread over two workers (a new connection each); every scrape, whichever
    worker answers it, reports them all. A previous run's counts are not added."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"a previous run's")
    env = api_env("unused", "docstore", tmp_path, PROMETHEUS_MULTIPROC_DIR=str(folder))
    async with running_api(env, "--workers", "2", without=("MONGODB_URL",)) as (base, process):
        assert not (folder / "counter_1.db").exists()
        async with httpx2.AsyncClient(base_url=base) as client:
            before = health_count((await client.get("/metrics")).text)
        for _ in range(30):
            async with httpx2.AsyncClient(base_url=base) as client:  # a new connection each
                assert (await client.get("/health")).status_code == 200
        scrapes = set()
        for _ in range(8):
            async with httpx2.AsyncClient(base_url=base) as client:
                scrapes.add(health_count((await client.get("/metrics")).text) - before)
        assert scrapes == {30}
        writers = {path.name.rsplit("_", 1)[1] for path in folder.glob("counter_*.db")}
        assert len(writers) == 2  # both workers counted requests
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


def connections_of(pid: int, port: int) -> int:
    """How many connections to `port` the process holds (its sockets, found in /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                held += 1
    return held


async def still_open(ws: ClientConnection) -> bool:
    """Whether the socket outlives a worker's death (its own worker's sockets drop)."""
    try:
        await asyncio.wait_for(ws.recv(), 2)
    except TimeoutError:
        return True
    except ConnectionClosed:
        return False
    return True


def subscribers(exposition: str) -> float:
    for line in exposition.splitlines():
        if line.startswith("docstore_live_subscribers "):
            return float(line.split()[1])
    raise AssertionError("no docstore_live_subscribers")


async def test_a_dead_worker_sockets_leave_the_subscriber_count(tmp_path: Path) -> None:
    env = api_env("unused", "docstore", tmp_path, LIVE_FEED="true")
    async with running_api(env, "--workers", "2", without=("MONGODB_URL",)) as (base, process):
        token = await signed_in(base, "dead")
        url = base.replace("http", "ws") + f"{WS_PATH}?token={token}"
        sockets = [await connect(url) for _ in range(8)]  # spread by the kernel
        for ws in sockets:
            assert (await next_event(ws))["event"] == "subscribed"
        before = set(workers_of(process.pid))
        port = int(base.rsplit(":", 1)[1])
        busiest = max(before, key=lambda pid: connections_of(pid, port))
        os.kill(busiest, signal.SIGKILL)
        survivors = sum(await asyncio.gather(*(still_open(ws) for ws in sockets)))
        assert survivors < 8  # the dead worker held some of them

        async def replaced() -> bool:
            now = set(workers_of(process.pid))
            return len(now) == 2 and now != before

        await eventually(replaced)

        async def counted_right() -> bool:
            async with httpx2.AsyncClient(base_url=base) as client:  # whichever worker
                return subscribers((await client.get("/metrics")).text) == survivors

        await eventually(counted_right)
        for ws in sockets:
            await ws.close()
