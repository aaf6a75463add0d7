"""The OpenAPI document of the HTTP API, built from its route table.

Served at `/openapi.json` and checked in as `docs/openapi.json`
(`python -m ledgerflow.api.openapi > docs/openapi.json`); a test fails when
the two differ."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from ledgerflow.api.operations import API_ROUTES
from ledgerflow.api.problems import STATUS, every_error_type

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _parameters(path: str, query: tuple[tuple[str, str, str], ...], keyed: bool) -> list[Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "schema": {"type": kind},
         "description": text}
        for name, kind, text in query
    ]  # fmt: skip
    if keyed:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "the operation's id in the ledger: the same key with the same "
                "body answers the same; with another body, 409",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"},
            }
        )
    return params


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in API_ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "tags": list(route.tags),
            "security": [{"token": [route.scope]}],
            "x-scope": route.scope,
            "parameters": _parameters(route.path, route.query, route.keyed),
            "responses": {
                "200": {"description": "the result", "content": {"application/json": {}}},
                "default": {
                    "description": "a problem (see components.x-error-status)",
                    "content": {"application/problem+json": {"schema": _PROBLEM}},
                },
            },
        }
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": route.body}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ledgerflow",
            "version": "1",
            "description": "A double-entry ledger in which every transfer is a durable "
            "Temporal workflow. Amounts are integer minor units. Every request needs "
            "`Authorization: Bearer <token>` (`ledgerflow token create`).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail", "error"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "error": {"enum": every_error_type()},
                    },
                }
            },
            "x-error-status": {name: STATUS.get(name, 500) for name in every_error_type()},
        },
    }


def main() -> int:
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
