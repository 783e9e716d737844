"""What the lifespan builds once and every request shares."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from api.config import Settings
from api.live import LiveFeed
from api.outbox import OutboxWorker
from api.pagination import CursorCodec
from api.security import TokenSigner


@dataclass
class Services:
    settings: Settings
    client: AsyncMongoClient[dict[str, Any]]
    signer: TokenSigner
    cursors: CursorCodec
    # A replica set (or the embedded server) can delete a user and their items atomically.
    supports_transactions: bool
    outbox: OutboxWorker
    # This process's change-stream watcher; None when the server has no change streams.
    live: LiveFeed | None

    def mail_enqueued(self) -> None:
        """Wake this process's outbox worker: a message was just committed."""
        self.outbox.wake.set()

    async def atomically(
        self, work: Callable[[AsyncClientSession | None], Awaitable[None]]
    ) -> None:
        """Run `work` in a transaction where the server has them; on a standalone, in order."""
        if not self.supports_transactions:
            await work(None)
            return
        async with self.client.start_session() as session:
            await session.with_transaction(work)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


AppServices = Annotated[Services, Depends(get_services)]
