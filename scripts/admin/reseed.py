"""What a seed record may change in a user or item that is already stored: the one place
that says it, so that re-running a seed never rolls back what changed since.

- A field the record leaves out is never touched (never reset to a default).
- A field the record gives is written only where the stored value is still the one seed
  last wrote (users), or the stored item is still the version seed last wrote, or the
  record carries a version at least as new as the stored one (items). Otherwise the
  stored value is kept and the line says so. Documents remember what seed last wrote
  in a `seeded` field; what seed did not write (an older seed, the API) only --overwrite
  changes.
- `--overwrite` writes every given user field, and replaces items wholesale, regardless.
- Nothing makes an existing account a superuser without `--promote`: that record is
  refused (an error), because whoever registered the address first would get it.
- Passwords of existing accounts are never changed: password recovery does that, ending
  the account's sessions as it must.
"""

from dataclasses import dataclass, field
from typing import Any

from api.items.writes import CONTENT, identical
from documents.search import search_terms
from scripts.admin.records import ItemRecord, UserRecord
from scripts.admin.superuser import describe

USER_FIELDS = ("username", "full_name", "is_active", "is_superuser", "email_verified")
ITEM_DEFAULTS: dict[str, Any] = {"description": None, "tags": [], "data": {}}


@dataclass
class UserChange:
    changes: dict[str, Any] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # given, but changed since seed wrote them
    refused: str | None = None
    promotes: bool = False


def seeded_user(record: UserRecord) -> dict[str, Any]:
    """What a new account's `seeded` remembers: every field seed sets, as it set them."""
    return record.model_dump(include=set(USER_FIELDS))


def _seeded(stored: dict[str, Any]) -> dict[str, Any]:
    """What seed last wrote to a stored document; nothing recorded when its `seeded` is
    no record of seed's (another tool wrote something else there)."""
    seeded = stored.get("seeded")
    return seeded if isinstance(seeded, dict) else {}


def user_change(
    record: UserRecord, stored: dict[str, Any], overwrite: bool, promote: bool
) -> UserChange:
    promotes = record.is_superuser and not stored.get("is_superuser")
    if promotes and not promote:
        return UserChange(
            refused=f"{stored['email']} belongs to the existing account {describe(stored)}, "
            "which is not a superuser; seed promotes an existing account only with --promote"
        )
    seeded = _seeded(stored)
    change = UserChange(promotes=promotes and promote)
    for name in USER_FIELDS:
        if name not in record.model_fields_set:
            continue
        value, current = getattr(record, name), stored.get(name)
        if identical(current, value):
            continue
        untouched = name in seeded and identical(seeded[name], current)
        if overwrite or untouched or (name == "is_superuser" and change.promotes):
            change.changes[name] = value
        else:
            change.kept.append(name)
    return change


def item_content(record: ItemRecord, stored: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """The content a record gives the stored item: the record's fields over the stored
    ones (all of the record's, defaults included, with --overwrite), with search terms."""
    given = CONTENT if overwrite else CONTENT & record.model_fields_set
    content = {name: stored.get(name, ITEM_DEFAULTS.get(name)) for name in CONTENT}
    content |= record.model_dump(include=given)
    terms = search_terms(str(content["title"]), content["description"], content["tags"] or [])
    return {**content, "search_terms": terms}


def item_kept(record: ItemRecord, stored: dict[str, Any], overwrite: bool) -> str | None:
    """Why the record must not replace the stored item's content, or None if it may."""
    version = stored.get("version", 1)
    given_version = "version" in record.model_fields_set
    if overwrite or (given_version and record.version >= version):
        return None
    if _seeded(stored).get("version") == version:
        return None  # nobody has changed it since seed wrote it
    older = f", and the record's version {record.version} is older" if given_version else ""
    return (
        f"kept item {stored['title']!r} of {record.owner} as stored: its version {version} "
        f"is not one seed wrote{older} (--overwrite replaces it)"
    )


def new_version(record: ItemRecord, stored: dict[str, Any]) -> int:
    """A change always gets a new version (old ETags must not match); a record carrying a
    newer one (an export of a later state) gets that."""
    given = record.version if "version" in record.model_fields_set else 0
    return max(int(stored.get("version", 1)) + 1, given)


def user_kept(record: UserRecord, kept: list[str]) -> str:
    return (
        f"kept {', '.join(kept)} of {record.email} as stored: changed since seed wrote "
        "it, or not written by seed (--overwrite sets it)"
    )
