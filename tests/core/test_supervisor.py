"""The embedded development database is supervised by the process that started it: with
`--workers N`, the parent. A failure restarts it; a normal shutdown does not."""

import asyncio
import os
import signal
from pathlib import Path

import httpx2

from api.core import embedded
from api.core.supervisor import CHECK_EVERY_S, MAX_BACKOFF_S, Supervisor
from tests.conftest import PASSWORD, eventually
from tests.serving import api_env, running_api

PIPE = asyncio.subprocess.PIPE


async def sign_up(base: str, name: str) -> int:
    async with httpx2.AsyncClient(base_url=base, timeout=30) as client:
        body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD}
        return (await client.post("/api/v1/users", json=body)).status_code


async def restarted_after(state_file: Path, killed: int) -> embedded.EmbeddedServer:
    async with asyncio.timeout(20):
        while True:
            running = embedded.running_server(state_file)
            if running is not None and running.pid != killed:
                return running
            await asyncio.sleep(0.1)


async def reaped(pid: int) -> None:
    """Until the child `pid` is gone from /proc: it ended, and its parent's supervisor
    collected its exit status (until then it stays, a zombie)."""

    async def gone() -> bool:
        return not await asyncio.to_thread(Path(f"/proc/{pid}").exists)

    try:
        await eventually(gone, within_s=30)  # another process's shutdown, on a busy machine
    except TimeoutError:
        # Which it was, for whoever reads the failure: still running (R, S, D) or ended
        # and not collected by its parent (Z).
        stat = await asyncio.to_thread(Path(f"/proc/{pid}/stat").read_text)
        raise AssertionError(f"process {pid} not reaped after 30 s: /proc stat {stat!r}") from None


async def test_with_workers_the_parent_restarts_a_killed_database(tmp_path: Path) -> None:
    env = api_env("unused", "docstore", tmp_path)
    args = ("--workers", "2")
    async with running_api(env, *args, without=("MONGODB_URL",), stderr=PIPE) as (base, api):
        assert await sign_up(base, "before") == 201
        first = embedded.running_server(tmp_path / "mongo.json")
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        second = await restarted_after(tmp_path / "mongo.json", first.pid)
        assert second.url == first.url  # the same port: the workers reconnect by themselves

        async def writes_land() -> bool:
            return await sign_up(base, "after") in (201, 409)  # 409: an earlier try landed

        await eventually(writes_land)
        api.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(api.wait(), 30) == 0
        assert api.stderr is not None
        log = (await api.stderr.read()).decode()
    assert f"embedded MongoDB (pid {first.pid}) exited with code -9; restarting it" in log
    assert log.count("; restarting it") == 1  # the kill's, and none at shutdown
    assert embedded.running_server(tmp_path / "mongo.json") is None  # stopped with them


async def test_a_normal_shutdown_does_not_restart_the_database(tmp_path: Path) -> None:
    """Ctrl-C at a terminal signals its whole foreground group. The database runs in a
    session of its own, so it stays up while the API drains; and one that is stopped
    cleanly anyway (here: signalled along with the API) is not started again."""
    env = api_env("unused", "docstore", tmp_path)
    async with running_api(env, without=("MONGODB_URL",), stderr=PIPE) as (base, api):
        assert await sign_up(base, "someone") == 201
        database = embedded.running_server(tmp_path / "mongo.json")
        assert database is not None
        assert os.getsid(database.pid) != os.getsid(api.pid)
        os.kill(database.pid, signal.SIGINT)
        await reaped(database.pid)  # the supervisor saw it end (and left it stopped)
        os.kill(api.pid, signal.SIGINT)
        # Uvicorn shuts down, then raises the signal it caught again: ended by SIGINT.
        assert await asyncio.wait_for(api.wait(), 30) == -signal.SIGINT
        assert api.stderr is not None
        log = (await api.stderr.read()).decode()
    assert "; restarting it" not in log
    assert embedded.running_server(tmp_path / "mongo.json") is None


async def test_a_hangup_stops_the_api_and_its_database(tmp_path: Path) -> None:
    """Closing the terminal sends SIGHUP: the API shuts down as on SIGTERM, and stops the
    database it started (which, in its own session, got no hangup of its own)."""
    env = api_env("unused", "docstore", tmp_path)
    async with running_api(env, without=("MONGODB_URL",)) as (base, api):
        assert await sign_up(base, "someone") == 201
        database = embedded.running_server(tmp_path / "mongo.json")
        assert database is not None
        api.send_signal(signal.SIGHUP)
        # As on SIGINT: shut down, then ended by the signal it caught (not a plain exit 0).
        assert await asyncio.wait_for(api.wait(), 30) == -signal.SIGHUP
    assert embedded.running_server(tmp_path / "mongo.json") is None


class Failing:
    """A database process that has just failed (as `subprocess.Popen` shows one)."""

    pid, returncode = 4242, 3

    def poll(self) -> int:
        return self.returncode


class Recording(Supervisor):
    """A supervisor whose restarts start nothing (each restarted database fails at once),
    and whose waits are recorded instead of waited."""

    def __init__(self, restarts: int) -> None:
        server = embedded.EmbeddedServer("mongodb://127.0.0.1:1", 4242, True, Failing())  # type: ignore[arg-type]
        super().__init__(server, Path("unused"))
        self.left, self.waits = restarts, list[float]()

    async def pause(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)

    def _restart(self) -> None:
        self.server.process = Failing()  # type: ignore[assignment]
        self.left -= 1
        self.stopping = self.left == 0


async def test_a_database_that_keeps_failing_is_restarted_ever_more_slowly() -> None:
    """The first failure is restarted at once; each failure soon after a restart waits
    about twice as long as the one before, never more than MAX_BACKOFF_S."""
    supervisor = Recording(restarts=9)
    await supervisor.run()
    backoffs = [wait for wait in supervisor.waits if wait != CHECK_EVERY_S]
    assert len(backoffs) == 8  # every restart but the first
    for n, wait in enumerate(backoffs, start=1):
        ceiling = min(MAX_BACKOFF_S, 2.0 ** (n - 1))
        assert ceiling / 2 <= wait <= ceiling
