"""From a REST snapshot to live changes with no gap: `X-Feed-Cursor` on `GET /items`.

The header is the live feed's position taken as the request arrives, before the list
is read: a client that lists (every page), then subscribes with
`?resume_after=<header>`, receives every change committed after its snapshot began;
perhaps a few its pages already showed (harmless: events carry `version`).
"""

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.config import API_PREFIX
from api.core.services import Services
from api.live.feed import running_feed

HEADER = "X-Feed-Cursor"
LIST_PATH = f"{API_PREFIX}/items"
DESCRIPTION = (
    "The live feed's position before this list was read: subscribe with "
    "`WS /api/v1/ws/items?resume_after=<this>` to receive every change made since "
    "(perhaps a few this list already shows: compare `version`). Absent when the "
    "server has no live feed, or it is restarting."
)


class FeedCursor:
    """Adds the header to successful `GET /items` answers (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != LIST_PATH:
            await self.app(scope, receive, send)
            return
        cursor = _cursor(scope["app"])  # taken now: before the handler reads anything

        async def with_cursor(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200 and cursor:
                message["headers"] = [*message["headers"], (b"x-feed-cursor", cursor.encode())]
            await send(message)

        await self.app(scope, receive, with_cursor)


def _cursor(app: Any) -> str | None:
    feed = running_feed(app)
    if feed is None or not feed.up or feed.position is None:
        return None
    services: Services = app.state.services  # there, since the feed is
    return services.feed_cursors.encode(feed.position.encode())


def describe_feed_cursor(document: dict[str, Any]) -> None:
    """Say in the OpenAPI description that GET /items answers carry the header."""
    ok = document["paths"][LIST_PATH]["get"]["responses"]["200"]
    ok.setdefault("headers", {})[HEADER] = {
        "description": DESCRIPTION,
        "schema": {"type": "string"},
    }
