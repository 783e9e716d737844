"""A Python client generated from our live /openapi.json (openapi-python-client) runs a
real flow: a schema change that breaks generated clients breaks this suite first."""

import asyncio
import importlib
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI

from documents import Item
from tests.serving import uvicorn_serving

PACKAGE = "docstore_client"
# No post hooks: the generator would format its output with a ruff on PATH.
CONFIG = "package_name_override: docstore_client\npost_hooks: []\n"


@pytest.fixture
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    async with uvicorn_serving(app) as (port, _):
        yield f"http://127.0.0.1:{port}"


async def generate(base_url: str, into: Path) -> ModuleType:
    """Run the generator against the served document, and import what it wrote."""
    config = into / "config.yml"
    config.write_text(CONFIG)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "openapi_python_client", "generate",
        "--url", f"{base_url}/openapi.json", "--meta", "none",
        "--output-path", str(into / PACKAGE), "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "Warning" not in text, text  # every operation and schema was understood
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(into))


def module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def test_a_generated_python_client_runs_the_whole_flow(base_url: str, tmp_path: Path) -> None:
    client_package = await generate(base_url, tmp_path)
    try:
        await flow(client_package, base_url)
    finally:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


async def flow(package: ModuleType, base_url: str) -> None:
    models = module("models")
    auth, users, items = module("api.auth"), module("api.users"), module("api.items")
    for name in ("login", "create_token", "list_events"):
        importlib.import_module(f"{auth.__name__}.{name}")
    for name in ("create_user",):
        importlib.import_module(f"{users.__name__}.{name}")
    for name in ("create_item", "list_items", "update_item", "write_batch", "remove_item"):
        importlib.import_module(f"{items.__name__}.{name}")
    async with AsyncExitStack() as clients:  # each holds a connection pool: closed after
        await _flow(package, base_url, clients, models, auth, users, items)


