"""A route that needs a login authenticates before it reads a body, and demands exactly
what its own dependencies would: `login_first` refuses whom they would refuse."""

from pathlib import Path

import httpx2
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from api.accounts.auth_first import AuthFirstRoute, login_scopes
from api.accounts.deps import CurrentUser, ItemReader, ItemWriter, OptionalUser
from tests.accounts.test_access_tokens import bearer, make_token
from tests.conftest import app_with, make_account, make_settings


class Note(BaseModel):
    title: str


async def password_and_writer(body: Note, caller: CurrentUser, writer: ItemWriter) -> Note:
    return body


async def reader_and_writer(body: Note, reader: ItemReader, writer: ItemWriter) -> Note:
    return body


async def anyone(body: Note, caller: OptionalUser) -> Note:
    return body


def scopes_of(endpoint: object) -> list[str] | None:
    return login_scopes(APIRoute("/x", endpoint, methods=["POST"]).dependant)  # type: ignore[arg-type]


def test_login_scopes_are_what_every_login_dependency_demands() -> None:
    """Each occurrence of the login dependency checks its own scopes: a token must hold
    every scope of every one, and one naming none admits a password login alone ([])."""
    assert scopes_of(reader_and_writer) == ["items:read", "items:write"]
    assert scopes_of(password_and_writer) == []
    assert scopes_of(anyone) is None


async def test_the_login_first_refuses_whom_the_route_would(
    mongodb_url: str, tmp_path: Path
) -> None:
    """A token with `items:write`, at a route that also takes a password login: the
    route refuses it (403), and the login made first refuses it before a byte of its body
    is read; a password login's body is read."""
    async with app_with(make_settings(mongodb_url, tmp_path)) as (app, client):
        app.router.add_api_route(
            "/test-only/mixed",
            password_and_writer,
            methods=["POST"],
            route_class_override=AuthFirstRoute,
        )
        alice = await make_account(app, "alice")
        token = bearer(await make_token(client, alice, ["items:write"]))
        read: list[int] = []

        async def reading(scope: Scope, receive: Receive, send: Send) -> None:
            async def recorded() -> Message:
                message = await receive()
                read.append(len(message.get("body", b"")))
                return message

            await app(scope, recorded, send)

        transport = httpx2.ASGITransport(app=reading)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as watched:
            note = {"title": "t" * 1000}
            refused = await watched.post("/test-only/mixed", json=note, headers=token)
            assert (refused.status_code, sum(read)) == (403, 0)
            taken = await watched.post("/test-only/mixed", json=note, headers=alice.headers)
            assert (taken.status_code, sum(read) > 1000) == (200, True)


def test_every_route_that_needs_a_login_for_its_body_authenticates_first(
    module_app: FastAPI,
) -> None:
    """A router made without `route_class=AuthFirstRoute` would let anyone make the
    server read and parse a body its login would then refuse."""
    checked = 0
    for context in iter_route_contexts(module_app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.dependant.body_params:
            continue
        if login_scopes(route.dependant) is not None:
            checked += 1
            assert isinstance(route, AuthFirstRoute), context.path
    assert checked >= 5
