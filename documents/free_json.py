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
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("data holds NaN or Infinity, which JSON does not allow")
        # Integers must fit BSON's 64 bits; floats are held to the same range, so that one
        # plain `minimum`/`maximum` in the schema states the rule for every number.
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError("data holds a number outside the 64-bit integer range")


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


# The schema of the rules above, as exactly as JSON Schema can say them: key rules at
# every level (`propertyNames`), the depth by one named schema per level left
# (`DataValue9` may hold containers nine deep, `DataValue0` only scalars), numbers in
# range. The size limit and lone surrogates are in the description.
KEY_PATTERN = "^[^$.\u0000][^.\u0000]*$"
KEYS = {"pattern": KEY_PATTERN}
SCALAR: list[dict[str, Any]] = [
    {"type": "null"},
    {"type": "boolean"},
    {"type": "string"},
    {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX},
]
RULES = (
    f"A JSON object: keys not empty, not starting with `$`, without `.`; at most "
    f"{MAX_DEPTH} levels deep and {MAX_BYTES // 1024} KiB as JSON; numbers within the "
    "64-bit integer range; no lone surrogates."
)


def _value(levels_left: int) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/DataValue{levels_left}"}


def data_value_schemas() -> dict[str, dict[str, Any]]:
    """The OpenAPI components `JsonObject` refers to: a value with `n` container levels
    left below it, for n = 0..MAX_DEPTH - 1."""
    schemas: dict[str, dict[str, Any]] = {"DataValue0": {"anyOf": SCALAR}}
    for n in range(1, MAX_DEPTH):
        below = _value(n - 1)
        schemas[f"DataValue{n}"] = {
            "anyOf": [
                *SCALAR,
                {"type": "array", "items": below},
                {"type": "object", "propertyNames": KEYS, "additionalProperties": below},
            ]
        }
    return schemas


_DATA_SCHEMA = {"propertyNames": KEYS, "additionalProperties": _value(MAX_DEPTH - 1)}
JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(check_json_object),
    Field(description=RULES, json_schema_extra=_DATA_SCHEMA),
]


# The `data` of a merge patch: the same keys; its `null`s remove what they name, and the
# rules above apply to the merged result.
def check_patch_object(value: dict[str, Any]) -> dict[str, Any]:
    """A patch's `data`: its keys, values and depth by the rules above as it is sent (a
    bad key is refused before anything else is looked at); its size counts once merged."""
    _check(value, depth=1)
    return value


PatchObject = Annotated[
    dict[str, Any],
    AfterValidator(check_patch_object),
    Field(
        description=f"Merged into `data` (RFC 7396: `null` removes a key). {RULES}",
        json_schema_extra=_DATA_SCHEMA,
    ),
]
