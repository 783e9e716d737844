"""Changing who an item is shared with: one compare-and-swap of its whole share list.

`shares` and `readers` (the owner and every sharee) are rewritten together from the
item as read, in one single-document write that lands only if nobody changed them
meanwhile (`acl_version`); a writer that lost the race reads again and re-applies.
So a burst of concurrent share and unshare requests leaves a share list and a reader
set that agree, and a list another tool mangled is repaired by the next change (an
entry that is not a valid share is dropped).
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from api.core.errors import Conflict, DomainError, NotFound
from api.core.retry import Retry
from api.items import policy
from api.items.deps import require_manager
from api.items.writes import BACKOFF_MAX_S, BACKOFF_S, RACE_BUDGET_S
from documents import Item, User
from documents.base import utcnow
from documents.share import Access, Role


@dataclass(frozen=True)
class StoredShare:
    user_id: ObjectId
    role: Role
    created_at: datetime
    updated_at: datetime

    def stored(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "role": self.role.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def shares_of(doc: dict[str, Any]) -> list[StoredShare]:
    """The valid shares an item holds, in the order they were made (one per user)."""
    acl = policy.Acl.of(doc)
    found: dict[ObjectId, StoredShare] = {}
    raw = doc.get("shares")
    for share in raw if isinstance(raw, list) else ():
        if not isinstance(share, dict) or share.get("user_id") not in acl.roles:
            continue
        user_id = share["user_id"]
        made, changed = share.get("created_at"), share.get("updated_at")
        if user_id not in found and isinstance(made, datetime) and isinstance(changed, datetime):
            found[user_id] = StoredShare(user_id, acl.roles[user_id], made, changed)
    return list(found.values())


class TooManyShares(Conflict):
    code, title = "too-many-shares", "Too many shares"


# Given the caller's access and the shares as stored, the shares to write (or a
# DomainError: the caller may not make this change).
Change = Callable[[Access, list[StoredShare]], list[StoredShare]]


async def change_shares(
    item_id: ObjectId, user: User, change: Change
) -> tuple[list[StoredShare], list[StoredShare]]:
    """Apply `change` to the item's shares as stored, atomically (404 when `user` may not
    read the item); the shares before and as written. A change that changes nothing
    writes nothing."""
    items = Item.get_pymongo_collection()
    racing = Retry(BACKOFF_S, BACKOFF_MAX_S, budget_s=RACE_BUDGET_S, full_jitter=True)
    async for _ in racing:
        stored = await items.find_one(policy.by_id(item_id), projection=ACL_FIELDS)
        access = None if stored is None else policy.access(user, stored)
        if stored is None or access is None:
            raise NotFound("item")
        before = shares_of(stored)
        shares = change(access, before)
        if (written_acl := acl_written(stored, shares)) is None:
            return before, shares
        written = await items.find_one_and_update(
            {"_id": item_id, "acl_version": stored.get("acl_version")},
            {"$set": written_acl},
            projection={"_id": 1},
            return_document=ReturnDocument.AFTER,
        )
        if written is not None:
            return before, shares
    raise Conflict("The item's shares are changing too fast; try again.")


ACL_FIELDS = {"owner_id": 1, "readers": 1, "shares": 1, "acl_version": 1}


def acl_written(stored: dict[str, Any], shares: list[StoredShare]) -> dict[str, Any] | None:
    """The fields that give the stored item these shares (to `$set`, on the condition
    that its `acl_version` is still the one read); None when it has them already."""
    readers = [stored["owner_id"], *(share.user_id for share in shares)]
    if shares == shares_of(stored) and stored.get("readers") == readers:
        return None
    return {
        "shares": [share.stored() for share in shares],
        "readers": readers,
        "acl_version": _next(stored.get("acl_version")),
    }


@dataclass(frozen=True)
class Given:
    """A share an admin's seed record gives (its times when an export wrote them)."""

    user_id: ObjectId
    role: Role
    created_at: datetime | None = None
    updated_at: datetime | None = None


def with_roles(stored: dict[str, Any], given: list[Given], now: datetime) -> list[StoredShare]:
    """Exactly these shares, one per user (the last given wins), keeping the stored
    ones that already have that role as they are."""
    had = {share.user_id: share for share in shares_of(stored)}
    latest = {share.user_id: share for share in given}
    shares: list[StoredShare] = []
    for share in latest.values():
        old = had.get(share.user_id)
        if old is not None and old.role == share.role:
            shares.append(old)
            continue
        made = share.created_at or (old.created_at if old is not None else now)
        shares.append(StoredShare(share.user_id, share.role, made, share.updated_at or made))
    return shares


def _next(version: Any) -> int:
    """The next `acl_version` (1 after none, or after one another tool mangled)."""
    valid = isinstance(version, int) and not isinstance(version, bool) and 0 <= version < 2**62
    return version + 1 if valid else 1


def sharing(target: User, role: Role, most: int, owner_id: Any) -> Change:
    """Share with `target` as `role`, or set their role: managers only."""

    def change(access: Access, shares: list[StoredShare]) -> list[StoredShare]:
        require_manager(access)
        if target.id == owner_id:
            raise OwnerNotSharee()
        now = utcnow()
        for n, share in enumerate(shares):
            if share.user_id == target.id:
                if share.role == role:
                    return shares
                return [*shares[:n], replace(share, role=role, updated_at=now), *shares[n + 1 :]]
        if len(shares) >= most:
            raise TooManyShares(f"An item may be shared with at most {most} users.")
        assert target.id is not None
        return [*shares, StoredShare(target.id, role, now, now)]

    return change


def unsharing(user_id: ObjectId, caller: User) -> Change:
    """End `user_id`'s share: a manager ends anyone's, a sharee their own (leaves)."""

    def change(access: Access, shares: list[StoredShare]) -> list[StoredShare]:
        if user_id != caller.id:
            require_manager(access)
        kept = [share for share in shares if share.user_id != user_id]
        if len(kept) == len(shares):
            raise NotFound("share")
        return kept

    return change


class OwnerNotSharee(DomainError):
    status, code, title = 422, "owner-not-sharee", "Owner cannot be a sharee"
    detail = "The item's owner has every right to it already; share it with someone else."


async def give_readers() -> None:
    """Items stored before sharing (or by another tool) have no `readers`: their owner
    becomes their reader, so lists find them. Run at start-up: one scan of the items
    collection, a write only where one is missing, safe to run in several processes."""
    await Item.get_pymongo_collection().update_many(*policy.READERS_FOR_READERLESS)
