"""Writes to several collections in one round trip, where the server can.

MongoDB 8.0's client-level `bulkWrite` takes writes to any collections in one command;
an older server gets the same writes as one command per collection, in order. Either
way the writes run in order and stop at the first failure; they are not a transaction
(a crash between two of them leaves the earlier ones done), so callers order them so
that every prefix is safe.
"""

from collections.abc import Sequence
from itertools import groupby
from typing import Any

from pymongo import AsyncMongoClient, InsertOne, UpdateOne

Write = InsertOne[Any] | UpdateOne  # each made with namespace="<database>.<collection>"
CLIENT_BULK_WRITE = 25  # the wire version of MongoDB 8.0


async def write_together(client: AsyncMongoClient[Any], writes: Sequence[Write]) -> None:
    if not writes:
        return
    if _takes_client_bulk_writes(client):
        await client.bulk_write(list(writes), ordered=True)
    else:
        await _one_collection_at_a_time(client, writes)


def _takes_client_bulk_writes(client: AsyncMongoClient[Any]) -> bool:
    """What the servers said when the client connected (no command of its own); until
    then, or if any is older than 8.0, no."""
    servers = client.topology_description.server_descriptions().values()
    versions = [server.max_wire_version for server in servers if server.is_server_type_known]
    return bool(versions) and min(versions) >= CLIENT_BULK_WRITE


async def _one_collection_at_a_time(client: AsyncMongoClient[Any], writes: Sequence[Write]) -> None:
    for namespace, group in groupby(writes, key=lambda write: write._namespace):
        database, collection = str(namespace).split(".", 1)
        await client[database][collection].bulk_write(list(group), ordered=True)
