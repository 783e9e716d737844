"""The app's routes as full path templates, read once from the router.

FastAPI includes routers lazily, so a matched route knows only its own part of the
path; `fastapi.routing.iter_route_contexts` gives each route with its whole template.
The metrics label requests by the template of the route that answered (the route object
in the request's scope, not the first template its path matches: `/items/batch` is
also an `/items/{item_id}`), and a 405 lists every method of its path from them
(Starlette names only those of the first route whose path matched).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, compile_path


@dataclass(frozen=True)
class Template:
    path: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    documented: bool  # in the OpenAPI document


class RouteTable:
    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.templates: list[Template] = []
        # Keyed by identity (routes define __eq__, so they are not hashable); they live as
        # long as the app, so an id is never reused for another route.
        self._of_route: dict[int, str] = {}
        for context in iter_route_contexts(routes):
            path = getattr(context, "path", None)
            if path is None:
                continue
            self._of_route[id(context.original_route)] = path
            methods = frozenset(getattr(context, "methods", None) or ())
            documented = getattr(context, "include_in_schema", False)
            self.templates.append(Template(path, compile_path(path)[0], methods, documented))

    def template_of(self, route: BaseRoute) -> str | None:
        """The full template of a route (the one a request's scope names), None for a
        route added after the table was read."""
        return self._of_route.get(id(route))

    def methods(self, path: str) -> set[str] | None:
        """Every method of the documented template `path` first matches (as the OpenAPI
        document lists them); None when that is no documented route."""
        first = next((t for t in self.templates if t.pattern.match(path)), None)
        if first is None or not first.documented:
            return None
        return {m for t in self.templates if t.path == first.path for m in t.methods}
