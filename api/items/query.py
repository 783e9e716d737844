"""What `GET /items` accepts beyond paging: `where`, `sort`, `fields`.

`where` is MongoDB filter syntax cut down to a safe subset. It is compiled here,
value by value, into a new filter (nothing the client sent reaches the database
unchecked), and the route always ANDs it with the caller's owner scope, so no
filter can widen what a user sees.
"""

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import TypeAdapter, ValidationError

from documents import ItemFields
from documents.base import ECMA_WHITESPACE

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
# RFC 3339's date-time (what `format: date-time` means), offset required; nothing else
# Pydantic would read as a time (a bare number is a Unix timestamp to it).
# The pattern says it too: JSON Schema's `format` alone is an annotation, not a rule.
RFC3339_PATTERN = (
    # Years 1000-9998 (a time near either end of 1-9999 may not fit once moved to UTC).
    r"^(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    r"-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339 = re.compile(RFC3339_PATTERN)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time with its offset, or ValueError."""
    if not _RFC3339.fullmatch(text):  # fullmatch: Python's `$` would allow a final newline
        raise ValueError(
            f"{text!r} is not an RFC 3339 date-time with an offset (a time zone, e.g. Z)"
        )
    try:
        parsed = _DATETIME.validate_python(text)
        parsed.astimezone(UTC)  # as stored: an offset past year 1 or 9999 does not fit
    except (ValidationError, OverflowError):
        raise ValueError(f"{text!r} is not a valid date-time (or not one we can store)") from None
    return parsed


_PATH_PART = re.compile(r"^[^$.\x00][^.\x00]*$")


class InvalidQuery(ValueError):
    """A client's query parameter that cannot be run; the message names what is wrong."""


def compile_where(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_WHERE_CHARS:
        raise InvalidQuery(f"where is longer than {MAX_WHERE_CHARS} characters")
    try:
        parsed = json.loads(raw, parse_constant=_no_constants)
    except ValueError:
        raise InvalidQuery("where is not valid JSON") from None
    except RecursionError:  # nested deeper than the parser goes: no filter is that deep
        raise InvalidQuery(f"where nests deeper than {MAX_NESTING} levels") from None
    if not isinstance(parsed, dict):
        raise InvalidQuery("where must be a JSON object")
    budget = [MAX_CONDITIONS]
    return _compile_object(parsed, depth=0, budget=budget)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's json would take them


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
            return parse_rfc3339(value)
        except ValueError as error:
            raise InvalidQuery(f"{field}: {error}") from None
    if field == "version" and isinstance(value, float) and value.is_integer():
        value = int(value)  # 1.0 is an integer to JSON Schema, so to us too
    if field == "version" and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidQuery("version compares with an integer")
    if isinstance(value, dict | list):
        # Only scalars: an object here could smuggle operators, and lists have $in.
        raise InvalidQuery(f"{field} compares with a single value (string, number, bool, null)")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidQuery("values may not contain NUL characters")
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= 2**63:
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
    names = [name.strip(ECMA_WHITESPACE) for name in value.split(",")]
    names = [name for name in names if name]
    unknown = [name for name in names if name not in SHOWN_FIELDS and name != "id"]
    if unknown or not names:
        raise InvalidQuery(f"fields takes names from: id, {', '.join(SHOWN_FIELDS)}")
    return {name: 1 for name in names if name != "id"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


WHERE_DESCRIPTION = (
    f"A filter in MongoDB syntax (JSON): fields {', '.join(sorted(TOP_FIELDS))} or "
    f"data.<path>; operators {', '.join(sorted(COMPARISONS | LIST_OPERATORS))}, $exists, "
    f"and $and/$or up to {MAX_NESTING} levels; at most {MAX_CONDITIONS} conditions and "
    f"{MAX_WHERE_CHARS} characters."
)


def where_schemas() -> dict[str, dict[str, Any]]:
    """`where` as OpenAPI components, rule for rule with the compiler above (what they
    cannot say is in WHERE_DESCRIPTION). `WhereFilter0` is the whole filter; each
    `$and`/`$or` goes one level down, to `WhereFilter{MAX_NESTING}`, which has none."""
    number = {"type": "number", "exclusiveMinimum": -(2**63), "exclusiveMaximum": 2**63}
    values = {
        "Scalar": {
            "anyOf": [
                {"type": "string", "pattern": "^[^\\u0000]*$"},
                number,
                {"type": "boolean"},
                {"type": "null"},
            ]
        },
        "Date": {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN},
        "Version": {"type": "integer", "exclusiveMinimum": -(2**63), "exclusiveMaximum": 2**63},
    }
    schemas: dict[str, Any] = {}
    for kind, value in values.items():
        schemas[f"Where{kind}"] = value
        listed = {"type": "array", "maxItems": MAX_LIST, "items": _ref(f"Where{kind}")}
        operators = {
            **{op: _ref(f"Where{kind}") for op in sorted(COMPARISONS)},
            **{op: listed for op in sorted(LIST_OPERATORS)},
            "$exists": {"type": "boolean"},
        }
        schemas[f"Where{kind}Condition"] = {
            "anyOf": [
                _ref(f"Where{kind}"),
                {
                    "type": "object",
                    "properties": operators,
                    "additionalProperties": False,
                    "minProperties": 1,
                },
            ]
        }
    fields = {
        "title": _ref("WhereScalarCondition"),
        "tags": _ref("WhereScalarCondition"),
        "version": _ref("WhereVersionCondition"),
        **{name: _ref("WhereDateCondition") for name in sorted(DATE_FIELDS)},
    }
    part = "[^$.\\u0000][^.\\u0000]*"
    data_path = f"^data(\\.{part}){{1,{MAX_PATH_PARTS}}}$"
    for depth in range(MAX_NESTING + 1):
        properties: dict[str, Any] = dict(fields)
        if depth < MAX_NESTING:
            below = _ref(f"WhereFilter{depth + 1}")
            listed = {"type": "array", "minItems": 1, "maxItems": MAX_LIST, "items": below}
            properties |= {op: listed for op in sorted(LOGICAL)}
        schemas[f"WhereFilter{depth}"] = {
            "type": "object",
            "properties": properties,
            "patternProperties": {data_path: _ref("WhereScalarCondition")},
            "additionalProperties": False,
        }
    return schemas
