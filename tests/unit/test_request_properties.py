"""Hostile requests, generated (issue 14): whatever text, numbers or JSON a
client sends, a request is either refused with a typed request error or
validated into a transfer that the ledger can store, hash and hand back
unchanged. Nothing else may happen (no crash, no retry-forever later).

The oracle for ids is written out by hand (a character set, a length), not
the module's regular expression.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.domain.errors import LedgerError, RequestError
from ledgerflow.domain.hashing import GENESIS_HASH, chain_hash, event_content
from ledgerflow.domain.model import TransferRequest, canonical_json

ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-")

hostile_text = st.one_of(
    st.text(max_size=70),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=70),
    st.text(alphabet=st.characters(categories=["Cs", "Cc", "Zs", "Nd", "Sm"]), max_size=20),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udcffb", "名前", "💸", "x" * 64, "x" * 65,
                     "clearing:us:eu:USD", "../../etc", "=1+1", "'; DROP TABLE events; --"]),
)  # fmt: skip
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=12,
)
amounts = st.one_of(st.integers(), st.floats(), hostile_text, st.none(), st.booleans())


def good_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 64
        and set(value) <= ID_CHARS
        and value[0] not in "._:@-"
    )


@given(
    transfer_id=hostile_text,
    from_account=hostile_text,
    to_account=hostile_text,
    amount=amounts,
    currency=st.one_of(st.sampled_from(["USD", "JPY", "KWD", "usd"]), hostile_text),
    initiated_by=hostile_text,
    description=st.one_of(st.none(), hostile_text),
    metadata=st.one_of(
        st.none(), st.dictionaries(hostile_text, json_values, max_size=4), json_values
    ),
)
def test_a_request_is_refused_typed_or_becomes_a_transfer_that_can_be_stored(
    transfer_id: Any, from_account: Any, to_account: Any, amount: Any, currency: Any,
    initiated_by: Any, description: Any, metadata: Any,
) -> None:  # fmt: skip
    request = TransferRequest(
        transfer_id, from_account, to_account, amount, currency, initiated_by, description,
        metadata,
    )  # fmt: skip
    try:
        transfer = request.validated()
    except LedgerError as exc:
        assert isinstance(exc, RequestError), exc  # malformed, never "rejected"
        return
    for value in (transfer.transfer_id, transfer.from_account, transfer.to_account,
                  transfer.initiated_by):  # fmt: skip
        assert good_id(value), value
    assert not transfer.from_account.startswith("clearing:")
    assert not transfer.to_account.startswith("clearing:")
    assert transfer.from_account != transfer.to_account
    assert isinstance(transfer.amount, int) and not isinstance(transfer.amount, bool)
    assert 1 <= transfer.amount <= 2**63 - 1
    if transfer.description is not None:
        transfer.description.encode("utf-8")  # valid UTF-8
        assert "\x00" not in transfer.description and len(transfer.description) <= 500
    # Storable and hashable as given: the bytes PostgreSQL and the chain see.
    canonical_json(transfer.metadata).decode("utf-8")
    assert len(transfer.fingerprint()) == 64
    now = datetime.now(UTC)
    content = event_content(
        event_id="e", type="Debited", account_id=transfer.from_account, version=2,
        amount=-transfer.amount, currency=transfer.currency, balance_after=0, occurred_at=now,
        recorded_at=now, region="us", initiated_by=transfer.initiated_by,
        transfer_id=transfer.transfer_id, leg="debit", counterparty=transfer.to_account,
        description=transfer.description, metadata=transfer.metadata,
    )  # fmt: skip
    assert len(chain_hash(GENESIS_HASH, content)) == 64


@given(
    amount=st.one_of(
        st.integers(1, 10**6), st.from_regex(r"[1-9][0-9]{0,5}(\.[0-9]{1,2})?", fullmatch=True)
    ),
    description=st.one_of(st.none(), hostile_text),
    metadata=st.one_of(st.none(), st.dictionaries(hostile_text, json_values, max_size=4)),
)
def test_hostile_text_in_a_well_formed_transfer_is_stored_verbatim_or_refused(
    amount: Any, description: Any, metadata: Any
) -> None:
    """With valid ids and amount, only the free text and metadata are hostile:
    accepted exactly as given (text is data, never code), or refused typed."""
    request = TransferRequest("t-1", "alice", "bob", amount, "USD", "svc", description, metadata)
    try:
        transfer = request.validated()
    except LedgerError as exc:
        assert isinstance(exc, RequestError), exc
        assert exc.type == "InvalidRequest"  # the amount and ids are fine: the text is not
        return
    assert (transfer.description, transfer.metadata) == (description, metadata or {})
    assert len(transfer.fingerprint()) == 64
