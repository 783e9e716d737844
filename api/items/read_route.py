"""`GET /items/{item_id}`, the hottest read, answered without FastAPI's route matching
and dependency solving.

FastAPI matches a request against every route in turn and solves each endpoint's
dependency graph per request; for a by-id read those two cost more CPU than its two
database reads (see the docs' benchmarks page). This route is tried first and answers
only what the documented route would answer the same way, calling the same functions
in the same order: the login (`optional_login`, `required` with `items:read`), the
access policy (`readable_item`), and the endpoint itself (`read_item`). Anything else
(an id that is not 24 hex digits, `/items/trash`, another method) it leaves to the
documented route, which stays the one the OpenAPI document describes and the metrics
name. A test compares both routes' answers over the cases that matter.
"""

import re
from typing import Any

from beanie import PydanticObjectId
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from api.accounts.auth_first import login_scopes
from api.accounts.deps import oauth2_scheme, optional_login, required, token_signer
from api.items.deps import readable_item
from api.items.routes import read_item


class ReadItemRoute(BaseRoute):
    def __init__(self, path: str, documented: APIRoute) -> None:
        """`path`: the documented route's full template (`.../items/{item_id}`);
        `documented`: that route, named in the request's scope for the metrics, whose
        dependencies say which scopes a personal access token needs."""
        prefix = re.escape(path.removesuffix("{item_id}"))
        self.pattern = re.compile(prefix + "([0-9a-fA-F]{24})")
        self.documented = documented
        # The template FastAPI's own telemetry names the route by (`http.route`). Not
        # `path`: the app's RouteTable would take this for a route of its own.
        self.path_format = path
        scopes = login_scopes(documented.dependant)
        if scopes is None:
            raise ValueError("the documented route asks for no login")
        self.scopes = scopes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["method"] == "GET":
            # As Starlette's routes match: the path below the app's mount point.
            path, root = scope["path"], scope.get("root_path", "")
            found = self.pattern.fullmatch(path.removeprefix(root) if root else path)
            if found is not None:
                params = {"item_id": found[1]}
                return Match.FULL, {"route": self.documented, "path_params": params}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await _answer(request, self.scopes)
        await response(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)  # the documented route names the path


async def _answer(request: Request, scopes: list[str]) -> Any:
    token = await oauth2_scheme(request)
    login = required(await optional_login(token, request, token_signer(request)), scopes)
    item_id = PydanticObjectId(request.path_params["item_id"])
    item = await readable_item(item_id, login.acting_user, request)
    return await read_item(item, request.headers.get("if-none-match"))


def install(app: FastAPI) -> None:
    """Put the route first, in front of the documented one it stands in for."""
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, getattr(context, "path", None)
        if isinstance(route, APIRoute) and route.endpoint is read_item and path is not None:
            app.router.routes.insert(0, ReadItemRoute(path, route))
            return
    raise RuntimeError("read_item is not routed")
