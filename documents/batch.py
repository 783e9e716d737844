"""POST /items/batch: the operations a client sends, and the results it gets back."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from documents.base import ObjectIdParam
from documents.item import Item, ItemCreate, ItemMergePatch

MAX_OPERATIONS = 150  # the most BATCH_MAX_OPERATIONS may allow; the schema states the setting

IfMatchValue = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description='As the If-Match header: an ETag such as `"3"`, several, or `*`',
    ),
]


class _Operation(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateOperation(_Operation):
    op: Literal["create"]
    item: ItemCreate


class PatchOperation(_Operation):
    op: Literal["patch"]
    id: ObjectIdParam
    patch: ItemMergePatch
    if_match: IfMatchValue | None = None


class ReplaceOperation(_Operation):
    op: Literal["replace"]
    id: ObjectIdParam
    item: ItemCreate
    if_match: IfMatchValue | None = None


class DeleteOperation(_Operation):
    op: Literal["delete"]
    id: ObjectIdParam
    if_match: IfMatchValue | None = None


Operation = Annotated[
    CreateOperation | PatchOperation | ReplaceOperation | DeleteOperation,
    Field(discriminator="op"),
]


class Batch(BaseModel):
    """Writes applied all or nothing, in order: a later operation sees the earlier ones."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "operations": [
                        {"op": "create", "item": {"title": "Packing list"}},
                        {"op": "patch", "id": "6b0ece10d279a67bbc566f5f", "patch": {"tags": ["a"]}},
                        {"op": "delete", "id": "6b0ece10d279a67bbc566f60", "if_match": '"2"'},
                    ]
                }
            ]
        },
    )

    operations: Annotated[list[Operation], Field(min_length=1, max_length=MAX_OPERATIONS)]


class BatchResult(BaseModel):
    op: Literal["create", "patch", "replace", "delete"]
    status: Literal[200, 201, 204]
    item: Item | None = Field(description="The item as written; null for a delete")


class BatchResults(BaseModel):
    results: list[BatchResult] = Field(description="One per operation, in order")
