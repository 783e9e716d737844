"""`Idempotency-Key` (IETF httpapi draft): a retried write replays its first answer.

The key is claimed first (a `pending` record under a lease); the write and the record
turning `done` with its answer then commit in one transaction. So two concurrent
requests with one key write once (the second waits for the first, or gets a 409
with Retry-After), a request killed mid-way leaves nothing half-done (its lease
runs out and a retry proceeds), and a failed request (nothing written) frees the key.
Keys are per caller, kept in MongoDB for IDEMPOTENCY_TTL_HOURS, seen by every worker.
"""

import hashlib
import json
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Header, Request, Response
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from api.config import Settings
from api.core.errors import Conflict, DomainError, problem_responses
from api.core.retry import Retry
from api.core.services import Services
from api.items import policy
from documents import IdempotencyRecord, Item, User
from documents.base import utcnow
from documents.idempotency import KeyState

# A structured-field string (`"..."`, no quote inside) or the same characters bare.
KEY_PATTERN = r'^(?:"[ !#-~]{1,255}"|[!#-~](?:[ !#-~]{0,253}[!#-~])?)$'
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=257,
        pattern=KEY_PATTERN,
        description=(
            "Makes a retry safe: the same key with the same body within "
            "IDEMPOTENCY_TTL_HOURS replays the first answer (`Idempotent-Replayed: true`) "
            "without writing again; with another body it is a 422. Printable ASCII, at "
            "most 255 characters (a structured-field string: quotes are optional)."
        ),
    ),
]


REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the first answer to an earlier request with "
        "the same Idempotency-Key, sent again (nothing was written this time)",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until a retry may find the first request's answer",
        "schema": {"type": "integer"},
    }
}


def documented(responses: dict[int | str, dict[str, Any]], success: int) -> dict[int | str, Any]:
    """`responses` with what an idempotent write adds: Idempotent-Replayed on its
    success, Retry-After on its 409, and the 410 of an answer since dropped."""
    done = {**problem_responses(410), **responses, success: {**responses.get(success, {})}}
    done[success]["headers"] = {**done[success].get("headers", {}), **REPLAYED}
    if 409 in done:
        done[409] = {**done[409], "headers": {**done[409].get("headers", {}), **RETRY_AFTER}}
    return done


@dataclass
class Answer:
    """A response as first sent, to be sent again on a replay."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # The items whose content it holds, and their owners: deleting one (or its owner's
    # account) drops this answer.
    item_ids: list[Any] = field(default_factory=list)
    item_owners: list[Any] = field(default_factory=list)
    # Shows an item the same request deleted (a batch that patches, then deletes it):
    # sent this once, never kept.
    gone: bool = False

    @classmethod
    def holding(
        cls, status: int, body: bytes, items: list[Any], headers: dict[str, str] | None = None
    ) -> "Answer":
        """An answer that shows these items (documents with `id` and `owner_id`)."""
        owners = list(dict.fromkeys(item.owner_id for item in items))
        return cls(status, body, headers or {}, [item.id for item in items], owners)


class KeyReused(DomainError):
    status, code, title = 422, "idempotency-key-reused", "Idempotency key reused"
    detail = "This Idempotency-Key was used for a different request; use a new key."


class AnswerGone(DomainError):
    status, code, title = 410, "idempotency-answer-gone", "Answer gone"
    detail = (
        "The request with this Idempotency-Key was carried out, but an item its answer "
        "held has since been deleted, and so has that answer. Nothing was written now."
    )


class AnswerWithheld(AnswerGone):
    detail = (
        "The request with this Idempotency-Key was carried out, but its answer shows an "
        "item you can no longer read (no longer shared with you, or in the trash), so it is "
        "not sent "
        "again. Nothing was written now."
    )


class KeyInUse(Conflict):
    code, title = "idempotency-key-in-use", "Idempotency key in use"
    detail = "A request with this Idempotency-Key is still in progress; retry shortly."

    def __init__(self, retry_after_s: float) -> None:
        super().__init__()
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


def fingerprint(method: str, path: str, body: bytes) -> str:
    """The request a key stands for: its method, path and body as JSON values (so key
    order and spacing do not matter, and `1` is not `1.0`)."""
    canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


Perform = Callable[[AsyncClientSession | None], Awaitable[Answer]]


async def once(
    services: Services,
    request: Request,
    user: User,
    key: str | None,
    perform: Perform,
    *,
    atomic: bool = False,
) -> Response:
    """The answer to the request (a replay, with `Idempotent-Replayed: true`, when the
    key has one). Without a key, just `perform` (in a transaction when `atomic`)."""
    answer, replayed = await _answer(services, request, user, key, perform, atomic)
    headers = {**answer.headers, **({"Idempotent-Replayed": "true"} if replayed else {})}
    return Response(answer.body, answer.status, headers, media_type="application/json")


async def _answer(
    services: Services,
    request: Request,
    user: User,
    key: str | None,
    perform: Perform,
    atomic: bool,
) -> tuple[Answer, bool]:
    settings = services.settings
    if key is None:
        return await _run(services, perform, atomic), False
    key = key[1:-1] if key.startswith('"') else key
    print_ = fingerprint(request.method, request.url.path, await request.body())
    claim = await _claim(user.id, key, print_, settings)
    if isinstance(claim, Answer):
        await _still_readable(user, claim.item_ids)
        return claim, True

    async def perform_and_settle(session: AsyncClientSession | None) -> Answer:
        answer = await perform(session)
        await _settle(claim, answer, settings, session)
        return answer

    try:
        return await _run(services, perform_and_settle, True), False
    except BaseException:
        await _release(claim)  # nothing was written: a retry may use the key again
        raise


async def _run(services: Services, perform: Perform, atomic: bool) -> Answer:
    if not atomic:
        return await perform(None)
    answer: Answer | None = None

    async def work(session: AsyncClientSession | None) -> None:
        nonlocal answer
        answer = await perform(session)

    await services.atomically(work)
    assert answer is not None
    return answer


@dataclass(frozen=True)
class Claim:
    record_id: Any
    lease: str


async def _claim(
    owner_id: Any, key: str, request_fingerprint: str, settings: Settings
) -> Claim | Answer:
    """Hold the key for this request, or the first answer to replay; 422 for another
    request's key, 409 when its first request is still running after the wait."""
    running: dict[str, Any] = {}
    async for _ in Retry(0.02, 0.25, budget_s=settings.idempotency_wait_s):
        found = await _claim_now(owner_id, key, request_fingerprint, settings)
        if not isinstance(found, dict):
            return found
        running = found  # its first request is still running: wait for its answer
    raise KeyInUse((running["lease_until"] - utcnow()).total_seconds())


