"""What deleting an account removes of the items feature: the items it owns (their
sharees see them go), their history and its trash, its shares of others' items (in the trash too),
the answers kept for its retries, and any other caller's kept answer showing its
items."""

from bson import ObjectId
from pymongo.asynchronous.client_session import AsyncClientSession

from api.items import policy
from api.items.history import remove_history_of
from api.items.idempotency import forget_answers_holding
from documents import IdempotencyRecord, Item, TrashedItem


async def remove_items_of(user_id: ObjectId, session: AsyncClientSession | None) -> None:
    items = Item.get_pymongo_collection()
    await items.delete_many(policy.owned_by(user_id), session=session)
    await TrashedItem.get_pymongo_collection().delete_many(
        policy.owned_by(user_id), session=session
    )
    await remove_history_of(user_id, session)
    await unshare_everything(user_id, session)
    await IdempotencyRecord.get_pymongo_collection().delete_many(
        {"owner_id": user_id}, session=session
    )
    await forget_answers_holding([], session, owner_id=user_id)


async def unshare_everything(user_id: ObjectId, session: AsyncClientSession | None) -> None:
    """Take `user_id` off every item shared with them (readers and shares together,
    one atomic write per item)."""
    for collection in (Item.get_pymongo_collection(), TrashedItem.get_pymongo_collection()):
        await collection.update_many(
            policy.shared_with(user_id),
            {"$pull": {"readers": user_id, "shares": {"user_id": user_id}}},
            session=session,
        )
