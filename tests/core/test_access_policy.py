"""The item access policy is the one place that says who may see an item: read from the
source, no other module builds an owner filter or compares owners of its own."""

import ast
from collections.abc import Iterator

from tests.core.test_imports import ROOT

POLICY = ROOT / "api" / "items" / "policy.py"
SCANNED = ("api", "scripts")
# An item's owner, and who it is shared with.
ACCESS_FIELDS = {"owner_id", "readers", "shares"}
# Modules that name `owner_id` for something other than an item's access, and why.
NOT_ITEM_ACCESS = {
    # Idempotency records are keyed by their caller (their own `owner_id` field).
    "api/items/idempotency.py",
    "api/items/cleanup.py",
    # Writes the share list and reader set the policy reads, asking it for each access.
    "api/items/sharing.py",
    # Seeding matches a record to a stored item by its owner and title: identity, not access.
    "scripts/admin/seeding.py",
    # A webhook and its deliveries are their owner's (their own `owner_id` field); which
    # item changes a webhook gets, the dispatcher asks the policy.
    "api/webhooks/channel.py",
    "api/webhooks/routes.py",
}


def owner_rules(source: str, filename: str) -> Iterator[int]:
    """Lines that build an owner filter (a dict keyed `owner_id`, Beanie's `Item.owner_id
    == ...`) or compare an owner (`x.owner_id == y`, `doc["owner_id"] != y`)."""
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Dict):
            # Bound to a value (`{"owner_id": user.id}`), not to a literal (a docs table).
            pairs = zip(node.keys, node.values, strict=True)
            if any(_is_owner_key(k) and not _literal(v) for k, v in pairs):
                yield node.lineno
        elif isinstance(node, ast.Compare):
            if any(_names_owner(side) for side in (node.left, *node.comparators)):
                yield node.lineno
        elif isinstance(node, ast.Call):
            keywords = [k.arg for k in node.keywords]
            if ACCESS_FIELDS & set(keywords) and _is_query(node):
                yield node.lineno


def _is_owner_key(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value in ACCESS_FIELDS


def _literal(node: ast.expr) -> bool:
    parts = [part for part in ast.walk(node) if isinstance(part, ast.expr)]
    return all(isinstance(part, ast.Constant | ast.Tuple) for part in parts)


def _names_owner(node: ast.expr) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in ACCESS_FIELDS
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in ACCESS_FIELDS
    return False


def _is_query(node: ast.Call) -> bool:
    name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
    return name.startswith(("find", "update", "delete", "count"))


def test_only_the_policy_builds_owner_filters() -> None:
    found = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if path == POLICY or relative in NOT_ITEM_ACCESS:
                continue
            found += [f"{relative}:{line}" for line in owner_rules(path.read_text(), relative)]
    assert found == [], "ask api/items/policy.py instead"


def test_the_check_finds_an_owner_filter_in_a_route() -> None:
    planted = """
async def list_items(user):
    scope = {"owner_id": user.id}
    await Item.find(Item.owner_id == user.id).to_list()
    if item.owner_id != user.id:
        raise Forbidden()
    if doc["owner_id"] == user.id:
        pass
    shared = {"readers": user.id}
"""
    assert sorted(owner_rules(planted, "planted.py")) == [3, 4, 5, 7, 9]


def test_the_policy_itself_holds_the_rules() -> None:
    assert list(owner_rules(POLICY.read_text(), "policy.py")) != []
