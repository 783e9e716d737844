"""`/webhooks`: an account's webhooks, their secrets and their delivery log.

Only a webhook's owner sees or changes it (anyone else gets a 404, superusers too: a
webhook is its owner's integration). A password login, or a personal token with
`webhooks:write`. A URL is checked when it is set (every address its host resolves to
must be public, unless WEBHOOK_ALLOWED_NETWORKS lets it in) and again at every delivery.
"""

import random
from datetime import timedelta
from typing import Annotated, Any

from bson import ObjectId
from fastapi import APIRouter, Path, Response, Security
from pydantic import ValidationError
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from api.accounts.auth_first import AuthFirstRoute
from api.accounts.deps import current_user
from api.config import Settings
from api.core import queue
from api.core.errors import Conflict, DomainError, NotFound, problem_responses
from api.core.pagination import Page, PageQuery, fetch_page
from api.core.queue import Queue
from api.core.retry import Retry
from api.core.services import AppServices
from api.webhooks import addresses, signing
from api.webhooks.channel import NAME, Channel, delivery, retired
from api.webhooks.dispatcher import new_delivery_id, payload
from documents import Delivery, User, Webhook
from documents.base import ObjectIdParam, utcnow
from documents.webhook import (
    PING,
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookSecret,
    WebhookUpdate,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"], route_class=AuthFirstRoute)
HookOwner = Annotated[User, Security(current_user, scopes=["webhooks:write"])]
WebhookId = Annotated[ObjectIdParam, Path(description="The webhook's id")]
DeliveryId = Annotated[
    str, Path(pattern=r"^msg_[a-z2-7]{26}$", description="The delivery's id (its `webhook-id`)")
]
NEWEST_FIRST = [("created_at", -1), ("_id", -1)]
SECRETS_KEPT = 10  # a webhook's secrets that may sign at once (rotations in a row)


class RefusedWebhookUrl(DomainError):
    status, code, title = 422, "webhook-url-refused", "Webhook URL refused"


class TooManyWebhooks(DomainError):
    status, code, title = 409, "too-many-webhooks", "Too many webhooks"


class WebhookDisabled(DomainError):
    status, code, title = 409, "webhook-disabled", "Webhook disabled"
    detail = 'The webhook is disabled: turn it on first (PATCH with {"enabled": true}).'


class NotResendable(DomainError):
    status, code, title = 409, "delivery-not-resendable", "Delivery cannot be sent again"


async def _checked(url: str, settings: Settings) -> None:
    try:
        await addresses.checked(url, settings.webhook_networks)
    except addresses.RefusedUrl as refused:
        raise RefusedWebhookUrl(f"url: {refused}") from None


async def _owned(webhook_id: ObjectId, user: User) -> dict[str, Any]:
    hook: dict[str, Any] | None = await Webhook.get_pymongo_collection().find_one(
        {"_id": webhook_id}
    )
    if hook is None or hook.get("owner_id") != user.id:
        raise NotFound("webhook")
    return hook


class UnreadableWebhook(DomainError):
    status, code, title = 409, "unreadable-webhook", "Unreadable webhook"
    detail = (
        "This webhook's stored document is not valid (another tool wrote it): delete it, "
        "or repair it in the database."
    )


def _shown(hook: dict[str, Any]) -> WebhookPublic:
    try:
        return WebhookPublic.model_validate(hook)
    except ValidationError:
        raise UnreadableWebhook() from None


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_webhook(body: WebhookCreate, user: HookOwner, services: AppServices) -> Any:
    """A webhook: each change of an item you can read is POSTed to `url`, signed
    (Standard Webhooks). Its `secret` is shown here only (and by rotation). At most
    WEBHOOKS_MAX_PER_USER per account (409); a URL whose host is not public is a 422."""
    settings = services.settings
    await _checked(body.url, settings)
    hook_id, secret, now = ObjectId(), signing.new_secret(), utcnow()
    sealed = signing.sealed(secret, settings.signing_secret, str(hook_id))
    hook = {
        "_id": hook_id,
        "owner_id": user.id,
        "url": body.url,
        "events": body.events,
        "description": body.description,
        "enabled": True,
        "disabled_reason": None,
        "created_at": now,
        "updated_at": now,
        "secrets": [{"sealed": sealed, "created_at": now, "retires_at": None}],
        "secrets_version": 0,
        "failures_in_row": 0,
    }
    await _insert_within_limit(hook, user, settings.webhooks_max_per_user)
    return WebhookCreated.model_validate({**hook, "secret": secret})


async def _insert_within_limit(hook: dict[str, Any], user: User, most: int) -> None:
    """Store the webhook in a free one of its owner's `most` places (a unique index):
    however many creations race, no more than `most` land."""
    hooks = Webhook.get_pymongo_collection()
    for _ in range(4 * most):
        taken = await hooks.find({"owner_id": user.id}, {"slot": 1}).to_list()
        free = sorted({*range(most)} - {doc.get("slot") for doc in taken})
        if not free:
            break
        try:
            await hooks.insert_one({**hook, "slot": random.choice(free[:8])})
            return
        except DuplicateKeyError:  # another creation took it first: look again
            continue
    raise TooManyWebhooks(f"An account may have at most {most} webhooks.")


@router.get("", response_model=Page[WebhookPublic], responses=problem_responses(401, 403))
async def list_webhooks(user: HookOwner, page: PageQuery, services: AppServices) -> Any:
    """Your webhooks, newest first."""
    rows, next_cursor, total = await fetch_page(
        Webhook.get_pymongo_collection(),
        {"owner_id": user.id, "created_at": {"$type": "date"}},
        NEWEST_FIRST,
        page,
        services.cursors,
    )
    shown = []
    for row in rows:
        try:
            shown.append(_shown(row))
        except UnreadableWebhook:  # another tool wrote it: skipped, not the whole page
            services.metrics.skipped("webhooks")
    return Page[WebhookPublic](items=shown, next_cursor=next_cursor, total=total)


@router.get(
    "/{webhook_id}", response_model=WebhookPublic, responses=problem_responses(401, 403, 404)
)
async def read_webhook(webhook_id: WebhookId, user: HookOwner) -> Any:
    return _shown(await _owned(webhook_id, user))


@router.patch(
    "/{webhook_id}",
    response_model=WebhookPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_webhook(
    webhook_id: WebhookId,
    body: WebhookUpdate,
    user: HookOwner,
    services: AppServices,
    channel: Channel,
) -> Any:
    """Change its `url` (checked as at creation), `events`, `description`; `enabled:
    true` turns it back on (clearing `disabled_reason`), `false` turns it off."""
    await _owned(webhook_id, user)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"enabled"})
    if body.url is not None:
        await _checked(body.url, services.settings)
    if body.enabled is True:
        changes.update(enabled=True, disabled_reason=None, failures_in_row=0)
    elif body.enabled is False:
        changes.update(enabled=False, disabled_reason="disabled by its owner")
    changes["updated_at"] = utcnow()
    hook = await Webhook.get_pymongo_collection().find_one_and_update(
        {"_id": webhook_id, "owner_id": user.id},
        {"$set": changes},
        return_document=ReturnDocument.AFTER,
    )
    channel.forget(webhook_id)
    if hook is None:
        raise NotFound("webhook")
    return _shown(hook)


