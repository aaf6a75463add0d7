"""`AccountChains.feed_segment`, which both archive verifiers call: a
manifest whose postings do not net to zero is a double-entry finding, and
the segment's events are still followed."""

from __future__ import annotations

from datetime import UTC, datetime

from ledgerflow.archive.segments import decode_checkable, encode_segment
from ledgerflow.archive.verify import AccountChains, ArchiveVerifyReport
from ledgerflow.domain.hashing import GENESIS_HASH, event_bytes, link_hash
from ledgerflow.domain.model import Event

T0 = datetime(2026, 12, 3, tzinfo=UTC)


def opening(account_id: str, amount: int, n: int) -> Event:
    draft = Event(
        event_id=f"00000000-0000-0000-0000-{n:012d}", type="Credited", account_id=account_id,
        version=1, amount=amount, currency="USD", balance_after=amount, occurred_at=T0,
        recorded_at=T0, region="us", initiated_by="test", transfer_id="t-1", leg="credit",
        counterparty=None, description=None, metadata={}, prev_hash=GENESIS_HASH, hash="",
        position=n, tx_id=1,
    )  # fmt: skip
    return Event(**{**draft.__dict__, "hash": link_hash(GENESIS_HASH, event_bytes(draft))})


def test_a_manifest_whose_postings_do_not_net_to_zero_is_a_double_entry_finding() -> None:
    events = decode_checkable(encode_segment(1, [opening("a", 500, 1), opening("b", 7, 2)]))
    balanced = ArchiveVerifyReport("us")
    AccountChains(balanced, {}).feed_segment(
        events, {"currencies": {"USD": {"debits": -507, "credits": 507}}}, "segment 1"
    )
    assert balanced.findings == []
    report = ArchiveVerifyReport("us")
    chains = AccountChains(report, {})
    chains.feed_segment(events, {"currencies": {"USD": {"debits": 0, "credits": 507}}}, "segment 1")
    assert [(f.check, f.problem) for f in report.findings] == [
        ("double-entry", "segment 1: USD postings do not net to zero")
    ]
    assert {a: (c.version, c.balance) for a, c in chains.chains.items()} == {
        "a": (1, 500), "b": (1, 7)}  # fmt: skip
