"""Prometheus metrics of this process, served as text by `GET /metrics`.

Each app has its own registry (tests build many apps in one process). Requests are
labelled by route template, never by raw path, so ids and unknown URLs cannot
multiply the series. Features add gauges of their own, read when scraped.
"""

import contextlib
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import PyMongoError
from starlette.types import Scope

from api.core.routing import RouteTable

UNMATCHED = "unmatched"


class Metrics:
    def __init__(self) -> None:
        self._routes: RouteTable | None = None  # read from the app at its first request
        self._templates: dict[int, str] = {}  # id of a matched route -> its full template
        self.registry = CollectorRegistry()
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

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = self._route_of(scope)
        self.requests.labels(scope["method"], route, str(status)).inc()
        self.latency.labels(scope["method"], route).observe(seconds)

    def _route_of(self, scope: Scope) -> str:
        """The matched route's full template (as in the OpenAPI description)."""
        route = scope.get("route")
        if route is None:
            return UNMATCHED
        # Keyed by identity (routes define __eq__, so they are not hashable); they live as
        # long as the app, so an id is never reused for another route.
        template = self._templates.get(id(route))
        if template is None:  # first request of this route: look its template up once
            if self._routes is None:
                self._routes = RouteTable(scope["app"].routes)
            found = self._routes.template(scope["path"]) or getattr(route, "path", UNMATCHED)
            template = self._templates[id(route)] = str(found)
        return template

    def skipped(self, where: str) -> None:
        """Count a document skipped because it cannot be shown (see `unrenderable`)."""
        self.unrenderable.labels(where).inc()

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def on_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Call `refresh` (which sets gauges) before each exposition."""
        self._refreshers.append(refresh)

    async def exposition(self) -> tuple[bytes, str]:
        for refresh in self._refreshers:
            # Scraping must not fail with the database: keep the last values.
            with contextlib.suppress(PyMongoError):
                await refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
