"""The raw floor for scripts/bench: Starlette + PyMongo doing only the essential work.

Same database, the app's socket timeout (which turns a silent database into a 503),
same token check (joserfc, pinned alg, claims; or a personal access
token's document, hash and user), the same reader conditions (by id: the item, then
its owner or readers checked; lists: the readers index), plain JSON out: what any
framework on this stack cannot go below. A PATCH reads the item, merges the patch,
and in one transaction compare-and-swaps it on `version` and writes its new version
to the history, as the app must.
"""

import hashlib
import hmac
import os
import re
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.accounts.tokens import InvalidToken, TokenSigner


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    """The item as JSON; who may see it (`readers`, `shares`) is read, not shown."""
    out = {}
    for key, value in doc.items():
        if key in ("readers", "shares"):
            continue
        if isinstance(value, ObjectId):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat().replace("+00:00", "Z")
        out["id" if key == "_id" else key] = value
    return out


HISTORY_FIELDS = ("owner_id", "title", "description", "tags", "data", "created_at")


class Floor:
    """The endpoints, on one database and one signer."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        db: AsyncDatabase[dict[str, Any]],
        signer: TokenSigner,
    ) -> None:
        self.client, self.db, self.signer = client, db, signer

    async def _caller(self, request: Request) -> dict[str, Any] | None:
        bearer = request.headers.get("authorization", "")[7:]
        if bearer.startswith("dsk_"):
            return await self._token_owner(bearer)
        try:
            claims = self.signer.verify(bearer)
        except InvalidToken:
            return None
        user = await self.db.users.find_one({"_id": ObjectId(claims.user_id)})
        if (
            user is None
            or not user["is_active"]
            or user["token_version"] != claims.token_version
            or ObjectId(claims.session_id) not in user["session_ids"]
        ):
            return None
        return user

    async def _token_owner(self, bearer: str) -> dict[str, Any] | None:
        """A personal access token: its document by id, its hash, then its user."""
        _, token_id, secret = bearer.split("_", 2)
        token = await self.db.access_tokens.find_one({"_id": ObjectId(token_id)})
        if token is None or not hmac.compare_digest(
            token["secret_hash"], hashlib.sha256(secret.encode()).hexdigest()
        ):
            return None
        user = await self.db.users.find_one({"_id": token["user_id"]})
        if user is None or not user["is_active"] or token["_id"] not in user["access_token_ids"]:
            return None
        return user

    async def read_item(self, request: Request) -> Response:
        user = await self._caller(request)
        if user is None:
            return JSONResponse({"detail": "unauthorized"}, status_code=401)
        who = user["_id"]
        item = await self.db.items.find_one({"_id": ObjectId(request.path_params["item_id"])})
        readers = item.get("readers") if item is not None else None
        if item is None or (item["owner_id"] != who and who not in (readers or ())):
            return JSONResponse({"detail": "not found"}, status_code=404)
        return JSONResponse(_plain(item))

    async def item(self, request: Request) -> Response:
        if request.method == "PATCH":
            return await self.patch_item(request)
        return await self.read_item(request)

    async def patch_item(self, request: Request) -> Response:
        user = await self._caller(request)
        if user is None:
            return JSONResponse({"detail": "unauthorized"}, status_code=401)
        patch = await request.json()
        item_id = ObjectId(request.path_params["item_id"])
        while True:
            item = await self.db.items.find_one({"_id": item_id})
            if item is None or item["owner_id"] != user["_id"]:
                return JSONResponse({"detail": "not found"}, status_code=404)
            data = {**item["data"], **patch.get("data", {})}
            written: list[dict[str, Any]] = []
            swap = self._swap(item, data, user["_id"], datetime.now(UTC), written)
            async with self.client.start_session() as session:
                await session.with_transaction(swap)  # retried on a write conflict, as the app's
            stored = written[0] if written else None
            if stored is not None:
                return JSONResponse(_plain(stored))

    def _swap(
        self, item: dict[str, Any], data: Any, who: ObjectId, now: datetime, written: list[Any]
    ) -> Any:
        """The transaction's work: the item's compare-and-swap, then its new version."""
        item_id = item["_id"]

        async def swap(session: Any) -> None:
            stored = await self.db.items.find_one_and_update(
                {"_id": item_id, "version": item["version"], "owner_id": who},
                {"$set": {"data": data, "updated_at": now}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            written[:] = [] if stored is None else [stored]
            if stored is not None:
                version = stored["version"]
                kept = {k: stored.get(k) for k in HISTORY_FIELDS}
                kept |= {"item_id": item_id, "version": version, "changed_at": now}
                kept |= {"changed_by": who, "change": "updated"}
                await self.db.versions.replace_one(
                    {"_id": f"{item_id}:{version}"}, kept, upsert=True, session=session
                )
                if version > 100 and version % 10 == 0:  # the app's trim, as often
                    old = {"item_id": item_id, "version": {"$lte": version - 100}}
                    await self.db.versions.delete_many(old, session=session)

        return swap

    async def list_items(self, request: Request) -> Response:
        user = await self._caller(request)
        if user is None:
            return JSONResponse({"detail": "unauthorized"}, status_code=401)
        params = request.query_params
        query: dict[str, Any] = {"readers": user["_id"]}
        if "after" in params:  # the keyset position, raw: "<epoch ms>,<id>"
            millis, last_id = params["after"].split(",")
            at, oid = datetime.fromtimestamp(int(millis) / 1000, UTC), ObjectId(last_id)
            query |= {"created_at": {"$lte": at}}
            query["$or"] = [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": oid}}]
        if "n_gte" in params:
            query["data.n"] = {"$gte": int(params["n_gte"])}
        if "q" in params:
            query["search_terms"] = {"$regex": f"^{re.escape(params['q'])}"}
        found = self.db.items.find(query, {"search_terms": 0})
        found = found.sort([("created_at", -1), ("_id", -1)]).limit(int(params.get("limit", 20)))
        items = [_plain(doc) async for doc in found]
        return JSONResponse({"items": items, "next_cursor": None})


def create_app() -> Starlette:
    """Uvicorn factory (`--factory bench.floor:create_app`): reads MONGODB_URL, MONGODB_DB,
    SECRET_KEY and MONGODB_SOCKET_TIMEOUT_MS when called, so importing this module needs
    no environment."""
    # The app's socket timeout too: the contract answers 503 to a database that stops
    # replying, never a hang, and PyMongo's async client pays for that per operation.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        os.environ["MONGODB_URL"],
        tz_aware=True,
        socketTimeoutMS=int(os.environ.get("MONGODB_SOCKET_TIMEOUT_MS", "10000")),
    )
    signer = TokenSigner(os.environ["SECRET_KEY"], "docstore", "docstore-api", 3600)
    floor = Floor(client, client[os.environ["MONGODB_DB"]], signer)
    return Starlette(
        routes=[
            Route("/api/v1/items/{item_id}", floor.item, methods=["GET", "PATCH"]),
            Route("/api/v1/items", floor.list_items),
        ]
    )
