"""What `GET /items` accepts beyond paging: `where`, `sort`, `fields`.

`where` is MongoDB filter syntax cut down to a safe subset. It is compiled here,
value by value, into a new filter (nothing the client sent reaches the database
unchecked), and the route always ANDs it with the caller's owner scope, so no
filter can widen what a user sees.
"""

import json
import re
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import TypeAdapter, ValidationError

from documents import ItemFields

MAX_WHERE_CHARS = 4096
MAX_NESTING = 5
MAX_CONDITIONS = 50
MAX_LIST = 100
MAX_PATH_PARTS = 10

COMPARISONS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"}
LIST_OPERATORS = {"$in", "$nin"}
LOGICAL = {"$and", "$or"}
DATE_FIELDS = {"created_at", "updated_at"}
TOP_FIELDS = {"title", "tags", "version", *DATE_FIELDS}
SORT_FIELDS = ("created_at", "updated_at", "title")
# `sort`'s values: a field, ascending, or `-` and the field, descending.
Sort = Literal["created_at", "-created_at", "updated_at", "-updated_at", "title", "-title"]
# What `fields` may name: the item fields a list shows (`id` always comes along).
SHOWN_FIELDS = tuple(name for name in ItemFields.model_fields if name != "id")

# `fields` as the schema states it: names from SHOWN_FIELDS (or id), comma-separated,
# with blanks and empty entries allowed around them.
_NAME = "|".join(("id", *SHOWN_FIELDS))
FIELDS_PATTERN = rf"^[\s,]*(?:{_NAME})(?:\s*,[\s,]*(?:{_NAME}))*[\s,]*$"

_DATETIME = TypeAdapter(datetime)
_PATH_PART = re.compile(r"^[^$.\x00][^.\x00]*$")


class InvalidQuery(ValueError):
    """A client's query parameter that cannot be run; the message names what is wrong."""


def compile_where(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_WHERE_CHARS:
        raise InvalidQuery(f"where is longer than {MAX_WHERE_CHARS} characters")
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise InvalidQuery("where is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidQuery("where must be a JSON object")
    budget = [MAX_CONDITIONS]
    return _compile_object(parsed, depth=0, budget=budget)


def _compile_object(query: dict[str, Any], depth: int, budget: list[int]) -> dict[str, Any]:
    if depth > MAX_NESTING:
        raise InvalidQuery(f"where nests $and/$or deeper than {MAX_NESTING} levels")
    compiled: dict[str, Any] = {}
    for key, value in query.items():
        if key in LOGICAL:
            compiled[key] = _compile_logical(key, value, depth, budget)
        elif key.startswith("$"):
            raise InvalidQuery(f"operator {key} is not allowed at this level (use $and or $or)")
        else:
            budget[0] -= 1
            if budget[0] < 0:
                raise InvalidQuery(f"where has more than {MAX_CONDITIONS} conditions")
            compiled[_field(key)] = _compile_condition(key, value)
    return compiled


def _compile_logical(op: str, value: Any, depth: int, budget: list[int]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value or len(value) > MAX_LIST:
        raise InvalidQuery(f"{op} takes a list of 1 to {MAX_LIST} filter objects")
    if not all(isinstance(part, dict) for part in value):
        raise InvalidQuery(f"{op} takes a list of filter objects")
    return [_compile_object(part, depth + 1, budget) for part in value]


def _field(name: str) -> str:
    if name in TOP_FIELDS:
        return name
    if name.startswith("data."):
        parts = name.split(".")[1:]
        if len(parts) > MAX_PATH_PARTS or not all(_PATH_PART.match(part) for part in parts):
            raise InvalidQuery(f"field {name!r} is not a valid path inside data")
        return name
    allowed = ", ".join(sorted(TOP_FIELDS))
    raise InvalidQuery(f"field {name!r} cannot be queried (use {allowed} or data.<path>)")


def _compile_condition(field: str, condition: Any) -> Any:
    if not isinstance(condition, dict):
        return _value(field, condition)
    if not condition:
        raise InvalidQuery(f"the condition on {field} is empty")
    compiled: dict[str, Any] = {}
    for op, operand in condition.items():
        if op in COMPARISONS:
            compiled[op] = _value(field, operand)
        elif op in LIST_OPERATORS:
            if not isinstance(operand, list) or len(operand) > MAX_LIST:
                raise InvalidQuery(f"{op} on {field} takes a list of at most {MAX_LIST} values")
            compiled[op] = [_value(field, item) for item in operand]
        elif op == "$exists":
            if not isinstance(operand, bool):
                raise InvalidQuery(f"$exists on {field} takes true or false")
            compiled[op] = operand
        elif op.startswith("$"):
            raise InvalidQuery(f"operator {op} is not allowed")
        else:
            raise InvalidQuery(f"the condition on {field} must use operators, not key {op!r}")
    return compiled


def _value(field: str, value: Any) -> Any:
    if field in DATE_FIELDS:
        if not isinstance(value, str):
            raise InvalidQuery(f"{field} compares with an RFC 3339 date-time string")
        try:
            parsed = _DATETIME.validate_python(value)
        except ValidationError:
            raise InvalidQuery(f"{value!r} is not an RFC 3339 date-time for {field}") from None
        if parsed.tzinfo is None:
            raise InvalidQuery(f"{value!r} needs a time zone (e.g. Z) for {field}")
        return parsed
    if field == "version" and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidQuery("version compares with an integer")
    if isinstance(value, dict | list):
        # Only scalars: an object here could smuggle operators, and lists have $in.
        raise InvalidQuery(f"{field} compares with a single value (string, number, bool, null)")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidQuery("values may not contain NUL characters")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        raise InvalidQuery(f"{value} does not fit in 64 bits")
    return value


assert {value.lstrip("-") for value in get_args(Sort)} == set(SORT_FIELDS)


def parse_sort(value: str) -> list[tuple[str, int]]:
    field, direction = (value[1:], -1) if value.startswith("-") else (value, 1)
    if field not in SORT_FIELDS:
        options = ", ".join(f"{f}, -{f}" for f in SORT_FIELDS)
        raise InvalidQuery(f"sort {value!r} is not one of {options}")
    return [(field, direction), ("_id", direction)]


def parse_fields(value: str) -> dict[str, int]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SHOWN_FIELDS and name != "id"]
    if unknown or not names:
        raise InvalidQuery(f"fields takes names from: id, {', '.join(SHOWN_FIELDS)}")
    return {name: 1 for name in names if name != "id"}
