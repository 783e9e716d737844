"""Schemathesis hooks (SCHEMATHESIS_HOOKS): value generators for formats whose full rules
no JSON Schema keyword can state. Each is narrow, and says which rule it stands for."""

import os
import uuid

import schemathesis
from hypothesis import strategies as st

from documents.item import MAX_TAGS, tag_key

# Email addresses at a domain that is not special-use: email-validator refuses `.arpa`
# (and `.local`, `.test`, ...), which the description says and `format: email` cannot;
# Hypothesis draws domains from the IANA list, `arpa` included.
_LOCAL = st.from_regex(r"\A[a-z0-9](?:[a-z0-9._%+-]{0,30}[a-z0-9])?\Z").filter(
    lambda local: ".." not in local
)
schemathesis.openapi.format(
    "email",
    st.builds(
        "{}@{}".format, _LOCAL, st.sampled_from(["example.com", "example.org", "mail.example.net"])
    ),
)

# Passwords of at most 72 UTF-8 bytes: bcrypt's limit, which the description says and
# `maxLength` (characters) cannot. ASCII keeps every generated one within it.
schemathesis.openapi.format(
    "password",
    st.from_regex(r"\A[ -~]{0,30}[0-9][ -~]{0,20}[A-Z][ -~]{0,19}\Z").filter(
        lambda password: len(password) >= 8
    ),
)


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    """Drop positive cases that break the one item rule no keyword states: at most 20
    *distinct* tags once trimmed and lower-cased (`maxItems` counts them as sent; the
    contract lets duplicates through, merged). Negative cases are all kept."""
    meta = case.meta
    if meta is not None and meta.generation.mode.is_negative:
        return True
    return all(len(distinct) <= MAX_TAGS for distinct in _tag_sets(case.body))


def _tag_sets(body: object) -> list[set[str]]:
    """The distinct tags of each item a body holds: itself, or a batch's items and patches."""
    if not isinstance(body, dict):
        return []
    holders = [body]
    operations = body.get("operations")
    if isinstance(operations, list):
        for op in operations:
            if isinstance(op, dict):
                holders += [op[k] for k in ("item", "patch") if isinstance(op.get(k), dict)]
    return [
        {tag_key(tag) for tag in holder["tags"] if isinstance(tag, str)}
        for holder in holders
        if isinstance(holder.get("tags"), list)
    ]


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """A positive case keeps no made-up `cursor`: a cursor is signed by the server, so
    none the fuzzer writes can be valid (a 400). And its Idempotency-Key is its own: the
    fuzzer draws few distinct keys, and one reused with another body is rightly a 422.
    Negative cases keep theirs."""
    meta = case.meta
    if meta is None or meta.generation.mode.is_negative:
        return case
    if case.query:
        case.query.pop("cursor", None)
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    _use_seeded_ids(case.body)
    if case.operation.path.endswith("/shares") and isinstance(case.body, dict):
        # Someone who exists: sharing an item just made with a made-up user is a 404
        # "User not found", which the stateful check (ST302) takes for the item's.
        case.body["user"] = OTHER_USER
    return case


OTHER_USER = "fuzz-other"  # the second account __main__ seeds


ITEM_IDS = "FUZZ_ITEM_IDS"  # the seeded items' ids, comma-separated (set by __main__)


def _use_seeded_ids(body: object) -> None:
    """Half a batch's operations name a seeded item (chosen by the generated id's last
    digit, so a seed repeats its run), so patches, replaces and deletes get applied."""
    seeded = [i for i in os.environ.get(ITEM_IDS, "").split(",") if i]
    operations = body.get("operations") if isinstance(body, dict) else None
    if not seeded or not isinstance(operations, list):
        return
    for op in operations:
        made_up = op.get("id") if isinstance(op, dict) else None
        if isinstance(made_up, str) and made_up and int(made_up[-1], 16) % 2 == 0:
            op["id"] = seeded[int(made_up[-2:], 16) % len(seeded)]
