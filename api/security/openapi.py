"""The OpenAPI document states how to authenticate: a bearer token or an API key, on every /v1 route."""

from typing import Any

SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Agents: a token from the identity provider (roles agent, supervisor, admin).",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "Integrators: a key with the scopes the call needs.",
    },
}


def document_security(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare both schemes, and require one of them on every versioned route."""
    schema.setdefault("components", {})["securitySchemes"] = SCHEMES
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
    return schema