async def _flow(
    package: ModuleType,
    base_url: str,
    clients: AsyncExitStack,
    models: Any,
    auth: Any,
    users: Any,
    items: Any,
) -> None:
    anonymous = await clients.enter_async_context(
        package.Client(base_url=base_url, raise_on_unexpected_status=True)
    )

    signed_up = await users.create_user.asyncio_detailed(
        client=anonymous,
        body=models.UserCreate(email="gen@example.com", username="gen", password="Generated-1"),
    )
    assert signed_up.status_code == 201, signed_up.content
    logged_in = await auth.login.asyncio(
        client=anonymous, body=models.PasswordGrant(username="gen", password="Generated-1")
    )
    assert isinstance(logged_in, models.LoginResponse), logged_in
    person = await clients.enter_async_context(
        package.AuthenticatedClient(base_url=base_url, token=logged_in.access_token)
    )

    scopes = [models.AccessTokenCreateScopesItem("items:read"),
              models.AccessTokenCreateScopesItem("items:write")]  # fmt: skip
    made = await auth.create_token.asyncio(
        client=person, body=models.AccessTokenCreate(name="generated", scopes=scopes)
    )
    assert isinstance(made, models.AccessTokenCreated), made
    program = await clients.enter_async_context(
        package.AuthenticatedClient(base_url=base_url, token=made.token)
    )
    logged = await auth.list_events.asyncio(client=person, limit=10)
    assert [event.type_ for event in logged.items] == ["token.created", "login.succeeded"]
    denied = await auth.list_events.asyncio_detailed(client=program)
    assert denied.status_code == 403  # a personal token never reads the log

    created = []
    for title in ("first", "second", "third"):
        answer = await items.create_item.asyncio_detailed(
            client=program,
            body=models.ItemCreate(title=title, tags=["gen"]),
            idempotency_key=f"create-{title}",
        )
        assert answer.status_code == 201, answer.content
        assert answer.headers["location"].endswith(answer.parsed.id)
        created.append(answer.parsed)
    replayed = await items.create_item.asyncio_detailed(
        client=program, body=models.ItemCreate(title="first", tags=["gen"]),
        idempotency_key="create-first",
    )  # fmt: skip
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.parsed.id == created[0].id

    seen, cursor = [], None
    while True:
        page = await items.list_items.asyncio(client=program, limit=2, cursor=cursor)
        assert isinstance(page, models.PageItemFields), page
        seen += [row.id for row in page.items]
        if not isinstance(page.next_cursor, str):
            break
        cursor = page.next_cursor
    assert seen == [item.id for item in reversed(created)]  # newest first, across pages

    target = created[0]
    patched = await items.update_item.asyncio_detailed(
        target.id, client=program, body=models.ItemMergePatch(title="renamed"), if_match='"1"'
    )
    assert patched.status_code == 200, patched.content
    assert (patched.parsed.title, patched.parsed.version) == ("renamed", 2)
    stale = await items.update_item.asyncio_detailed(
        target.id, client=program, body=models.ItemMergePatch(title="lost"), if_match='"1"'
    )
    assert stale.status_code == 412
    assert isinstance(stale.parsed, models.Problem)  # errors parse as problems

    batch = models.Batch(
        operations=[
            models.CreateOperation(op="create", item=models.ItemCreate(title="batched")),
            models.PatchOperation(
                op="patch", id=created[1].id, patch=models.ItemMergePatch(title="patched")
            ),
            models.DeleteOperation(op="delete", id=created[2].id),
        ]
    )
    results = await items.write_batch.asyncio(client=program, body=batch)
    assert isinstance(results, models.BatchResults), results
    assert [(r.op, r.status) for r in results.results] == [
        ("create", 201), ("patch", 200), ("delete", 204),
    ]  # fmt: skip
    failed = await items.write_batch.asyncio(
        client=program,
        body=models.Batch(operations=[models.DeleteOperation(op="delete", id=created[2].id)]),
    )
    assert isinstance(failed, models.BatchProblem), failed
    assert (failed.status, failed.operation) == (404, 0)

    await share_and_read_as_the_sharee(package, base_url, clients, models, person, created[1].id)

    removed = await items.remove_item.asyncio_detailed(target.id, client=program, if_match="*")
    assert removed.status_code == 204
    await restore_from_the_trash(models, person, items, target.id)
    await manage_a_webhook(models, person)
    titles = sorted(doc.title for doc in await Item.find_all().to_list())
    assert titles == ["batched", "patched"]


async def restore_from_the_trash(models: Any, person: Any, items: Any, item_id: str) -> None:
    """A deleted item is in the trash, comes back one version on, and then goes for good."""
    trash = module("api.trash")
    for name in ("list_trash", "restore_item"):
        importlib.import_module(f"{trash.__name__}.{name}")
    listed = await trash.list_trash.asyncio(client=person)
    assert listed.items[0].id == item_id  # the latest deleted (the batch deleted one before)
    restored = await trash.restore_item.asyncio(item_id, client=person)
    assert isinstance(restored, models.Item), restored
    assert (restored.title, restored.version) == ("renamed", 3)
    await back_to_version_one(models, person, item_id)
    gone = await items.remove_item.asyncio_detailed(item_id, client=person, permanent=True)
    assert gone.status_code == 204
    left = await trash.list_trash.asyncio(client=person)
    assert item_id not in [entry.id for entry in left.items]


