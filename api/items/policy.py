"""Who may read, change and manage an item: the one place that says it.

Every path that touches items asks here: by id, lists (whatever `where`, `q`, `tag`
or cursor they carry), batches, idempotent replays, the live feed (its subscription
and each event), user deletion and the admin export. A test (tests/core/
test_access_policy.py) fails when another module builds an owner or reader filter of
its own, so a new path cannot go around the rule.

The rule: an item is its owner's, who may share it (documents/share.py) with viewers
(read, list, watch) and editors (also change its content). Only the owner deletes it
or manages its shares. A superuser may read, change and manage anyone's.

Each item stores `readers` (the owner and every sharee) beside its `shares`: lists
match `readers` (one multikey index per list order serves them), and an item's own
document says who may see it, so the live feed decides each event without a read.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

from api.core.errors import Forbidden
from documents import User
from documents.share import Access, Role

ROLES = {role.value: role for role in Role}
CHANGERS = frozenset({Access.owner, Access.editor, Access.admin})
MANAGERS = frozenset({Access.owner, Access.admin})


@dataclass(frozen=True)
class Acl:
    """What one stored item says about who may see it: its owner, and the roles of the
    sharees that are in its `readers` too (an entry another tool mangled counts for
    nobody: the item stays its owner's)."""

    owner_id: Any
    roles: Mapping[ObjectId, Role] = field(default_factory=dict)

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> "Acl":
        readers = doc.get("readers")
        readers = set(readers) if isinstance(readers, list) else set()
        roles: dict[ObjectId, Role] = {}
        shares = doc.get("shares")
        for share in shares if isinstance(shares, list) else ():
            if not isinstance(share, dict):
                continue
            user_id, role = share.get("user_id"), share.get("role")
            if isinstance(user_id, ObjectId) and user_id in readers and role in ROLES:
                roles[user_id] = ROLES[role]
        return cls(doc.get("owner_id"), roles)


@dataclass(frozen=True)
class Scope:
    """The items a caller may read (narrowed to one owner's on request): as a query
    filter for lists and exports, and as a test of one item for the live feed's events,
    which must not read the database per subscriber."""

    user_id: ObjectId | None  # who asks (None: an admin script, acting for the operator)
    everyone: bool = False  # a superuser or an admin script: every owner's items
    owner_id: ObjectId | None = None  # only this owner's (superusers only)

    @property
    def filter(self) -> dict[str, Any]:
        """ANDed last, outside any client filter, so no filter can widen it."""
        if self.everyone:
            return {} if self.owner_id is None else {"owner_id": self.owner_id}
        return {"readers": self.user_id}

    def access(self, acl: Acl) -> Access | None:
        """The caller's relation to an item, or None when it may not read it."""
        if self.owner_id is not None and acl.owner_id != self.owner_id:
            return None
        if acl.owner_id == self.user_id and self.user_id is not None:
            return Access.owner
        if self.everyone:
            return Access.admin
        role = acl.roles.get(self.user_id) if self.user_id is not None else None
        return None if role is None else Access(role.value)

    def covers(self, other: "Scope") -> bool:
        """Whether every item `other` admits, this one admits too."""
        if self.everyone:
            return self.owner_id is None or other.owner_id == self.owner_id
        return not other.everyone and other.user_id == self.user_id


EVERYONE = Scope(None, everyone=True)  # what the admin scripts read


def readable(user: User, owner_id: ObjectId | None = None, doing: str = "read") -> Scope:
    """The items `user` may read, only `owner_id`'s when given (Forbidden when that is
    someone else's and `user` is no superuser: `doing` names what was asked)."""
    if user.is_superuser:
        return Scope(user.id, everyone=True, owner_id=owner_id)
    if owner_id not in (None, user.id):
        raise Forbidden(f"Only superusers may {doing} other users' items.")
    return Scope(user.id, owner_id=owner_id)


def by_id(item_id: ObjectId) -> dict[str, Any]:
    """The filter for one item by id, with ACL_FIELDS read along: whether the caller may
    read it is `access` of what is found (None: a 404 and not a 403, so ids of others'
    items are not confirmed). Only the `_id` is matched: a condition on the reader too
    (an `$or` of owner and readers) makes the embedded server scan the collection."""
    return {"_id": item_id}


def among(item_ids: list[Any]) -> dict[str, Any]:
    """The filter for these items, to be judged by `readable_of`."""
    return {"_id": {"$in": item_ids}}


ACL_FIELDS = {"owner_id": 1, "readers": 1, "shares": 1}


def readable_of(user: User, docs: list[Mapping[str, Any]]) -> set[Any]:
    """The ids of these stored items (read with ACL_FIELDS at least) `user` may read."""
    scope = readable(user)
    return {doc["_id"] for doc in docs if scope.access(Acl.of(doc)) is not None}


def access(user: User, doc: Mapping[str, Any]) -> Access | None:
    """`user`'s relation to the stored item `doc` (None: they may not read it)."""
    return readable(user).access(Acl.of(doc))


def may_change(access: Access | None) -> bool:
    """Change its content: owner, editor, superuser."""
    return access in CHANGERS


def may_manage(access: Access | None) -> bool:
    """Delete it, decide who else may see it: its owner (and a superuser)."""
    return access in MANAGERS


def changeable_by(user: User, access: Access | None) -> dict[str, Any]:
    """Added to a write's filter: the item is still one `user` may change, as the
    `access` it was read with, when the write lands (a share revoked after the item was
    read makes it match nothing)."""
    if user.is_superuser:
        return {}
    if access is Access.owner:
        return {"owner_id": user.id}
    return {"readers": user.id, "shares": {"$elemMatch": {"user_id": user.id, "role": "editor"}}}


def manageable_by(user: User) -> dict[str, Any]:
    """Added to a delete's or share change's filter: `user` still manages the item."""
    return {} if user.is_superuser else {"owner_id": user.id}


def with_access(user_id: ObjectId, relations: list[str]) -> dict[str, Any]:
    """A list's `access=owner|editor|viewer` narrowing: items where the caller is one of
    these (ANDed with the scope, which it can only narrow)."""
    ways: list[dict[str, Any]] = []
    for relation in dict.fromkeys(relations):
        if relation == Access.owner:
            ways.append({"owner_id": user_id})
        else:
            role = {"user_id": user_id, "role": relation}
            ways.append({"owner_id": {"$ne": user_id}, "shares": {"$elemMatch": role}})
    return ways[0] if len(ways) == 1 else {"$or": ways}


def owned_by(user_id: ObjectId) -> dict[str, Any]:
    """The items `user_id` owns (not those they may read: what deleting the account
    removes)."""
    return {"owner_id": user_id}


def new_item_of(owner_id: ObjectId) -> dict[str, Any]:
    """The fields that make a new item `owner_id`'s, shared with nobody."""
    return {"owner_id": owner_id, "readers": [owner_id], "shares": []}


def shared_with(user_id: ObjectId) -> dict[str, Any]:
    """Others' items shared with `user_id` (what deleting the account unshares), whose
    `readers` and `shares` are lists (one another tool mangled is left as it is)."""
    lists = [{"readers": {"$type": "array"}}, {"shares": {"$type": "array"}}]
    return {"readers": user_id, "owner_id": {"$ne": user_id}, "$and": lists}


# Items stored before sharing, or by another tool, without `readers`: their owner reads
# them (a filter, and the update pipeline that gives them their reader).
READERS_FOR_READERLESS: tuple[dict[str, Any], list[dict[str, Any]]] = (
    {"readers": {"$exists": False}, "owner_id": {"$exists": True}},
    [{"$set": {"readers": ["$owner_id"]}}],
)
