"""Reading a request: its JSON body (bounded, typed, strict) and its
`Idempotency-Key`. Every refusal is a typed error raised before anything is
sent to the ledger, so bad input writes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ledgerflow.api.problems import MalformedRequest, PayloadTooLarge, UnsupportedMediaType
from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.model import require_id

IDEMPOTENCY_KEY = "Idempotency-Key"


async def read_json(
    content_type: str | None,
    content_length: str | None,
    chunks: AsyncIterator[bytes],
    max_bytes: int,
) -> dict[str, Any]:
    """The body as a JSON object, refusing one over `max_bytes` before
    reading it (by its Content-Length) or while reading it (chunked)."""
    if content_length is not None:
        if not content_length.isdigit():
            raise MalformedRequest("Content-Length is not a number")
        if int(content_length) > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes", limit=max_bytes)
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes", limit=max_bytes)
    try:
        value = json.loads(bytes(data).decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedRequest("the body nests too deeply") from None
    if not isinstance(value, dict):
        raise MalformedRequest("the body must be a JSON object")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def idempotency_key(value: str | None) -> str:
    """The request's key: the operation's id in the ledger (a transfer's,
    a hold's, a capture's ...), with the ids' rules."""
    if value is None:
        raise InvalidRequest(
            f"writes need an {IDEMPOTENCY_KEY} header (the operation's id)",
            field=IDEMPOTENCY_KEY,
        )
    return require_id(value, IDEMPOTENCY_KEY)


class Fields:
    """A JSON object's members, each read once with its type; members the
    endpoint does not know are refused (a typo must not be ignored)."""

    def __init__(self, data: dict[str, Any], known: set[str]) -> None:
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
        self.data = data

    def text(self, name: str, *, required: bool = True) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise InvalidRequest(f"{name} is required", field=name)
            return None
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string", field=name)
        return value

    def required_text(self, name: str) -> str:
        value = self.text(name)
        assert value is not None
        return value

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise InvalidRequest(f"{name} is required", field=name)
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{name} must be an integer", field=name)
        return value

    def required_integer(self, name: str) -> int:
        value = self.integer(name, required=True)
        assert value is not None
        return value

    def amount(self, name: str = "amount") -> int | str:
        """Integer minor units, or a decimal string ("12.50"): never a float."""
        value = self.data.get(name)
        if value is None:
            raise InvalidRequest(f"{name} is required", field=name)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidRequest(
                f"{name} must be an integer of minor units or a decimal string", field=name
            )
        return value

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidRequest(f"{name} must be an object", field=name)
        return value

    def items(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if not isinstance(value, list):
            raise InvalidRequest(f"{name} must be an array", field=name)
        return value
