"""The strict request decoding of the ledger's Temporal data converter."""

from typing import Any

import pytest
from temporalio.converter import DefaultPayloadConverter
from temporalio.exceptions import ApplicationError

from ledgerflow.converter import LedgerPayloadConverter
from ledgerflow.domain.errors import InvalidAmount
from ledgerflow.domain.model import TransferRequest, TransferResult

GOOD: dict[str, Any] = {
    "transfer_id": "t-1",
    "from_account": "a",
    "to_account": "b",
    "amount": 1250,
    "currency": "USD",
    "initiated_by": "x",
}


def decode(value: Any, hint: type = TransferRequest) -> Any:
    payloads = DefaultPayloadConverter().to_payloads([value])
    [decoded] = LedgerPayloadConverter().from_payloads(payloads, [hint])
    return decoded


def test_a_float_amount_is_not_truncated_but_refused() -> None:
    request = decode(GOOD | {"amount": 1.9999})
    assert request.amount == 1.9999
    with pytest.raises(InvalidAmount):
        request.validated()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "currency"}, "missing field"),
        (GOOD | {"surprise": 1}, "unknown field"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_undecodable_requests_become_non_retryable_invalid_requests(
    value: Any, message: str
) -> None:
    with pytest.raises(ApplicationError, match=message) as caught:
        decode(value)
    assert caught.value.type == "InvalidRequest" and caught.value.non_retryable


def test_other_types_decode_as_usual() -> None:
    result = TransferResult("t-1", "confirmed", "f", "us", from_balance_after=5)
    assert decode(result, TransferResult) == result
    assert decode(GOOD) == TransferRequest(**GOOD)
