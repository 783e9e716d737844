"""Prometheus metrics, served as text by `GET /metrics`.

Each app has its own registry (tests build many apps in one process). Requests are
labelled by route template, never by raw path, so ids and unknown URLs cannot
multiply the series. Features add gauges of their own, set as things change or read
when scraped.

With several worker processes on one port (`--workers N`), a scrape reaches one of
them, so each process writes its values to files in `PROMETHEUS_MULTIPROC_DIR` (set by
`api.server` before the workers start: prometheus-client's multiprocess mode) and a
scrape adds up every worker's: after N requests through any workers, it reports N.
The parent drops a worker's live sums when it reaps the worker (`worker_gone`).
"""

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from pymongo.errors import PyMongoError
from starlette.types import Scope

from api.core.routing import RouteTable

UNMATCHED = "unmatched"
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def shared_folder() -> str | None:
    """The folder worker processes share their metrics in, if they do."""
    return os.environ.get(MULTIPROCESS_DIR) or None


@contextlib.contextmanager
def shared_across_workers() -> Iterator[str]:
    """For the parent of worker processes, before it starts them: a folder for their
    metrics, fresh for this run (one given in PROMETHEUS_MULTIPROC_DIR is emptied first:
    a previous run's counts must not be added to this one's), named in the environment
    the workers inherit. A folder of our own is removed afterwards."""
    given = shared_folder()
    if given is not None:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield given
        return
    folder = tempfile.mkdtemp(prefix="docstore-metrics-")
    os.environ[MULTIPROCESS_DIR] = folder
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROCESS_DIR, None)
        shutil.rmtree(folder, ignore_errors=True)


def route_label(routes: RouteTable, scope: Scope) -> str:
    """A request's route label: the full template (as in the OpenAPI description) of the
    route that answered it, not the first template its path matches (`/items/batch` is
    also an `/items/{item_id}`)."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    # A route added to the app itself after it was built has its whole path.
    return routes.template_of(route) or str(getattr(route, "path", UNMATCHED))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        if shared_folder() is None:  # one process: its own memory and CPU too
            ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "docstore_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "docstore_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=self.registry,
        )
        self.unrenderable = Counter(
            "docstore_unrenderable_documents",
            "Stored documents skipped because they cannot be shown (written by another tool)",
            ["where"],  # live | list
            registry=self.registry,
        )
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        # Bounded as the labels are: methods and route templates, never raw paths.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered; `route`: its `route_label`."""
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:  # labels() takes a lock and builds its key: once per series
            series = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def skipped(self, where: str) -> None:
        """Count a document skipped because it cannot be shown (see `unrenderable`)."""
        self.unrenderable.labels(where).inc()

    def gauge(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        mode: Literal["mostrecent", "livesum"] = "mostrecent",
    ) -> Gauge:
        """A new gauge (once per name: a registry refuses a second). `mode` says how the
        workers' values add up with several processes: `mostrecent` for a value each
        reads from the database, `livesum` for one of each process's own (its sockets)."""
        return Gauge(name, documentation, labels, registry=self.registry, multiprocess_mode=mode)

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A new counter (once per name), each process's own, added up across workers."""
        return Counter(name, documentation, labels, registry=self.registry)

    def on_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Call `refresh` (which sets gauges) before each exposition."""
        self._refreshers.append(refresh)

    async def exposition(self) -> tuple[bytes, str]:
        for refresh in self._refreshers:
            # Scraping must not fail with the database: keep the last values.
            with contextlib.suppress(PyMongoError):
                await refresh()
        folder = shared_folder()
        if folder is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        # Files of every worker: read off the event loop.
        return await asyncio.to_thread(_every_worker, folder), CONTENT_TYPE_LATEST


def _every_worker(folder: str) -> bytes:
    """What every worker wrote to the shared folder, added up. A dead worker's live sums
    were removed when it was reaped (`worker_gone`); its counters still count: those
    requests were answered."""
    every_worker = CollectorRegistry()
    MultiProcessCollector(every_worker, path=folder)  # type: ignore[no-untyped-call]
    return generate_latest(every_worker)


def worker_gone(pid: int) -> None:
    """For the parent of worker processes, once it has reaped one: that worker's live
    sums (its sockets went with it) stop counting. Done here, once per worker, rather
    than by every scrape: scrapes in several workers at once would race to remove the
    same files."""
    folder = shared_folder()
    if folder is not None:
        mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
