"""The hash chain's fast encoder (`canonical_content`) writes exactly the
bytes of `canonical_json(event_content(...))`, the definition every stored
hash was made with, for any event: one byte of difference and every event
written since would fail `verify`."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.audit.chain_walk import AccountRange, split
from ledgerflow.domain.hashing import (
    _instant,
    canonical_content,
    chain_hash,
    content_bytes,
    event_content,
)
from ledgerflow.domain.model import canonical_json

texts = st.text(max_size=12)  # control characters, quotes, backslashes, non-ASCII
optional = st.none() | texts
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
instants = st.datetimes(
    min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                               timezone(timedelta(hours=-8))]),
)  # fmt: skip
contents = st.fixed_dictionaries(
    {
        "event_id": texts, "type": texts, "account_id": texts,
        "version": st.integers(0, 2**63 - 1), "amount": st.integers(-(2**63), 2**63 - 1),
        "currency": texts, "balance_after": st.integers(-(2**63), 2**63 - 1),
        "occurred_at": instants, "recorded_at": instants, "region": texts,
        "initiated_by": texts, "transfer_id": optional, "leg": optional,
        "counterparty": optional, "description": optional,
        "metadata": st.dictionaries(texts, json_values, max_size=4),
        "pending_after": st.integers(0, 2**63 - 1),
    }
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(contents)
def test_the_fast_bytes_are_the_canonical_json_of_the_content(fields: dict) -> None:  # type: ignore[type-arg]
    content = event_content(**fields)
    expected = canonical_json(content)
    assert content_bytes(content) == expected
    instants = {k: _instant(fields[k]) for k in ("occurred_at", "recorded_at")}
    assert canonical_content(**(fields | instants)) == expected


def test_a_content_of_another_shape_or_type_takes_the_general_encoder() -> None:
    content = event_content(
        event_id="e", type="Credited", account_id="a", version=1, amount=5, currency="USD",
        balance_after=5, occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC), region="us", initiated_by="ops",
        transfer_id=None, leg=None, counterparty=None, description=None, metadata={},
    )  # fmt: skip
    # (An explicit zero pending amount is written out by the general encoder,
    # though `event_content` leaves it out: the bytes must still be its.)
    for odd in (content | {"extra": 1}, content | {"amount": True}, content | {"amount": 5.0},
                content | {"pending_after": 0}):  # fmt: skip
        assert content_bytes(odd) == canonical_json(odd)
        assert chain_hash("00" * 32, odd) != chain_hash("00" * 32, content)
    with pytest.raises(TypeError):
        canonical_content(**(content | {"version": True}))


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        _instant(datetime(2026, 1, 1))


@given(st.lists(st.integers(0, 50), max_size=30), st.integers(1, 9))
def test_the_ranges_cover_every_account_once(counts: list[int], parts: int) -> None:
    sizes = [(f"a{i:03d}", n) for i, n in enumerate(counts)]
    ranges = split(sizes, parts)
    assert 1 <= len(ranges) <= parts
    assert ranges[0].low is None and ranges[-1].high is None
    for left, right in itertools.pairwise(ranges):
        assert left.high == right.low and left.high is not None
    for account_id, _ in [*sizes, ("", 0), ("zzz", 0)]:
        inside = [
            r for r in ranges
            if (r.low is None or r.low <= account_id) and (r.high is None or account_id < r.high)
        ]  # fmt: skip
        assert len(inside) == 1, (account_id, ranges)
    assert split(sizes, 1) == [AccountRange()]
