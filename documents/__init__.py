"""Beanie documents that double as the API's Pydantic schemas."""

from documents.item import Item, ItemCreate, ItemFields, ItemMergePatch
from documents.session import Session, SessionPublic
from documents.user import User, UserCreate, UserPublic, UserUpdate

DOCUMENT_MODELS = [User, Item, Session]

__all__ = [
    "DOCUMENT_MODELS",
    "Item",
    "ItemCreate",
    "ItemFields",
    "ItemMergePatch",
    "Session",
    "SessionPublic",
    "User",
    "UserCreate",
    "UserPublic",
    "UserUpdate",
]
