"""Keeps the embedded development database running: the process that started it
restarts it, on the same port and data folder, whenever it fails (a crash, a kill).
One that exits cleanly (code 0) was stopped on purpose, and stays stopped; one that
keeps failing soon after each restart is restarted after a longer wait each time (up
to MAX_BACKOFF_S), so a database that cannot stay up does not churn the machine. With
`--workers N` the parent process started it and supervises it, from a thread of its own
(`supervising`).

A crashed (or killed) development database then heals by itself: requests meanwhile
get 503s with Retry-After, `/ready` says the database does not answer, and every write
acknowledged before the crash is there after it (the server syncs on commit).
"""

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from api.core import embedded, retry
from api.core.background import Background
from api.core.retry import Retry

log = logging.getLogger("docstore.embedded")
CHECK_EVERY_S = 0.5
MAX_BACKOFF_S = 30.0
STEADY_S = 60.0  # a server up this long that exits is a new failure: restarted at once


class Supervisor(Background):
    def __init__(self, server: embedded.EmbeddedServer, data_dir: Path) -> None:
        super().__init__("embedded-supervisor")
        self.server, self.data_dir = server, data_dir

    async def run(self) -> None:
        restarting = Retry(1.0, MAX_BACKOFF_S, sleep=self.pause)
        started_at: float | None = None  # when we last restarted it (not: someone else)
        quick_exits = 0  # exits in a row, each within STEADY_S of its restart
        while not self.stopping:
            await self.pause(CHECK_EVERY_S)
            process = self.server.process
            if self.stopping or process is None or process.poll() is None:
                continue
            if process.returncode == 0:  # stopped on purpose, not failed: left stopped
                log.info("embedded MongoDB (pid %s) stopped cleanly; left stopped", process.pid)
                self.server.process = None
                continue
            log.error(
                "embedded MongoDB (pid %s) exited with code %s; restarting it",
                process.pid,
                process.returncode,
            )
            if started_at is None or time.monotonic() - started_at > STEADY_S:
                quick_exits = 0  # it had been up a while: a new failure, restarted at once
                restarting.reset()
            else:  # it keeps dying: wait longer before each restart, up to MAX_BACKOFF_S
                quick_exits += 1
                await self.pause(retry.delay(quick_exits, 1.0, MAX_BACKOFF_S))
            async for _ in restarting:  # a restart that fails is tried again, backing off
                if self.stopping:
                    break
                try:
                    await asyncio.to_thread(self._restart)
                    started_at = time.monotonic()
                    break
                except embedded.EmbeddedServerError as error:
                    log.error("embedded MongoDB did not restart: %s; retrying", error)

    def _restart(self) -> None:
        """Under the folder's lock, as `start_or_attach` takes it: a process that meanwhile
        started a server for this folder is attached to, never a second one started."""
        with embedded.locked(self.data_dir / "mongo.lock"):
            if self.stopping:
                return
            running = embedded.running_server(self.data_dir / "mongo.json")
            if running is not None and running.pid != self.server.pid:
                log.warning("another process restarted embedded MongoDB (pid %s)", running.pid)
                self.server.process = None  # theirs to supervise now
                self.stopping = True
                return
            port = urlsplit(self.server.url).port
            started = embedded.start(
                self.data_dir / "mongo", log_file=self.data_dir / "mongo.log", port=port
            )
            if self.stopping:  # shut down while it started: nobody would stop it later
                started.stop()
                return
            self.server.process, self.server.pid = started.process, started.pid
            (self.data_dir / "mongo.json").write_text(
                json.dumps({"url": self.server.url, "pid": started.pid})
            )
        log.warning("embedded MongoDB restarted (pid %s) at %s", started.pid, self.server.url)


@contextlib.contextmanager
def supervising(server: embedded.EmbeddedServer, data_dir: Path) -> Iterator[Supervisor]:
    """Supervise `server` from a thread with its own event loop, for a process whose own
    thread is busy elsewhere (the parent of `--workers N`, inside Uvicorn's supervisor)."""
    supervisor = Supervisor(server, data_dir)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(supervisor.run(),), name="embedded-supervisor"
    )
    thread.start()
    try:
        yield supervisor
    finally:
        loop.call_soon_threadsafe(supervisor.ask_to_stop)
        thread.join()
        loop.close()
