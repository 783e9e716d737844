"""Idempotency keys: the first answer to a request, kept so a retry gets it again.

One record per (caller, key). While the first request runs it is `pending` under a
lease; it becomes `done` with the answer in the same transaction as the write it
answers, so a crash leaves either both or neither. An answer that holds an item is
dropped (the record turns `gone`) in the transaction that deletes the item.
"""

from datetime import datetime
from enum import StrEnum

from beanie import PydanticObjectId
from pydantic import Field
from pymongo import IndexModel

from documents.base import ApiDocument


class KeyState(StrEnum):
    pending = "pending"
    done = "done"
    gone = "gone"  # its answer held an item since deleted: that answer is not kept


class IdempotencyRecord(ApiDocument):
    owner_id: PydanticObjectId
    key: str
    fingerprint: str  # sha256 of method, path and the canonical JSON body
    state: KeyState
    lease: str | None = None  # who holds a pending key, and until when
    lease_until: datetime | None = None
    status: int | None = None
    body: bytes | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # The items whose content `body` holds, and their owners: deleting one of them (or
    # its owner's account) drops the answer.
    item_ids: list[PydanticObjectId] = Field(default_factory=list)
    item_owners: list[PydanticObjectId] = Field(default_factory=list)
    created_at: datetime
    expires_at: datetime

    class Settings:
        name = "idempotency_keys"
        indexes = [  # noqa: RUF012
            IndexModel([("owner_id", 1), ("key", 1)], unique=True, name="owner_key"),
            IndexModel("expires_at", expireAfterSeconds=0),
            IndexModel("item_ids", name="item_ids", sparse=True),
        ]
