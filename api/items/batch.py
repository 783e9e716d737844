"""`POST /items/batch`: many writes in one request, applied all or nothing.

The operations run in order inside one transaction (the embedded server and replica
sets have them; a standalone server refuses batches rather than half-apply one). The
first that fails aborts the lot: the answer is its own problem, naming it by
`operation`, and nothing is written. Each applied change reaches the live feed as
its own event, from the change stream, when the transaction commits.
"""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import Field, TypeAdapter
from pymongo.asynchronous.client_session import AsyncClientSession

from api.accounts.auth_first import AuthFirstRoute
from api.accounts.deps import ItemWriter
from api.core.errors import (
    DomainError,
    Problem,
    ValidationProblem,
    problem_responses,
    validation_detail,
    validation_issues,
)
from api.core.services import AppServices
from api.items.deps import find_manageable, find_writable
from api.items.history import Change, within
from api.items.idempotency import Answer, IdempotencyKey, documented, once
from api.items.trash import move_to_trash
from api.items.writes import insert_items, patched, write_content
from documents import User
from documents.batch import (
    Batch,
    BatchResult,
    BatchResults,
    CreateOperation,
    DeleteOperation,
    PatchOperation,
    ReplaceOperation,
)


class _BatchRoute(AuthFirstRoute):
    """Authenticated before a byte of the body is read (AuthFirstRoute), and only then
    may its body reach BATCH_MAX_BYTES: nobody unknown makes the server parse megabytes.
    A batch's validation failures name the operation they are in (FastAPI's own 422
    would only say so inside `loc`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as error:
                if any(issue.get("type") == "json_invalid" for issue in error.errors()):
                    raise  # not JSON at all: the 400 every endpoint gives
                raise _invalid(error) from None

        return handler


router = APIRouter(prefix="/items", tags=["items"], route_class=_BatchRoute)
BATCH_PATH = "/items/batch"
_RESULTS: TypeAdapter[BatchResults] = TypeAdapter(BatchResults)


class BatchProblem(Problem):
    """A failed batch: the failing operation's own problem; nothing was applied."""

    operation: int | None = Field(default=None, description="The failing operation's index")


class BatchValidationProblem(ValidationProblem):
    operation: int | None = Field(
        default=None, description="The index of the operation that is not valid"
    )


def _responses() -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(401, 403, 404, 409, 412, 501)
    for status in (403, 404, 409, 412):
        responses[status] = {**responses[status], "model": BatchProblem}
    responses[422] = {**responses[422], "model": BatchValidationProblem}
    return responses


class BatchUnsupported(DomainError):
    status, code, title = 501, "batch-unsupported", "Batches unsupported"
    detail = (
        "Batches need MongoDB transactions (a replica set or the embedded server); this "
        "server is a standalone, so nothing was applied."
    )


class TooManyOperations(DomainError):
    status, code, title = 422, "too-many-operations", "Too many operations"


class BatchInvalid(DomainError):
    status, code, title = 422, "validation", "Validation failed"


@router.post(
    "/batch",
    response_model=BatchResults,
    responses=documented(_responses(), 200),
)
async def write_batch(
    batch: Batch,
    user: ItemWriter,
    request: Request,
    services: AppServices,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create, patch, replace and delete items in one request, all or nothing (at most
    BATCH_MAX_OPERATIONS, 100 by default, in at most BATCH_MAX_BYTES). A failure is
    the failing operation's problem with `"operation": <index>`, and nothing changed.
    With an Idempotency-Key, a retry replays the first answer."""
    limit = services.settings.batch_max_operations
    if len(batch.operations) > limit:
        raise TooManyOperations(f"A batch holds at most {limit} operations.")
    if not services.supports_transactions:
        raise BatchUnsupported()

    keep = timedelta(days=services.settings.trash_retention_days)
    change = Change("created", user.id, services.settings.history_max_versions)

    async def perform(session: AsyncClientSession | None) -> Answer:
        results: list[BatchResult] = []
        for start, run in _runs(batch.operations):
            results += await _step(start, run, user, _Keep(keep, change), session)
        body = _RESULTS.dump_json(BatchResults(results=results), by_alias=True)
        shown = [result.item for result in results if result.item]
        answer = Answer.holding(200, body, shown)
        deleted = {op.id for op in batch.operations if isinstance(op, DeleteOperation)}
        answer.gone = any(item.id in deleted for item in shown)  # its content went too
        return answer

    return await once(services, request, user, idempotency_key, perform, atomic=True)


def _runs(operations: list[Any]) -> list[tuple[int, list[Any]]]:
    """The operations in order, consecutive creates together (one insert for them all),
    each other operation alone; with the index each run starts at."""
    runs: list[tuple[int, list[Any]]] = []
    for index, op in enumerate(operations):
        creating = isinstance(op, CreateOperation)
        if creating and runs and isinstance(runs[-1][1][0], CreateOperation):
            runs[-1][1].append(op)
        else:
            runs.append((index, [op]))
    return runs


@dataclass(frozen=True)
class _Keep:
    """How long a deleted item stays in the trash; what a change records in history."""

    trash: timedelta
    change: Change


async def _step(
    index: int, run: list[Any], user: User, keep: _Keep, session: AsyncClientSession | None
) -> list[BatchResult]:
    """Apply a run of operations; a failure is its operation's, by index. (Validated
    creates have nothing left to fail on but the database itself.)"""
    try:
        if isinstance(run[0], CreateOperation):
            assert user.id is not None
            made = await insert_items(user.id, [op.item for op in run], keep.change, session)
            return [BatchResult(op="create", status=201, item=item) for item in made]
        return [await _apply(run[0], user, keep, session)]
    except RequestValidationError as error:
        raise _invalid(error, index) from None
    except DomainError as error:
        error.extra = {**(error.extra or {}), "operation": index}
        error.detail = f"operations[{index}]: {error.detail}"
        raise


async def _apply(
    op: Any, user: User, keep: _Keep, session: AsyncClientSession | None
) -> BatchResult:
    """One operation, as its own endpoint would apply it (a viewer's write and a
    sharee's delete are 403s, like theirs; a delete moves the item to the trash), in the
    batch's transaction."""
    if isinstance(op, DeleteOperation):
        item = await find_manageable(op.id, user, session)
        await move_to_trash(item, user, op.if_match, keep.trash, session)
        return BatchResult(op="delete", status=204, item=None)
    current = await find_writable(op.id, user, session)
    if isinstance(op, PatchOperation):
        patch = op.patch
        change = keep.change.as_("updated")
        run = within(session)
        item = await write_content(
            current, user, lambda now: patched(now, patch), op.if_match, change, run, session
        )
        return BatchResult(op="patch", status=200, item=item)
    assert isinstance(op, ReplaceOperation)
    content = op.item
    change = keep.change.as_("replaced")
    item = await write_content(
        current, user, lambda _: content, op.if_match, change, within(session), session
    )
    return BatchResult(op="replace", status=200, item=item)


def _invalid(error: RequestValidationError, index: int | None = None) -> BatchInvalid:
    """A validation failure as a problem naming the operation it is in."""
    issues = validation_issues(error)
    if index is not None:  # found while applying: the result it would make is invalid
        for issue in issues:
            issue["loc"] = ["body", "operations", index, *issue["loc"][1:]]
    elif issues and issues[0]["loc"][1:2] == ["operations"] and len(issues[0]["loc"]) > 2:
        index = issues[0]["loc"][2] if isinstance(issues[0]["loc"][2], int) else None
    invalid = BatchInvalid(validation_detail(issues))
    invalid.extra = {"errors": issues, **({"operation": index} if index is not None else {})}
    return invalid
