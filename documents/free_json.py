"""Limits on client-supplied free-form JSON (an item's `data`).

MongoDB would reject some of this with a server error, and the rest would let one
client burden everyone: so each rule gives a clear validation message instead.
"""

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

MAX_BYTES = 64 * 1024
MAX_DEPTH = 10
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_json_object(value: dict[str, Any]) -> dict[str, Any]:
    _check(value, depth=1)
    size = len(
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    )
    if size > MAX_BYTES:
        raise ValueError(f"data is {size} bytes as JSON; the limit is {MAX_BYTES}")
    return value


def _check(value: Any, depth: int) -> None:
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise ValueError(f"data nests deeper than {MAX_DEPTH} levels")
        for key, child in value.items():
            _check_key(key)
            _check(child, depth + 1)
    elif isinstance(value, list):
        if depth > MAX_DEPTH:
            raise ValueError(f"data nests deeper than {MAX_DEPTH} levels")
        for child in value:
            _check(child, depth + 1)
    elif isinstance(value, str):
        _check_text(value)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError("data holds an integer outside the 64-bit range")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("data holds NaN or Infinity, which JSON does not allow")


def _check_key(key: str) -> None:
    if not key:
        raise ValueError("data keys must not be empty")
    if key.startswith("$"):
        raise ValueError(f"data key {key!r} starts with '$', which is reserved")
    if "." in key:
        raise ValueError(f"data key {key!r} contains '.', which is reserved for paths")
    if "\x00" in key:
        raise ValueError("data keys must not contain NUL characters")
    _check_text(key)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("data holds text that is not valid Unicode (a lone surrogate)") from None


# What the schema can say of the rules above: the key rules (not empty, no `$` first, no
# `.` or NUL anywhere). Depth, size and 64-bit integers are in the description.
KEY_PATTERN = "^[^$.\u0000][^.\u0000]*$"
RULES = (
    f"A JSON object: keys not empty, not starting with `$`, without `.`; at most "
    f"{MAX_DEPTH} levels deep and {MAX_BYTES // 1024} KiB as JSON; integers within 64 bits."
)
JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(check_json_object),
    Field(description=RULES, json_schema_extra={"propertyNames": {"pattern": KEY_PATTERN}}),
]
# The `data` of a merge patch: the same keys; its `null`s remove what they name, and the
# rules above apply to the merged result.
PatchObject = Annotated[
    dict[str, Any],
    Field(
        description=f"Merged into `data` (RFC 7396: `null` removes a key). {RULES}",
        json_schema_extra={"propertyNames": {"pattern": KEY_PATTERN}},
    ),
]
