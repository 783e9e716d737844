"""The list envelope and its opaque, tamper-evident keyset cursor."""

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from bson import json_util
from bson.errors import InvalidBSON
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Depends, Query
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import PydanticSerializationError
from pymongo.asynchronous.collection import AsyncCollection

from api.core.errors import DomainError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
MAX_SKIP = 10_000
_TZ_AWARE = json_util.JSONOptions(tz_aware=True, json_mode=json_util.JSONMode.CANONICAL)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")
    total: int | None = Field(default=None, exclude_if=lambda v: v is None)


class InvalidCursor(DomainError):
    code, title = "invalid-cursor", "Invalid cursor"
    detail = "The cursor is malformed or was not issued by this service."


class ListParams(BaseModel):
    limit: int
    skip: int
    cursor: str | None
    include_total: bool


async def list_params(
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    skip: Annotated[int, Query(ge=0, le=MAX_SKIP, description="Offset, for simple clients")] = 0,
    cursor: Annotated[str | None, Query(max_length=4096, description="From `next_cursor`")] = None,
    include_total: Annotated[bool, Query(description="Add `total` to the page")] = False,
) -> ListParams:
    return ListParams(limit=limit, skip=skip, cursor=cursor, include_total=include_total)


PageQuery = Annotated[ListParams, Depends(list_params)]


class CursorCodec:
    """Signs the last row's sort key so clients can neither forge nor garble a position."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"cursor:" + secret.encode()).digest()

    def encode(self, position: list[Any]) -> str:
        text = json_util.dumps(position, json_options=json_util.CANONICAL_JSON_OPTIONS)
        payload = base64.urlsafe_b64encode(text.encode()).rstrip(b"=")
        return (payload + b"." + self._sign(payload)).decode()

    def decode(self, cursor: str) -> list[Any]:
        payload, _, signature = cursor.encode("ascii", "replace").partition(b".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise InvalidCursor()
        try:
            raw = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))
            position = json_util.loads(raw, json_options=_TZ_AWARE)
        except (ValueError, TypeError, InvalidBSON):
            raise InvalidCursor() from None
        if not isinstance(position, list):
            raise InvalidCursor()
        return position

    def _sign(self, payload: bytes) -> bytes:
        digest = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=")


class SealedCursorCodec(CursorCodec):
    """Encrypts as well as authenticates (AES-GCM): for positions whose content is not
    the holder's to read. A live-feed position is a server resume token, which names
    the last changed document (anyone's) and when it changed."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret)
        self._aead = AESGCM(hashlib.sha256(b"sealed-cursor:" + secret.encode()).digest())

    def encode(self, position: list[Any]) -> str:
        text = json_util.dumps(position, json_options=json_util.CANONICAL_JSON_OPTIONS)
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, text.encode(), b"cursor")
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def decode(self, cursor: str) -> list[Any]:
        if "." in cursor:  # signed only, as issued before cursors were sealed
            return super().decode(cursor)
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            text = self._aead.decrypt(raw[:12], raw[12:], b"cursor")
            position = json_util.loads(text, json_options=_TZ_AWARE)
        except (ValueError, TypeError, InvalidBSON, InvalidTag):
            raise InvalidCursor() from None
        if not isinstance(position, list):
            raise InvalidCursor()
        return position


SortSpec = list[tuple[str, int]]


async def fetch_page(
    collection: AsyncCollection[dict[str, Any]],
    query: dict[str, Any],
    sort: SortSpec,
    params: ListParams,
    codec: CursorCodec,
    projection: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], str | None, int | None]:
    """One page of raw documents by keyset: those after the cursor in `sort` order.

    `sort` ends with `_id` so positions are unique; with a matching index each page is
    one index range scan however deep it is. The sort fields are always fetched (the
    cursor needs them) even when `projection` leaves them out of what the caller shows;
    a projection that only leaves fields out (`{"search_terms": 0}`) keeps them anyway.
    """
    where = query
    if params.cursor:
        after = _keyset_after(sort, codec.decode(params.cursor))
        where = {"$and": [query, after]} if query else after
    if projection is not None and all(projection.values()):  # fields named: and the keys
        projection = {**projection, **{field: 1 for field, _ in sort}}
    found = collection.find(where, projection).sort(sort).skip(params.skip).limit(params.limit + 1)
    rows = await found.to_list()
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        next_cursor = codec.encode([sort_tag(sort), *(rows[-1].get(f) for f, _ in sort)])
    total = await collection.count_documents(query) if params.include_total else None
    return rows, next_cursor, total


def showable(
    rows: list[dict[str, Any]], model: type[M], skipped: Callable[[dict[str, Any]], None]
) -> list[M]:
    """The rows as `model` shows them. A row another tool wrote that it cannot show (not
    valid, or holding a value JSON cannot: an ObjectId in free-form data, say) goes to
    `skipped` instead: one odd document costs its row, not the page."""
    shown = []
    for row in rows:
        try:
            entry = model.model_validate(row)
            entry.model_dump_json()
        except (ValidationError, PydanticSerializationError):
            skipped(row)
            continue
        shown.append(entry)
    return shown


def sound_keys(date_field: str) -> dict[str, Any]:
    """The condition that a newest-first page's keys are a date (not an array holding
    one) and an ObjectId: a row another tool wrote with odd keys would otherwise end a
    page, and the cursor made from it fail the next query or skip the rest."""
    return {
        date_field: {"$type": "date"},  # a bound the index can use
        "_id": {"$type": "objectId"},
        "$expr": {"$eq": [{"$type": f"${date_field}"}, "date"]},  # the whole value
    }


def sort_tag(sort: SortSpec) -> str:
    return ",".join(f"{'-' if direction < 0 else ''}{field}" for field, direction in sort)


def _keyset_after(sort: SortSpec, position: list[Any]) -> dict[str, Any]:
    """Rows strictly after (v1, v2, ...) in sort order: v1 beyond, or v1 equal and v2 beyond...

    The leading bound on the first field (v1 or beyond) lets the database scan the index
    from the position on instead of evaluating the `$or` over every row.
    """
    if len(position) != len(sort) + 1 or position[0] != sort_tag(sort):
        raise InvalidCursor()
    values = position[1:]
    branches = []
    for depth, (field, direction) in enumerate(sort):
        branch = {f: values[i] for i, (f, _) in enumerate(sort[:depth])}
        branch[field] = {"$lt" if direction < 0 else "$gt": values[depth]}
        branches.append(branch)
    first, direction = sort[0]
    return {first: {"$lte" if direction < 0 else "$gte": values[0]}, "$or": branches}
