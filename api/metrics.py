"""`GET /metrics`: Prometheus text for this process.

Each app has its own registry (tests build many apps in one process). Requests are
labelled by route template, never by raw path, so ids and unknown URLs cannot
multiply the series; the gauges are read when scraped.
"""

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import PyMongoError
from starlette.routing import compile_path
from starlette.types import Scope

from api import outbox

if TYPE_CHECKING:
    from api.services import Services

UNMATCHED = "unmatched"


class Metrics:
    def __init__(self) -> None:
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
        self.live_subscribers = Gauge(
            "docstore_live_subscribers",
            "Open WebSocket subscriptions to live changes",
            registry=self.registry,
        )
        self.outbox = Gauge(
            "docstore_outbox_messages",
            "Email outbox messages by delivery status",
            ["status"],
            registry=self.registry,
        )

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
            template = self._templates[id(route)] = self._full_template(scope, route)
        return template

    def _full_template(self, scope: Scope, route: Any) -> str:
        # Routers are included lazily, so a matched route knows only its own part of the
        # path; the OpenAPI description has the whole templates, in routing order.
        for path in scope["app"].openapi()["paths"]:
            if compile_path(path)[0].match(scope["path"]):
                return str(path)
        return str(getattr(route, "path", UNMATCHED))  # routes left out of the description

    async def exposition(self, services: "Services") -> tuple[bytes, str]:
        live = services.live
        self.live_subscribers.set(len(live.subscribers) if live is not None else 0)
        try:
            for status, count in (await outbox.counts()).items():
                self.outbox.labels(status).set(count)
        except PyMongoError:  # scraping must not fail with the database: leave the last values
            pass
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
