"""Keeps the embedded development database running: the process that started it
restarts it, on the same port and data folder, whenever it exits.

A crashed (or killed) development database then heals by itself: requests meanwhile
get 503s with Retry-After, `/ready` says the database does not answer, and every write
acknowledged before the crash is there after it (the server syncs on commit).
"""

import asyncio
import json
import logging
import random
from pathlib import Path
from urllib.parse import urlsplit

from api.core import embedded
from api.core.background import Background

log = logging.getLogger("docstore.embedded")
CHECK_EVERY_S = 0.5
MAX_BACKOFF_S = 30.0


class Supervisor(Background):
    def __init__(self, server: embedded.EmbeddedServer, data_dir: Path) -> None:
        super().__init__("embedded-supervisor")
        self.server, self.data_dir = server, data_dir
        self.restarts = 0

    async def run(self) -> None:
        delay = 1.0
        while not self.stopping:
            await self.pause(CHECK_EVERY_S)
            process = self.server.process
            if self.stopping or process is None or process.poll() is None:
                continue
            log.error(
                "embedded MongoDB (pid %s) exited with code %s; restarting it",
                process.pid,
                process.returncode,
            )
            while not self.stopping:
                try:
                    await asyncio.to_thread(self._restart)
                    break
                except embedded.EmbeddedServerError as error:
                    log.error("embedded MongoDB did not restart: %s; retrying", error)
                    await self.pause(random.uniform(delay / 2, delay))
                    delay = min(delay * 2, MAX_BACKOFF_S)
            delay = 1.0

    def _restart(self) -> None:
        port = urlsplit(self.server.url).port
        started = embedded.start(
            self.data_dir / "mongo", log_file=self.data_dir / "mongo.log", port=port
        )
        self.server.process, self.server.pid = started.process, started.pid
        (self.data_dir / "mongo.json").write_text(
            json.dumps({"url": self.server.url, "pid": started.pid})
        )
        self.restarts += 1
        log.warning("embedded MongoDB restarted (pid %s) at %s", started.pid, self.server.url)
