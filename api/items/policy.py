"""Who may read, change and manage an item: the one place that says it.

Every path that touches items asks here: by id, lists (whatever `where`, `q`, `tag`
or cursor they carry), batches, idempotent replays, the live feed (its subscription
and each event), user deletion and the admin export. A test (tests/core/
test_access_policy.py) fails when another module builds an owner filter of its own,
so a new path cannot go around the rule.

The rule today: an item is its owner's; a superuser may read and change anyone's.
"""

from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from api.core.errors import Forbidden
from documents import Item, User


@dataclass(frozen=True)
class Scope:
    """The items a caller may read (narrowed to one owner's on request): as a query
    filter for lists and exports, and as a test of one item for the live feed's events,
    which must not read the database per subscriber."""

    owner_id: ObjectId | None  # None: every owner's (a superuser, or an admin script)

    @property
    def filter(self) -> dict[str, Any]:
        """ANDed last, outside any client filter, so no filter can widen it."""
        return {} if self.owner_id is None else {"owner_id": self.owner_id}

    def admits(self, owner_id: ObjectId) -> bool:
        return self.owner_id is None or owner_id == self.owner_id

    def covers(self, other: "Scope") -> bool:
        """Whether every item `other` admits, this one admits too."""
        return self.owner_id is None or other.owner_id == self.owner_id


EVERYONE = Scope(None)  # what the admin scripts read: they act for the operator


def readable(user: User, owner_id: ObjectId | None = None, doing: str = "read") -> Scope:
    """The items `user` may read, only `owner_id`'s when given (Forbidden when that is
    someone else's and `user` is no superuser: `doing` names what was asked)."""
    if user.is_superuser:
        return Scope(owner_id)
    if owner_id not in (None, user.id):
        raise Forbidden(f"Only superusers may {doing} other users' items.")
    return Scope(user.id)


def by_id(item_id: ObjectId, user: User) -> dict[str, Any]:
    """The filter for one item by id, when `user` may read it: someone else's item then
    matches nothing, a 404 and not a 403, so ids of others' items are not confirmed."""
    return {"_id": item_id, **readable(user).filter}


def may_read(user: User, item: Item) -> bool:
    return readable(user).admits(item.owner_id)


def may_change(user: User, item: Item) -> bool:
    """Change its content or delete it: whoever may read it, today."""
    return may_read(user, item)


def may_manage(user: User, item: Item) -> bool:
    """Decide who else may see it: its owner (and a superuser)."""
    return user.is_superuser or item.owner_id == user.id


def owned_by(user_id: ObjectId) -> dict[str, Any]:
    """The items `user_id` owns (not those they may read: what deleting the account
    removes), and the fields that make a new item theirs."""
    return {"owner_id": user_id}
