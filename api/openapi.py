"""The OpenAPI document, shaped in one place: what FastAPI derives from the routes, then
the changes it cannot derive, in this order. Nothing reads the document back at request
time (the metrics and 405s take their templates from the router: api/core/routing.py)."""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api.accounts.openapi import describe_security
from api.config import Settings
from api.core.errors import describe_problems
from api.items.openapi import describe_items
from api.live.asyncapi import describe_socket
from api.live.handoff import describe_feed_cursor

Change = Callable[[dict[str, Any]], None]


def changes(settings: Settings) -> list[Change]:
    return [
        describe_socket,  # the WebSocket route, which FastAPI leaves out
        describe_items(settings.batch_max_operations),  # `data`, `where`, batch size
        describe_security,  # password login or personal tokens with scopes; sign-up
        describe_problems,  # errors as application/problem+json
        describe_feed_cursor,  # X-Feed-Cursor on GET /items
    ]


def install(app: FastAPI, settings: Settings) -> None:
    derive, steps = app.openapi, changes(settings)
    described: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not described:  # built once, as FastAPI's own is
            document = derive()
            for change in steps:
                change(document)
            described.update(document)
        return described

    app.openapi = openapi  # type: ignore[method-assign]
