"""Routes that know who is asking before they read a body.

FastAPI reads and parses a request's body before it runs any dependency, the login
included: left alone, anyone could make the server parse a body as large as the limit
and be told 401 only afterwards. A route whose endpoint needs a login (and takes a
body) authenticates from the headers first, as its own login dependency would (which
then finds the login already made), and only then may its body be larger than an
unknown caller's (`api.core.middleware.BodyLimit`).
"""

from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.accounts.deps import current_user, login_first
from api.core.middleware import allow_larger_body


def _every(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _every(sub)


def login_scopes(dependant: Dependant) -> list[str] | None:
    """What the route's login must hold, as its own dependencies will demand it; None
    when it requires no login. FastAPI calls the login dependency once per distinct set
    of scopes along its paths (SecurityScopes), and each call must pass: a token needs
    every scope of every one, and one that names none admits a password login alone
    (`[]`, which no personal access token passes), whatever the others name."""
    demands = [
        {*(each.parent_oauth_scopes or []), *(each.own_oauth_scopes or [])}
        for each in _every(dependant)
        if each.call is current_user
    ]
    if not demands:
        return None
    if not all(demands):
        return []
    return sorted(set().union(*demands))


class AuthFirstRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        scopes = login_scopes(self.dependant) if self.dependant.body_params else None
        if scopes is None:  # no body, or anyone may send it: nothing to do first
            return handle
        needed = scopes

        async def handler(request: Request) -> Response:
            await login_first(request, needed)
            allow_larger_body(request)
            return await handle(request)

        return handler
