"""Beanie documents that double as the API's Pydantic schemas."""

from documents.item import Item, ItemCreate, ItemFields, ItemMergePatch
from documents.user import User, UserCreate, UserPublic, UserUpdate

DOCUMENT_MODELS = [User, Item]

__all__ = [
    "DOCUMENT_MODELS",
    "Item",
    "ItemCreate",
    "ItemFields",
    "ItemMergePatch",
    "User",
    "UserCreate",
    "UserPublic",
    "UserUpdate",
]