async def _claim_now(
    owner_id: Any, key: str, request_fingerprint: str, settings: Settings
) -> Claim | Answer | dict[str, Any]:
    """The claim, the answer to replay, or the record of a request still running. A
    race (the record released, expired or taken over meanwhile) is tried again at once."""
    records = IdempotencyRecord.get_pymongo_collection()
    while True:
        now, lease = utcnow(), secrets.token_hex(8)
        lease_until = now + timedelta(seconds=settings.idempotency_lease_s)
        try:
            inserted = await records.insert_one(
                {
                    "owner_id": owner_id,
                    "key": key,
                    "fingerprint": request_fingerprint,
                    "state": KeyState.pending,
                    "lease": lease,
                    "lease_until": lease_until,
                    "headers": {},
                    "created_at": now,
                    "expires_at": now + timedelta(hours=settings.idempotency_ttl_hours),
                }
            )
            return Claim(inserted.inserted_id, lease)
        except DuplicateKeyError:
            pass
        found: dict[str, Any] | None = await records.find_one({"owner_id": owner_id, "key": key})
        if found is None:
            continue  # released or expired meanwhile: claim it again
        if found["expires_at"] <= now:  # expired; the TTL monitor has not run yet
            await records.delete_one({"_id": found["_id"], "expires_at": found["expires_at"]})
            continue
        if found["fingerprint"] != request_fingerprint:
            raise KeyReused()
        if found["state"] == KeyState.done:
            held = found.get("item_ids")
            held = held if isinstance(held, list) else []
            return Answer(found["status"], found["body"], found["headers"], held)
        if found["state"] == KeyState.gone:
            raise AnswerGone()
        if found["lease_until"] > now:
            return found
        # Its request died holding it: take it over.
        taken = await records.update_one(
            {"_id": found["_id"], "lease": found["lease"]},
            {"$set": {"lease": lease, "lease_until": lease_until}},
        )
        if taken.modified_count:
            return Claim(found["_id"], lease)


async def _settle(
    claim: Claim, answer: Answer, settings: Settings, session: AsyncClientSession | None
) -> None:
    """Record the answer, in the write's own transaction; if this request's lease was
    taken over meanwhile, the whole write is abandoned (the other request makes it)."""
    kept = {
        "state": KeyState.done,
        "status": answer.status,
        "body": answer.body,
        "headers": answer.headers,
        "item_ids": answer.item_ids,
        "item_owners": answer.item_owners,
    }
    settled = await IdempotencyRecord.get_pymongo_collection().update_one(
        {"_id": claim.record_id, "lease": claim.lease, "state": KeyState.pending},
        {
            "$set": {
                **({"state": KeyState.gone} if answer.gone else kept),
                "lease": None,
                "lease_until": None,
            }
        },
        session=session,
    )
    if not settled.modified_count:
        raise KeyInUse(settings.idempotency_lease_s)


async def forget_answers_holding(
    item_ids: list[Any], session: AsyncClientSession | None, owner_id: Any = None
) -> None:
    """Drop every kept answer that holds one of these items (or, given `owner_id`,
    any item of that owner's), as they are deleted: a retry then gets a 410, neither the
    deleted content nor a second write."""
    held = {"item_ids": {"$in": item_ids}} if owner_id is None else {"item_owners": owner_id}
    await IdempotencyRecord.get_pymongo_collection().update_many(
        {**held, "state": KeyState.done},
        {"$set": {"state": KeyState.gone}, "$unset": {"body": "", "headers": "", "status": ""}},
        session=session,
    )


async def _still_readable(user: User, item_ids: list[Any]) -> None:
    """A replay shows items as they were: only to a caller who may still read them all
    (a sharee since unshared gets a 410, not the content)."""
    wanted = list(dict.fromkeys(item_ids))
    if wanted:
        found = Item.get_pymongo_collection().find(policy.among(wanted), policy.ACL_FIELDS)
        if len(policy.readable_of(user, await found.to_list())) < len(wanted):
            raise AnswerWithheld()


async def _release(claim: Claim) -> None:
    await IdempotencyRecord.get_pymongo_collection().delete_one(
        {"_id": claim.record_id, "lease": claim.lease, "state": KeyState.pending}
    )
