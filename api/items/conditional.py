"""ETags from an item's `version`, and the If-Match / If-None-Match checks (RFC 9110)."""

from typing import Annotated

from fastapi import Header

from api.core.errors import DomainError

IfMatch = Annotated[
    str | None, Header(description="Only act if the item's ETag is one of these (else 412)")
]
IfNoneMatch = Annotated[
    str | None, Header(description="Answer 304 if the item's ETag is one of these")
]


class PreconditionFailed(DomainError):
    status, code, title = 412, "precondition-failed", "Precondition failed"
    detail = "The item has changed since you read it (its ETag no longer matches); re-read it."


def etag(version: int) -> str:
    return f'"{version}"'


def _tags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def matches(header: str, version: int) -> bool:
    """Whether an If-Match / If-None-Match header names this version (or is `*`)."""
    tags = _tags(header)
    return "*" in tags or etag(version) in tags


def expected_version(if_match: str | None, current: int) -> int | None:
    """The version a write must find (None: any), or 412 when If-Match names another.
    `If-Match: *` matches whatever the item is now (RFC 9110 13.1.1): it pins none."""
    if if_match is None or "*" in _tags(if_match):
        return None
    if not matches(if_match, current):
        raise PreconditionFailed()
    return current