@router.delete("/{webhook_id}", status_code=204, responses=problem_responses(401, 403, 404))
async def delete_webhook(webhook_id: WebhookId, user: HookOwner, channel: Channel) -> Response:
    """The webhook and its delivery log; nothing more is sent to it."""
    await _owned(webhook_id, user)
    await Webhook.get_pymongo_collection().delete_one({"_id": webhook_id, "owner_id": user.id})
    channel.forget(webhook_id)
    await queue.collection().delete_many({"channel": NAME, "webhook_id": webhook_id})
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=WebhookSecret,
    responses=problem_responses(401, 403, 404, 409),
)
async def rotate_webhook_secret(
    webhook_id: WebhookId, user: HookOwner, services: AppServices, channel: Channel
) -> Any:
    """A new secret, shown this once. For WEBHOOK_SECRET_OVERLAP_HOURS deliveries are
    signed by the previous one too (two signatures in `webhook-signature`), so a
    receiver can switch without missing one."""
    settings = services.settings
    async for _ in Retry(0.01, 0.2, tries=10):
        hook = await _owned(webhook_id, user)
        now = utcnow()
        until = now + timedelta(hours=settings.webhook_secret_overlap_hours)
        kept = []
        for old in hook.get("secrets") or []:
            if not isinstance(old, dict):
                continue
            if retired(old, now):
                continue
            kept.append({**old, "retires_at": old.get("retires_at") or until})
        secret = signing.new_secret()
        sealed = signing.sealed(secret, settings.signing_secret, str(webhook_id))
        fresh = {"sealed": sealed, "created_at": now, "retires_at": None}
        version = hook.get("secrets_version", 0)
        swapped = await Webhook.get_pymongo_collection().update_one(
            {"_id": webhook_id, "owner_id": user.id, "secrets_version": version},
            {
                "$set": {
                    "secrets": [fresh, *kept][:SECRETS_KEPT],
                    "secrets_version": version + 1 if isinstance(version, int) else 1,
                    "updated_at": now,
                }
            },
        )
        if swapped.matched_count == 1:
            channel.forget(webhook_id)
            overlap = until if kept and until > now else None
            return WebhookSecret(secret=secret, previous_valid_until=overlap)
    raise Conflict("The webhook's secret is being rotated by another request: try again.")


