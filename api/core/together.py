"""Writes to several collections in one round trip, where the server can.

MongoDB 8.0's client-level `bulkWrite` takes writes to any collections in one command;
an older server (or an 8.0 one whose feature compatibility version is still older, which
refuses the command) gets the same writes as one command per run of writes to one
collection, in order. Either way the writes run in order and stop at the first failure;
they are not a transaction (a crash between two of them leaves the earlier ones done),
so callers order them so that every prefix is safe.
"""

import weakref
from collections.abc import Sequence
from itertools import groupby
from typing import Any

from pymongo import AsyncMongoClient, InsertOne, UpdateOne
from pymongo.errors import ClientBulkWriteException, OperationFailure, PyMongoError

Write = InsertOne[Any] | UpdateOne  # each made with namespace="<database>.<collection>"
CLIENT_BULK_WRITE = 25  # the wire version of MongoDB 8.0
# What a server says when it does not take the command: CommandNotFound, or
# CommandNotSupported (a feature compatibility version from before 8.0).
NOT_TAKEN = {59, 115}

# Keyed by client (so per app already), weakly: the client object has no room of its own.
_refused: "weakref.WeakSet[AsyncMongoClient[Any]]" = weakref.WeakSet()


async def write_together(client: AsyncMongoClient[Any], writes: Sequence[Write]) -> None:
    if not writes:
        return
    if client in _refused or not _takes_client_bulk_writes(client):
        await _one_collection_at_a_time(client, writes)
        return
    try:
        await client.bulk_write(list(writes), ordered=True)
    except ClientBulkWriteException as error:
        cause = error.error
        if _not_taken(cause):  # refused whole: nothing was written
            _refused.add(client)
            await _one_collection_at_a_time(client, writes)
            return
        if isinstance(cause, PyMongoError):  # a network error or timeout: a 503, as alone
            raise cause from None
        raise
    except OperationFailure as error:
        if not _not_taken(error):
            raise
        _refused.add(client)
        await _one_collection_at_a_time(client, writes)


def _not_taken(error: object) -> bool:
    """A top-level refusal, raised or (as the client bulk write reports it) a raw reply."""
    if isinstance(error, OperationFailure):
        return error.code in NOT_TAKEN
    return isinstance(error, dict) and error.get("code") in NOT_TAKEN


def _takes_client_bulk_writes(client: AsyncMongoClient[Any]) -> bool:
    """What every server said when the client connected (no command of its own): while
    one is unknown (not yet connected, or in a failover) or older than 8.0, no."""
    servers = client.topology_description.server_descriptions().values()
    versions = [server.max_wire_version for server in servers]
    return bool(versions) and min(versions) >= CLIENT_BULK_WRITE


async def _one_collection_at_a_time(client: AsyncMongoClient[Any], writes: Sequence[Write]) -> None:
    for namespace, group in groupby(writes, key=lambda write: write._namespace):
        database, collection = str(namespace).split(".", 1)
        await client[database][collection].bulk_write(list(group), ordered=True)
