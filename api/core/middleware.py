"""Pure ASGI middleware (cheaper per request than BaseHTTPMiddleware).

- `RequestContext`: a request id echoed in `X-Request-ID`, security headers on
  every response, one structured access-log line and the metrics of each request.
- `Unexpected`: any exception no handler took, as the 500 problem, inside the two
  above (Starlette's own error middleware sits outside every added middleware, so
  its 500 would carry neither the request id nor the security and CORS headers).
- `BodyLimit`: refuses bodies over the configured size with 413, whether or
  not the client announced the length, and header floods (more than MAX_HEADERS
  fields or MAX_HEADER_BYTES in all) with 431: the server in front of us may let
  any amount through (Uvicorn's httptools parser does). Until a route has
  authenticated its caller, a body is held to ANONYMOUS_BODY_BYTES (64 KiB).
"""

import logging
import os
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.errors import problem, unexpected
from api.core.metrics import Metrics, route_label
from api.core.routing import RouteTable

access_log = logging.getLogger("docstore.access")
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_API_HEADERS = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
]
# The docs pages run the bundled Swagger UI / ReDoc scripts, served by the app itself.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'"
)
_DOCS_PREFIXES = ("/docs", "/redoc", "/static-offline-docs")
MAX_HEADERS = 200
MAX_HEADER_BYTES = 64 * 1024


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        hsts: bool = False,
        metrics: Metrics | None = None,
        routes: RouteTable | None = None,
    ) -> None:
        """`routes`: the app's, read once it has them all, to label the metrics."""
        self.app, self.hsts, self.metrics = app, hsts, metrics
        self.routes = routes or RouteTable([])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or os.urandom(16).hex()
        token = request_id_var.set(request_id)
        started, status = time.perf_counter(), 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = _with_context_headers(
                    message.get("headers", ()), request_id, scope["path"], self.hsts
                )
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            access_log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={"status": status, "ms": round(elapsed * 1000, 2)},
            )
            if self.metrics is not None:
                route = route_label(self.routes, scope)
                self.metrics.observe(scope["method"], route, status, elapsed)
            request_id_var.reset(token)


class Unexpected:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            response = await unexpected(Request(scope), error)  # logged there
            if not started:  # else the client has part of an answer: nothing more to say
                await response(scope, _no_receive, send)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_REQUEST_ID.match(text) else None
    return None


def _security_headers(docs: bool, hsts: bool) -> list[tuple[bytes, bytes]]:
    headers = list(_API_HEADERS)
    if docs:
        headers[-1] = ("content-security-policy", _DOCS_CSP)
    if hsts:
        headers.append(("strict-transport-security", "max-age=63072000; includeSubDomains"))
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


# Encoded once, by (docs page, HSTS): added to every response as raw header pairs.
_SECURITY = {
    (docs, hsts): _security_headers(docs, hsts) for docs in (False, True) for hsts in (False, True)
}


def _with_context_headers(
    raw: Iterable[tuple[bytes, bytes]], request_id: str, path: str, hsts: bool
) -> list[tuple[bytes, bytes]]:
    """A response's headers with its request id (replacing any), and each security
    header the response does not set itself."""
    headers = [(name, value) for name, value in raw if name != b"x-request-id"]
    headers.append((b"x-request-id", request_id.encode("latin-1")))
    present = {name for name, _ in headers}
    for name, value in _SECURITY[path.startswith(_DOCS_PREFIXES), hsts]:
        if name not in present:
            headers.append((name, value))
    return headers


# Set by BodyLimit: the most a route may allow this request's body (`allow_larger_body`).
_CEILING = "docstore.body_ceiling"
_ALLOWED = "docstore.body_allowed"


# What anyone may send before a route knows who they are: every body a caller who is not
# signed in may send (a sign-up, a login, a reset) is a few hundred bytes.
ANONYMOUS_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Bodies of at most `max_bytes` (the paths in `larger`: their own limit), but only
    once the route has said who is asking (`allow_larger_body`, after authenticating):
    until then a body is held to ANONYMOUS_BODY_BYTES, so nobody unknown makes the
    server read or parse more than that."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app, self.default_bytes, self.larger = app, max_bytes, larger or {}
        self.anonymous_bytes = min(ANONYMOUS_BODY_BYTES, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if (
            len(headers) > MAX_HEADERS
            or sum(len(n) + len(v) for n, v in headers) > MAX_HEADER_BYTES
        ):
            detail = (
                f"The request has more than {MAX_HEADERS} header fields or "
                f"{MAX_HEADER_BYTES} bytes of them."
            )
            await _refuse(scope, send, 431, "Header fields too large", detail, "headers-too-large")
            return
        ceiling = scope[_CEILING] = self.larger.get(scope["path"], self.default_bytes)
        if _declared_length(scope) > ceiling:
            detail = _too_large_detail(ceiling)
            await _refuse(scope, send, 413, "Content too large", detail, "body-too-large")
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            max_bytes = scope.get(_ALLOWED, self.anonymous_bytes)
            if received > max_bytes:
                raise HTTPException(413, _too_large_detail(max_bytes))
            return message

        await self.app(scope, counting_receive, send)


def allow_larger_body(request: Request) -> None:
    """Let this request's body reach its path's larger limit: call it once the caller is
    known, before the body is read."""
    request.scope[_ALLOWED] = request.scope.get(_CEILING, 0)


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _too_large_detail(max_bytes: int) -> str:
    return f"The request body exceeds the limit of {max_bytes} bytes."


async def _refuse(
    scope: Scope, send: Send, status: int, title: str, detail: str, code: str
) -> None:
    await problem(Request(scope), status, title, detail, code)(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