async def manage_a_webhook(models: Any, person: Any) -> None:
    """A webhook made (its secret shown once), its secret rotated, a ping queued and seen
    in its delivery log, and the webhook deleted."""
    hooks = module("api.webhooks")
    names = ("create_webhook", "read_webhook", "rotate_webhook_secret", "ping_webhook")
    for name in (*names, "list_deliveries", "delete_webhook"):
        importlib.import_module(f"{hooks.__name__}.{name}")
    body = models.WebhookCreate(url="https://93.184.215.14/hooks", description="indexer")
    made = await hooks.create_webhook.asyncio(client=person, body=body)
    assert isinstance(made, models.WebhookCreated), made
    assert made.secret.startswith("whsec_")
    read = await hooks.read_webhook.asyncio(made.id, client=person)
    assert (read.url, read.enabled) == ("https://93.184.215.14/hooks", True)
    rotated = await hooks.rotate_webhook_secret.asyncio(made.id, client=person)
    assert rotated.secret != made.secret
    ping = await hooks.ping_webhook.asyncio(made.id, client=person)
    assert (ping.type_, ping.status) == ("webhook.ping", models.DeliveryPublicStatus("pending"))
    log = await hooks.list_deliveries.asyncio(made.id, client=person)
    assert [entry.id for entry in log.items] == [ping.id]
    gone = await hooks.delete_webhook.asyncio_detailed(made.id, client=person)
    assert gone.status_code == 204


async def back_to_version_one(models: Any, person: Any, item_id: str) -> None:
    """The item's history, newest first, and its first version made its content again."""
    history = module("api.history")
    for name in ("list_versions", "read_version", "restore_version"):
        importlib.import_module(f"{history.__name__}.{name}")
    listed = await history.list_versions.asyncio(item_id, client=person)
    assert [(v.version, v.change) for v in listed.items][:1] == [(3, "restored")], listed
    first = await history.read_version.asyncio(item_id, 1, client=person)
    assert isinstance(first, models.ItemAsItWas), first
    again = await history.restore_version.asyncio(item_id, 1, client=person, if_match='"3"')
    assert isinstance(again, models.Item), again
    assert (again.title, again.version) == (first.title, 4)


async def share_and_read_as_the_sharee(
    package: ModuleType,
    base_url: str,
    clients: AsyncExitStack,
    models: Any,
    owner: Any,
    item_id: str,
) -> None:
    """The owner shares an item with a second account, which then reads it and its
    shares, and sees it in its list."""
    auth, users, items = module("api.auth"), module("api.users"), module("api.items")
    sharing = module("api.sharing")
    for name in ("share_item", "list_shares", "unshare_item"):
        importlib.import_module(f"{sharing.__name__}.{name}")
    importlib.import_module(f"{items.__name__}.read_item")
    anonymous = await clients.enter_async_context(package.Client(base_url=base_url))
    body = models.UserCreate(email="friend@example.com", username="friend", password="Friendly-1")
    assert (
        await users.create_user.asyncio_detailed(client=anonymous, body=body)
    ).status_code == 201
    shared = await sharing.share_item.asyncio_detailed(
        item_id, client=owner, body=models.ShareRequest(user="friend", role=models.Role("viewer"))
    )
    assert shared.status_code == 201, shared.content
    assert (shared.parsed.username, shared.parsed.role) == ("friend", models.Role("viewer"))
    login = models.PasswordGrant(username="friend", password="Friendly-1")
    token = (await auth.login.asyncio(client=anonymous, body=login)).access_token
    friend = await clients.enter_async_context(
        package.AuthenticatedClient(base_url=base_url, token=token)
    )
    read = await items.read_item.asyncio(item_id, client=friend)
    assert isinstance(read, models.Item), read
    assert (read.title, read.access) == ("patched", models.Access("viewer"))
    listed = await sharing.list_shares.asyncio(item_id, client=friend)
    assert [share.username for share in listed.items] == ["friend"]
    page = await items.list_items.asyncio(client=friend)
    assert [row.id for row in page.items] == [item_id]
    refused = await items.update_item.asyncio_detailed(
        item_id, client=friend, body=models.ItemMergePatch(title="mine now")
    )
    assert refused.status_code == 403
    left = await sharing.unshare_item.asyncio_detailed(item_id, read.owner_id, client=owner)
    assert left.status_code == 404  # the owner has no share of their own to end
