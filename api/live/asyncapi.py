"""Documents the live feed: an AsyncAPI 3 document at /asyncapi.json, and the WebSocket
route in the OpenAPI description (FastAPI leaves WebSocket routes out)."""

from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.config import API_PREFIX
from api.core.errors import PROBLEM_JSON
from api.core.services import get_services
from documents import Item

PATH = f"{API_PREFIX}/ws/items"
REF = "#/components/schemas/{model}"

SUMMARY = "Live changes to the items you can read (WebSocket)"
DESCRIPTION = """
Upgrade to a WebSocket to receive the changes of every item you can read (your own and
those shared with you) as they commit, in commit order, from MongoDB change streams (any
worker, host or admin script's write arrives). Superusers receive everyone's, or one
owner's with `owner_id`.

Sharing: an item shared with you arrives as `shared` (with its content and your
`access`); a change of your role is an `updated` with the new `access`; when your share
ends (the owner ended it, or you left) you get `unshared` with the item's id and nothing
more of it. A replay (`resume_after`) checks access as it is now: it never sends the
content of an item you can no longer read.

Authenticate with `?token=<access token>`, an `Authorization: Bearer` header on the
handshake, or a first message `{"type": "auth", "token": "..."}` within a few seconds.
A personal access token (`dsk_...`) is refused in the URL, where logs keep it: send it
in the header or the first message. Once the server is listening for your
changes it sends `{"event": "subscribed", "cursor": ...}`: every change committed after
that message (after its cursor) arrives; wait for it before writing what you expect to
see. To join from a REST snapshot with no gap, list with `GET /api/v1/items` (every
page), then connect with `?resume_after=<its X-Feed-Cursor header>`. Each change carries a
`cursor`; reconnect with `?resume_after=<cursor>` to get what you missed, exactly once
(the replay follows the `subscribed` message).

Close codes: 1008 bad, expired or revoked token, a bad parameter, or a first message
longer than 4,096 characters (the reason says which); 1009 a message larger than 16 KiB;
1011 the database has no change streams (or the feed is turned off); 1013 you read too
slowly, the database is unavailable, the feed is restarting, or your account has too many
resumes replaying at once (reconnect and resume); 1001 the server is shutting down; 1000
after a `resync` message (your cursor is too old: refetch by REST, then reconnect without
`resume_after`).
"""


class AuthMessage(BaseModel):
    """The first message, when the token is not in the URL."""

    type: Literal["auth"]
    token: str


class ItemChange(BaseModel):
    """A change to an item you can read; `item` is the item as the REST API returns it
    to you (with your `access`, or only the requested `fields`), and `{"id": ...}` for
    `deleted` (moved to the trash, or deleted for good) and `unshared` (you can no
    longer read it). `restored` is an item back from its owner's trash."""

    event: Literal["created", "updated", "deleted", "restored", "shared", "unshared"]
    item: Item | dict[str, str]
    cursor: str = Field(description="Opaque; pass as resume_after to continue after this")


class Subscribed(BaseModel):
    """Sent once, first: the server now listens for your changes; none after this is missed."""

    event: Literal["subscribed"]
    cursor: str | None = Field(
        default=None,
        description="The position from which this socket receives every change (your "
        "resume_after, or where the feed stood when it started listening)",
    )


class Resync(BaseModel):
    """Your resume_after is older than the server's change history: refetch by REST."""

    event: Literal["resync"]


QUERY: dict[str, Any] = {
    "token": ("string", "Access token (or send an auth message first)"),
    "resume_after": ("string", "A cursor from an earlier message: replay what came after it"),
    "owner_id": ("string", "Superusers: only this owner's items"),
    "tag": ("string", "Only items with this tag (repeat: all must match)"),
    "fields": ("string", "Comma-separated item fields to send (id always comes)"),
}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (AuthMessage, Subscribed, ItemChange, Resync):
        schema = model.model_json_schema(ref_template=REF, mode="serialization", by_alias=True)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def asyncapi_document(public_url: str) -> dict[str, Any]:
    url = urlsplit(public_url)
    message = {
        name: {"name": name, "payload": {"$ref": REF.format(model=name)}}
        for name in ("AuthMessage", "Subscribed", "ItemChange", "Resync")
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Docstore live changes", "version": "0.1.0", "description": DESCRIPTION},
        "servers": {
            "api": {
                "host": url.netloc,
                "protocol": "wss" if url.scheme == "https" else "ws",
            }
        },
        "channels": {
            "items": {
                "address": PATH,
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in message},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                name: {"type": kind, "description": text}
                                for name, (kind, text) in QUERY.items()
                            },
                        },
                    }
                },
            }
        },
        "operations": {
            "sendItemChanges": {
                "action": "send",
                "channel": {"$ref": "#/channels/items"},
                "messages": [
                    {"$ref": "#/channels/items/messages/Subscribed"},
                    {"$ref": "#/channels/items/messages/ItemChange"},
                    {"$ref": "#/channels/items/messages/Resync"},
                ],
            },
            "receiveAuth": {
                "action": "receive",
                "channel": {"$ref": "#/channels/items"},
                "messages": [{"$ref": "#/channels/items/messages/AuthMessage"}],
            },
        },
        "components": {"messages": message, "schemas": _schemas()},
    }


def _websocket_path() -> dict[str, Any]:
    return {
        "get": {
            "tags": ["live"],
            "summary": SUMMARY,
            "description": DESCRIPTION + "\nMessages: see /asyncapi.json.",
            "operationId": "live_items",
            "parameters": [
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {"type": kind},
                    "description": text,
                }
                for name, (kind, text) in QUERY.items()
            ],
            "responses": {
                "101": {"description": "Switching Protocols: the WebSocket opens"},
                "426": {
                    "description": "Upgrade Required: asked as plain HTTP, not a WebSocket",
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    "headers": {
                        "Upgrade": {
                            "description": "`websocket`",
                            "schema": {"type": "string", "const": "websocket"},
                        }
                    },
                },
            },
        }
    }


def describe_socket(document: dict[str, Any]) -> None:
    """Add the WebSocket route to the OpenAPI description (see api/openapi.py)."""
    document["paths"][PATH] = _websocket_path()


router = APIRouter(tags=["live"])


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi(request: Request) -> dict[str, Any]:
    return asyncapi_document(get_services(request).settings.public_url)
