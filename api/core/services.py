"""What the lifespan builds once and every request shares, as one typed object.

`Services` holds what core provides (settings, the database, cursors, metrics) and each
feature's long-lived parts (the token signer, the queue, the live feed), looked up by
their type, so core knows no feature and every lookup is typed. It lives on
`app.state.services`, the one thing there; a feature reaches it through a dependency.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from bson import ObjectId
from fastapi import Depends
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from starlette.requests import HTTPConnection

from api.config import Settings
from api.core.metrics import Metrics
from api.core.pagination import CursorCodec

T = TypeVar("T")
# Removes what a feature keeps of a deleted account, in the deletion's transaction.
AccountCleanup = Callable[[ObjectId, AsyncClientSession | None], Awaitable[None]]


@dataclass
class Services:
    settings: Settings
    client: AsyncMongoClient[dict[str, Any]]
    cursors: CursorCodec
    # A replica set (or the embedded server) can delete a user and their items atomically.
    supports_transactions: bool
    # Live-feed positions: sealed, since they name other users' changes.
    feed_cursors: CursorCodec
    metrics: Metrics
    # Each feature's long-lived parts, by their type (see `add`, `get` and `find`).
    parts: dict[type, object] = field(default_factory=dict)
    # What deleting an account removes besides it (its items, their records, ...).
    account_cleanups: list[AccountCleanup] = field(default_factory=list)
    _said: set[str] = field(default_factory=set)  # see `first_time`

    def add(self, part: object) -> None:
        self.parts[type(part)] = part

    def find(self, kind: type[T]) -> T | None:
        """The part of this type, or None when this app runs without one (a live feed
        on a server with no change streams, say)."""
        part = self.parts.get(kind)
        assert part is None or isinstance(part, kind)
        return part

    def get(self, kind: type[T]) -> T:
        part = self.find(kind)
        if part is None:
            raise LookupError(f"this app has no {kind.__name__}")
        return part

    def first_time(self, what: str) -> bool:
        """True once per app for `what` (a warning logged once, not per request)."""
        first = what not in self._said
        self._said.add(what)
        return first

    async def atomically(
        self, work: Callable[[AsyncClientSession | None], Awaitable[None]]
    ) -> None:
        """Run `work` in a transaction where the server has them; on a standalone, in order."""
        if not self.supports_transactions:
            await work(None)
            return
        async with self.client.start_session() as session:
            await session.with_transaction(work)


def get_services(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


def dependency(lookup: Callable[[HTTPConnection], T]) -> Callable[..., Awaitable[T]]:
    """`lookup` (a plain function of the connection) as a dependency FastAPI calls on the
    loop: a plain `def` one would be sent to a worker thread and back on every request."""

    async def on_the_loop(connection: HTTPConnection) -> T:
        return lookup(connection)

    return on_the_loop


def part(kind: type[T]) -> Callable[..., Awaitable[T]]:
    """A dependency that returns this app's part of type `kind`."""
    return dependency(lambda connection: get_services(connection).get(kind))


AppServices = Annotated[Services, Depends(dependency(get_services))]