@router.post(
    "/{webhook_id}/ping",
    status_code=202,
    response_model=DeliveryPublic,
    responses=problem_responses(401, 403, 404, 409),
)
async def ping_webhook(webhook_id: WebhookId, user: HookOwner, work: Queue) -> Any:
    """Send a `webhook.ping` delivery now (to try the receiver and its verification)."""
    hook = await _owned(webhook_id, user)
    if hook.get("enabled") is not True:
        raise WebhookDisabled()
    now = utcnow()
    key = new_delivery_id()
    body = payload(
        PING,
        now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        {"webhook": {"id": str(webhook_id)}},
    )
    await work.enqueue_once(NAME, [delivery(webhook_id, user.id, PING, body, key)])
    return await _delivery(webhook_id, key)


async def _delivery(webhook_id: ObjectId, delivery_id: str) -> DeliveryPublic:
    found = await queue.collection().find_one(
        {"_id": delivery_id, "channel": NAME, "webhook_id": webhook_id}
    )
    if found is None:
        raise NotFound("delivery")
    try:
        return DeliveryPublic.of(found)
    except ValidationError:
        raise NotFound("delivery") from None


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliveryPublic],
    responses=problem_responses(401, 403, 404),
)
async def list_deliveries(
    webhook_id: WebhookId, user: HookOwner, page: PageQuery, services: AppServices
) -> Any:
    """The webhook's deliveries, newest first, with their latest attempt. Kept
    OUTBOX_RETENTION_DAYS after they settle."""
    await _owned(webhook_id, user)
    where = {
        "channel": NAME,
        "webhook_id": webhook_id,
        "created_at": {"$type": "date"},
        "_id": {"$type": "string"},
    }
    rows, next_cursor, total = await fetch_page(
        queue.collection(), where, NEWEST_FIRST, page, services.cursors
    )
    shown = []
    for row in rows:
        try:
            shown.append(DeliveryPublic.of(row))
        except ValidationError:
            services.metrics.skipped("webhook_deliveries")
    return Page[DeliveryPublic](items=shown, next_cursor=next_cursor, total=total)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=DeliveryPublic,
    responses=problem_responses(401, 403, 404, 409),
)
async def retry_delivery(
    webhook_id: WebhookId, delivery_id: DeliveryId, user: HookOwner, work: Queue
) -> Any:
    """Send this delivery again, as new (its attempts start over; its `webhook-id`
    stays, so the receiver can tell it is the same event): delivered or dead. One still
    pending (or being sent), or whose item was deleted for good, is a 409."""
    hook = await _owned(webhook_id, user)
    if hook.get("enabled") is not True:
        raise WebhookDisabled()
    again = await queue.collection().update_one(
        {
            "_id": delivery_id,
            "channel": NAME,
            "webhook_id": webhook_id,
            "status": {"$in": [Delivery.sent, Delivery.dead]},
            "body": {"$type": "string"},
        },
        queue.queued_again(),
    )
    if again.matched_count != 1:
        await _delivery(webhook_id, delivery_id)  # a 404 when it is not this webhook's
        raise NotResendable(
            "The delivery is still pending, or its item was deleted for good (its payload with it)."
        )
    work.nudge()
    return await _delivery(webhook_id, delivery_id)
