"""How requests reach the code: nothing on the way is sent to a worker thread."""

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import _iter_routes_with_context


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield from _calls(sub)
        yield sub.call


def _runs_on_the_loop(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004 - security schemes are callables
    )


def test_no_endpoint_or_dependency_runs_in_a_worker_thread(module_app: FastAPI) -> None:
    """FastAPI runs a plain `def` endpoint or dependency (a class too) in its thread
    pool: a hop to a thread and back on every request that uses it."""
    # As requests see them: each included route with its routers' dependencies added.
    dependants = {
        f"{sorted(getattr(route, 'methods', None) or ['WS'])} {getattr(route, 'path', '')}": (
            dependant
        )
        for route, context in _iter_routes_with_context(module_app.routes)
        if (dependant := getattr(context or route, "dependant", None)) is not None
    }
    assert len(dependants) > 20
    threaded = {
        f"{path}: {getattr(call, '__qualname__', call)}"
        for path, dependant in dependants.items()
        for call in [dependant.call, *_calls(dependant)]
        if not _runs_on_the_loop(call)
    }
    assert threaded == set()
