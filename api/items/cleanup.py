"""What deleting an account removes of the items feature: the items it owns, the
answers kept for its retries, and any other caller's kept answer showing its items."""

from bson import ObjectId
from pymongo.asynchronous.client_session import AsyncClientSession

from api.items import policy
from api.items.idempotency import forget_answers_holding
from documents import IdempotencyRecord, Item


async def remove_items_of(user_id: ObjectId, session: AsyncClientSession | None) -> None:
    await Item.get_pymongo_collection().delete_many(policy.owned_by(user_id), session=session)
    await IdempotencyRecord.get_pymongo_collection().delete_many(
        {"owner_id": user_id}, session=session
    )
    await forget_answers_holding([], session, owner_id=user_id)
