from dataclasses import replace
from typing import Any

import pytest

from ledgerflow.domain.errors import (
    InvalidAmount,
    InvalidRequest,
    RequestError,
    SameAccount,
    UnknownCurrency,
)
from ledgerflow.domain.model import OpenAccountRequest, TransferRequest

GOOD = TransferRequest(
    transfer_id="t-1",
    from_account="acc-1",
    to_account="acc-2",
    amount="12.50",
    currency="USD",
    initiated_by="alice@example",
    description="rent",
    metadata={"invoice": "INV-7"},
)


def test_a_good_request_validates_to_exact_minor_units() -> None:
    transfer = GOOD.validated()
    assert transfer.amount == 1250
    assert transfer.summary() == "12.50 USD acc-1 → acc-2"
    assert transfer.workflow_id == "transfer-t-1"


BAD: list[tuple[dict[str, Any], type[RequestError]]] = [
    ({"transfer_id": ""}, InvalidRequest),
    ({"transfer_id": None}, InvalidRequest),
    ({"from_account": None}, InvalidRequest),
    ({"amount": None}, InvalidRequest),
    ({"currency": ""}, InvalidRequest),
    ({"initiated_by": ""}, InvalidRequest),
    ({"transfer_id": "x" * 65}, InvalidRequest),
    ({"transfer_id": "t 1"}, InvalidRequest),
    ({"transfer_id": "t'; DROP TABLE events;--"}, InvalidRequest),
    ({"from_account": "accé"}, InvalidRequest),
    ({"to_account": "acc\u202e1"}, InvalidRequest),
    ({"to_account": "-leading-dash"}, InvalidRequest),
    ({"from_account": 42}, InvalidRequest),
    ({"to_account": "acc-1"}, SameAccount),
    ({"amount": 0}, InvalidAmount),
    ({"amount": "1.234"}, InvalidAmount),
    ({"amount": 1.5}, InvalidAmount),
    ({"amount": "nan"}, InvalidAmount),
    ({"currency": "ZZZ"}, UnknownCurrency),
    ({"metadata": {"k": "v" * 5000}}, InvalidRequest),
    ({"metadata": {"k": float("nan")}}, InvalidRequest),
    ({"metadata": {1: "x"}}, InvalidRequest),
    ({"metadata": ["not", "an", "object"]}, InvalidRequest),
    ({"description": "d" * 501}, InvalidRequest),
    ({"description": 7}, InvalidRequest),
    ({"description": "nul\x00byte"}, InvalidRequest),
    ({"metadata": {"k": "nul\x00"}}, InvalidRequest),
    ({"metadata": {"rate": 1.5}}, InvalidRequest),
    ({"metadata": {"nested": [{"rate": 1e16}]}}, InvalidRequest),
    ({"metadata": {"when": object()}}, InvalidRequest),
]


@pytest.mark.parametrize(("change", "error"), BAD)
def test_malformed_requests_raise_typed_errors(
    change: dict[str, Any], error: type[RequestError]
) -> None:
    with pytest.raises(error) as caught:
        replace(GOOD, **change).validated()
    assert caught.value.type == error.type
    assert caught.value.message


def test_fingerprint_is_stable_and_covers_every_field() -> None:
    base = GOOD.validated().fingerprint()
    assert replace(GOOD, amount=1250).validated().fingerprint() == base
    for change in (
        {"amount": "12.51"},
        {"to_account": "acc-3"},
        {"description": "other"},
        {"metadata": {"invoice": "INV-8"}},
        {"initiated_by": "bob"},
    ):
        assert replace(GOOD, **change).validated().fingerprint() != base


@pytest.mark.parametrize(
    "change",
    [{"account_id": "bad id"}, {"currency": "usd"}, {"overdraft_limit": -1},
     {"overdraft_limit": 1.5}, {"overdraft_limit": True}, {"metadata": {"x": float("inf")}}],
)  # fmt: skip
def test_malformed_account_requests_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(RequestError):
        replace(OpenAccountRequest("acc-1", "USD", "us"), **change).validated()
