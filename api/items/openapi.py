"""What the OpenAPI document says about items beyond what FastAPI derives: the schemas
an item's `data` refers to (one per nesting level left), `where` as the JSON it is,
with its own schema, and the batch size this server takes."""

from collections.abc import Callable
from typing import Any

from api.config import API_PREFIX
from api.items.query import WHERE_DESCRIPTION, where_schemas
from documents.free_json import data_value_schemas


def describe_items(batch_max_operations: int) -> Callable[[dict[str, Any]], None]:
    def describe(document: dict[str, Any]) -> None:
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(data_value_schemas())
        schemas.update(where_schemas())
        for parameter in document["paths"][f"{API_PREFIX}/items"]["get"]["parameters"]:
            if parameter["name"] == "where":
                parameter.pop("schema", None)
                parameter["description"] = WHERE_DESCRIPTION
                schema = {"$ref": "#/components/schemas/WhereFilter0"}
                parameter["content"] = {"application/json": {"schema": schema}}
        operations = schemas["Batch"]["properties"]["operations"]
        operations["maxItems"] = batch_max_operations  # the setting, not the cap

    return describe
