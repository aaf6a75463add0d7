"""The ledger's Temporal data converter: requests are decoded strictly.

Two things go wrong with the SDK's default decoding of a request dataclass:

* It coerces: a JSON amount of `1.9999` becomes the int `1` for a field typed
  `int | str`. Silently truncating money is not acceptable, so request types
  are built from the raw JSON values without coercion, and `validated()`
  refuses anything that is not exactly an int or a decimal string.
* A request that cannot be decoded at all (a missing field, a list for an
  object) fails the workflow *task*, which Temporal retries forever: the
  transfer would hang instead of answering. Here it becomes a non-retryable
  `InvalidRequest`, so the workflow fails at once with a typed error and
  nothing is written.

Every other type decodes exactly as with the default converter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
)
from temporalio.exceptions import ApplicationError

from ledgerflow.config import Settings
from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.model import OpenAccountRequest, TransferRequest

REQUEST_TYPES: tuple[type, ...] = (TransferRequest, OpenAccountRequest)


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=InvalidRequest.type, non_retryable=True)


def build_request(request_type: type, value: Any) -> Any:
    """Construct a request dataclass from raw JSON, without converting any value."""
    name = request_type.__name__
    if not isinstance(value, dict):
        raise _invalid(f"{name} must be a JSON object, got {type(value).__name__}")
    fields = {f.name: f for f in dataclasses.fields(request_type)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise _invalid(f"{name} has unknown field(s): {', '.join(map(str, unknown))}")
    missing = sorted(
        n
        for n, f in fields.items()
        if n not in value
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise _invalid(f"{name} is missing field(s): {', '.join(missing)}")
    return request_type(**value)


class LedgerPayloadConverter(DefaultPayloadConverter):
    def from_payloads(
        self, payloads: Sequence[Payload], type_hints: list[type] | None = None
    ) -> list[Any]:
        if not type_hints or len(type_hints) != len(payloads):
            return super().from_payloads(payloads, type_hints)
        values = []
        for payload, hint in zip(payloads, type_hints, strict=True):
            if hint in REQUEST_TYPES:
                try:
                    [raw] = super().from_payloads([payload], None)
                except Exception as exc:
                    raise _invalid(f"undecodable {hint.__name__}: {exc}") from exc
                values.append(build_request(hint, raw))
            else:
                values.extend(super().from_payloads([payload], [hint]))
        return values


DATA_CONVERTER = DataConverter(payload_converter_class=LedgerPayloadConverter)


def data_converter(settings: Settings) -> DataConverter:
    """The converter clients and workers use: `DATA_CONVERTER`, plus payload
    encryption when codec keys are configured (ledgerflow/codec.py)."""
    from ledgerflow.codec import EncryptionCodec

    codec = EncryptionCodec.from_settings(settings)
    if codec is None:
        return DATA_CONVERTER
    return dataclasses.replace(
        DATA_CONVERTER,
        payload_codec=codec,
        # Failure messages (a refusal names its accounts and amounts) are
        # sealed too, not only payloads.
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
