"""Schemathesis hooks (SCHEMATHESIS_HOOKS): value generators for formats whose full rules
no JSON Schema keyword can state. Each is narrow, and says which rule it stands for."""

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
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
        return True
    tags = body["tags"]
    distinct = {tag_key(tag) for tag in tags if isinstance(tag, str)}
    return len(distinct) <= MAX_TAGS


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """A positive case keeps no made-up `cursor`: a cursor is signed by the server, so
    none the fuzzer writes can be valid (a 400). Negative cases keep theirs."""
    meta = case.meta
    if meta is not None and not meta.generation.mode.is_negative and case.query:
        case.query.pop("cursor", None)
    return case
