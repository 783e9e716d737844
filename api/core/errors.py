"""Domain errors and their one mapping to RFC 9457 problem details."""

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from bson.errors import BSONError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.status import HTTP_503_SERVICE_UNAVAILABLE

from api.core.routing import RouteTable

log = logging.getLogger("docstore.errors")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = "5"


class DomainError(Exception):
    status = 400
    code = "bad-request"
    title = "Bad request"
    detail = "The request cannot be processed."
    headers: dict[str, str] | None = None
    extra: dict[str, Any] | None = None  # members added to the problem (RFC 9457 3.2)
    after: BackgroundTask | None = None  # work to run once the problem is sent

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.detail)
        if detail:
            self.detail = detail


class NotFound(DomainError):
    status, code, title = 404, "not-found", "Not found"

    def __init__(self, resource: str) -> None:
        super().__init__(f"{resource.capitalize()} not found.")


class NotAuthenticated(DomainError):
    status, code, title = 401, "not-authenticated", "Not authenticated"
    detail = "A valid bearer access token is required."
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"
    detail = "You are not allowed to do this."


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    instance: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(Problem):
    """A 422: `errors` lists each failed check (when the failure is a schema's)."""

    errors: list[ValidationIssue] = Field(default_factory=list)


_DESCRIPTIONS = {
    400: "Bad request",
    401: "Not authenticated (`WWW-Authenticate: Bearer`)",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict: a duplicate, or a change that cannot be made now (try again)",
    410: "Gone: the first answer to this Idempotency-Key held an item since deleted",
    412: "The item changed since it was read (If-Match)",
    413: (
        "Request body too large: over MAX_BODY_BYTES (a batch: BATCH_MAX_BYTES) once the "
        "route knows who is calling, and over 64 KiB until then (a caller not signed in, "
        "or at a route that takes no login)"
    ),
    422: "Validation failed",
    429: "Too many attempts (`Retry-After`)",
    431: "Too many, or too large, header fields",
    501: "Not possible on this database server",
    503: "Unavailable: the database, or too busy to hash a password (`Retry-After`)",
}
# Headers every problem of a status carries, as the document says they are sent.
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}}},
    429: {
        "Retry-After": {
            "description": "Seconds until the window lets an attempt through again",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` for a route: its errors, plus those every route can give."""
    everywhere = (400, 413, 422, 431, 503)
    return {
        status: {
            "model": ValidationProblem if status == 422 else Problem,
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {}},
            **({"headers": _HEADERS[status]} if status in _HEADERS else {}),
        }
        for status in sorted({*statuses, *everywhere})
    }


def describe_problems(document: dict[str, Any]) -> None:
    """Errors as they are sent: `application/problem+json` with the Problem schema.
    (FastAPI files a response's `model` under `application/json`, which errors never
    are; a client generated from the document would find no schema for them.)"""
    for path in document.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_JSON in content and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"urn:docstore:problem:{code}" if code else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    extra = exc.extra or {}
    answer = problem(request, exc.status, exc.title, exc.detail, exc.code, exc.headers, **extra)
    answer.background = exc.after
    return answer


def _http_error(routes: RouteTable) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title = _http_title(exc.status_code)
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else f"{title}."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(routes.methods(request.url.path)) or headers.get(
                "Allow", ""
            )
        return problem(request, exc.status_code, title, detail, headers=headers)

    return http_error


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed(methods: set[str] | None) -> str | None:
    """Every method of the path asked for. (Starlette answers a 405 with the methods of
    the first route whose path matched, one of several.) As documented: GET routes here
    do not answer HEAD, so it is not listed."""
    if methods is None:
        return None
    return ", ".join(method for method in METHODS if method in methods)


def validation_issues(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Each failed check as the problem's `errors` list shows it."""
    return [
        {"loc": list(e.get("loc", ())), "msg": _message(e), "type": e.get("type", "")}
        for e in exc.errors()
    ]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = validation_issues(exc)
    if any(issue["type"] == "json_invalid" for issue in issues):
        detail = "The request body is not valid JSON."
        return problem(request, 400, "Malformed JSON", detail, "malformed-json", errors=issues)
    detail = validation_detail(issues)
    return problem(request, 422, "Validation failed", detail, "validation", errors=issues)


def validation_detail(issues: list[dict[str, Any]]) -> str:
    """A 422's `detail`: where the first check failed, and why."""
    first = issues[0] if issues else {"loc": [], "msg": "invalid input"}
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _message(error: Mapping[str, Any]) -> str:
    # Pydantic prefixes our validators' messages with "Value error, "; the client needs the rest.
    return str(error.get("msg", "")).removeprefix("Value error, ")


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PyMongoError)
    if not isinstance(exc, ConnectionFailure) and not exc.timeout:
        return await unexpected(request, exc)
    log.warning("database unavailable: %s", exc)
    detail = "The database is unavailable; try again shortly."
    headers = {"Retry-After": RETRY_AFTER_S}
    status = HTTP_503_SERVICE_UNAVAILABLE
    return problem(request, status, "Service unavailable", detail, "database-unavailable", headers)


async def _duplicate(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DuplicateKeyError)
    field = next(iter((exc.details or {}).get("keyPattern", {})), "value")
    detail = f"A record with this {field} already exists."
    return problem(request, 409, "Conflict", detail, "conflict")


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    # Input the validators let through but BSON cannot hold (e.g. lone surrogates).
    detail = "The request holds a value that cannot be stored."
    return problem(request, 400, "Unstorable value", detail, "unstorable-value")


async def _too_deep(request: Request, exc: Exception) -> JSONResponse:
    # The last line against nesting deeper than Python recurses: a 400, not a crash; and
    # logged, in case it was our own recursion and not the input's.
    log.warning("recursion too deep on %s %s", request.method, request.url.path)
    detail = "The request nests values deeper than this service reads."
    return problem(request, 400, "Nested too deeply", detail, "nested-too-deeply")


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Any exception no handler took (see core/middleware.py's `Unexpected`)."""
    log.exception("unhandled error", exc_info=exc)
    detail = "An unexpected error occurred; it has been logged."
    return problem(request, 500, "Internal server error", detail, "internal")


def install_error_handlers(app: FastAPI, routes: RouteTable) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error(routes))
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Unreachable, or a reply slower than the socket timeout: both are a 503.
    app.add_exception_handler(PyMongoError, _database_unavailable)
    app.add_exception_handler(DuplicateKeyError, _duplicate)
    for unstorable in (BSONError, UnicodeEncodeError, OverflowError):
        app.add_exception_handler(unstorable, _unstorable)
    app.add_exception_handler(RecursionError, _too_deep)


def _http_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
