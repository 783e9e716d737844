"""Beanie documents that double as the API's Pydantic schemas."""

from documents.access_token import (
    AccessToken,
    AccessTokenCreate,
    AccessTokenCreated,
    AccessTokenPublic,
)
from documents.action_token import ActionToken, Purpose
from documents.idempotency import IdempotencyRecord
from documents.item import Item, ItemCreate, ItemFields, ItemMergePatch
from documents.login_attempts import LoginAttempts
from documents.outbox import Delivery, OutboxMessage
from documents.security_event import SecurityEvent, SecurityEventPublic
from documents.session import Session, SessionPublic
from documents.trash import TrashedItem, TrashedItemPublic
from documents.user import User, UserCreate, UserPublic, UserUpdate
from documents.version import ItemAsItWas, ItemVersion, VersionSummary
from documents.webhook import Webhook

DOCUMENT_MODELS = [
    User,
    Item,
    Session,
    AccessToken,
    IdempotencyRecord,
    OutboxMessage,
    ActionToken,
    LoginAttempts,
    SecurityEvent,
    TrashedItem,
    ItemVersion,
    Webhook,
]

__all__ = [
    "DOCUMENT_MODELS",
    "AccessToken",
    "AccessTokenCreate",
    "AccessTokenCreated",
    "AccessTokenPublic",
    "ActionToken",
    "Delivery",
    "IdempotencyRecord",
    "Item",
    "ItemAsItWas",
    "ItemCreate",
    "ItemFields",
    "ItemMergePatch",
    "ItemVersion",
    "LoginAttempts",
    "OutboxMessage",
    "Purpose",
    "SecurityEvent",
    "SecurityEventPublic",
    "Session",
    "SessionPublic",
    "TrashedItem",
    "TrashedItemPublic",
    "User",
    "UserCreate",
    "UserPublic",
    "UserUpdate",
    "VersionSummary",
    "Webhook",
]
