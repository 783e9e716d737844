"""What the lifespan builds once and every request shares: settings, the database, cursors.

Each feature keeps its own long-lived parts (the token signer, the outbox worker, the
live feed) on `app.state` behind a dependency of its own, so core knows no feature.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from starlette.requests import HTTPConnection

from api.config import Settings
from api.core.pagination import CursorCodec

T = TypeVar("T")


@dataclass
class Services:
    settings: Settings
    client: AsyncMongoClient[dict[str, Any]]
    cursors: CursorCodec
    # A replica set (or the embedded server) can delete a user and their items atomically.
    supports_transactions: bool
    # Live-feed positions: sealed, since they name other users' changes.
    feed_cursors: CursorCodec

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


AppServices = Annotated[Services, Depends(dependency(get_services))]
