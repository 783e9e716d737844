"""Seed files: a JSON array or NDJSON, each record with the line it starts on, and the
models that validate a record with the API's own rules."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from documents import ItemCreate, UserCreate
from documents.base import ObjectIdParam
from documents.share import Role
from documents.user import Password

_decoder = json.JSONDecoder()

# Marks a stored hash that no password matches (bcrypt refuses it outright).
NO_PASSWORD = "!no-password:"
BCRYPT_HASH = r"^(\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}|!no-password:[\w-]+)$"


class UserRecord(UserCreate):
    """A user line. Without a password or hash (an export without --with-hashes), a new
    account gets none that works: it must be reset before anyone can log in."""

    # Lines arrive parsed (Python values, not JSON text): strict mode would refuse their
    # date strings, which JSON itself has no other way to write.
    model_config = ConfigDict(strict=False)

    kind: Literal["user"]
    id: ObjectIdParam | None = None
    password: Password | None = None  # type: ignore[assignment]
    hashed_password: str | None = Field(default=None, pattern=BCRYPT_HASH)
    is_active: bool = True
    email_verified: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if self.password is not None and self.hashed_password is not None:
            raise ValueError("give password or hashed_password, not both")
        return self


class ShareRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, description="The sharee's email or username")
    role: Role
    # As an export writes them, so a round trip keeps them; a new share: now.
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ItemRecord(ItemCreate):
    model_config = ConfigDict(strict=False)  # as UserRecord's

    kind: Literal["item"]
    owner: str = Field(min_length=1, description="The owner's email or username")
    id: ObjectIdParam | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = Field(default=1, ge=1)
    # Given: exactly these shares (an empty list: shared with nobody). Left out: the
    # stored item's shares stay as they are.
    shares: list[ShareRecord] | None = Field(default=None, max_length=10_000)


SeedRecord = TypeAdapter[UserRecord | ItemRecord](
    Annotated[UserRecord | ItemRecord, Field(discriminator="kind")]
)


@dataclass
class RawRecord:
    source: str
    line: int
    value: Any = None
    error: str | None = None
    size: int = 0  # bytes of the file this record accounts for (progress)


def read_records(path: Path) -> Iterator[RawRecord]:
    """Records of a JSON array (`[{...}, ...]`) or of NDJSON (one object a line)."""
    with path.open(encoding="utf-8") as handle:
        head = handle.read(1024)
        handle.seek(0)
        if head.lstrip().startswith("["):
            yield from _json_array(str(path), handle.read())
        else:
            yield from _ndjson(str(path), handle)


def _ndjson(source: str, lines: Any) -> Iterator[RawRecord]:
    for number, line in enumerate(lines, start=1):
        size = len(line.encode("utf-8"))
        if not line.strip():
            continue
        try:
            yield RawRecord(source, number, value=json.loads(line), size=size)
        except ValueError as error:
            yield RawRecord(source, number, error=f"invalid JSON: {error}", size=size)


def _json_array(source: str, text: str) -> Iterator[RawRecord]:
    position = text.index("[") + 1
    line = 1 + text.count("\n", 0, position)
    while True:
        start = _skip_space(text, position)
        if start >= len(text) or text[start] == "]":
            return
        line += text.count("\n", position, start)
        try:
            value, end = _decoder.raw_decode(text, start)
        except ValueError as error:
            yield RawRecord(source, line, error=f"invalid JSON: {error}", size=len(text) - start)
            return
        yield RawRecord(source, line, value=value, size=len(text[position:end].encode("utf-8")))
        line += text.count("\n", start, end)
        position = _skip_space(text, end)
        if position < len(text) and text[position] == ",":
            position += 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
