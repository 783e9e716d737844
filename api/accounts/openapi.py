"""What the OpenAPI document says about signing in, beyond what FastAPI derives."""

from typing import Any

from api.accounts.deps import oauth2_scheme
from api.accounts.personal_tokens import ACCESS_TOKEN_SCHEME
from api.config import API_PREFIX
from documents.access_token import SCOPES

PASSWORD_SCHEME = oauth2_scheme.scheme_name
FORBIDDEN = {
    "description": "Forbidden (a personal access token lacks the scope, or may never do this)",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def describe_security(document: dict[str, Any]) -> None:
    """Each operation accepts a password login, and a personal access token only where it
    names the scopes one needs (FastAPI puts them on the OAuth2 scheme, where they would
    tell Swagger UI to ask for scopes at password login, which grants everything)."""
    # Open registration needs no token; a superuser's lets them create superusers.
    # (FastAPI would append `openapi_extra`'s security to its own.)
    document["paths"][f"{API_PREFIX}/users"]["post"]["security"] = [
        {},
        {PASSWORD_SCHEME: []},
    ]
    for path in document.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "security" not in operation:
                continue
            scopes: list[str] = []
            for requirement in operation["security"]:
                scopes += requirement.get(PASSWORD_SCHEME, [])
            operation["security"] = [
                {} if requirement == {} else {PASSWORD_SCHEME: []}
                for requirement in operation["security"]
                if ACCESS_TOKEN_SCHEME not in requirement
            ]
            # Any operation that takes a login can refuse a token for its scopes: a 403.
            responses = operation.setdefault("responses", {})
            responses.setdefault("403", FORBIDDEN)
            if scopes:
                operation["security"].append({ACCESS_TOKEN_SCHEME: scopes})
                before = operation.get("description", "")
                needs = f"A personal access token needs the scope {', '.join(scopes)}."
                operation["description"] = f"{before}\n\n{needs}" if before else needs
    # Declared here rather than as a dependency: it reads the same header the OAuth2
    # scheme does, and a second security dependency would run on every request.
    listed = "; ".join(f"`{name}`: {text}" for name, text in SCOPES.items())
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[ACCESS_TOKEN_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "dsk_<id>_<secret>",
        "description": (
            "A personal access token (`POST /api/v1/auth/tokens`), sent as "
            f"`Authorization: Bearer dsk_...`. Scopes: {listed}. An operation that "
            "does not list this scheme needs a password login."
        ),
    }
