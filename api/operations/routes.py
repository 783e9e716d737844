"""Welcome, liveness and readiness."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pymongo.errors import PyMongoError

from api.core.errors import problem, problem_responses
from api.core.services import AppServices, get_services
from api.live.feed import feed_of

router = APIRouter(tags=["operations"])


class Status(BaseModel):
    status: str


@router.get("/")
async def welcome() -> dict[str, Any]:
    return {"name": "Docstore", "api": "/api/v1", "docs": "/docs", "redoc": "/redoc"}


@router.get("/health")
async def health() -> Status:
    """Liveness: the process answers."""
    return Status(status="ok")


@router.get("/ready", response_model=Status, responses=problem_responses(503))
async def ready(request: Request, services: AppServices) -> Any:
    """Readiness: the database answers a ping, and the live feed (where this process
    serves one) is listening."""
    headers = {"Retry-After": "5"}
    try:
        await services.client.admin.command("ping")
    except PyMongoError:
        detail = "The database does not answer."
        return problem(request, 503, "Not ready", detail, "not-ready", headers)
    live = feed_of(request)
    if live is not None and not live.up:
        detail = "The live feed's watcher is restarting."
        return problem(request, 503, "Not ready", detail, "not-ready", headers)
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of the whole server: requests by route and status, latency,
    live subscribers, queue entries by channel and status, documents skipped as
    unrenderable. With `--workers N` they are every worker's added up, whichever worker
    answers the scrape; a single process also reports its own memory and CPU."""
    body, content_type = await get_services(request).metrics.exposition()
    return Response(body, media_type=content_type)
