"""The archive's object formats: stable bytes, keys, manifests, the digest chain,
and which events a segment takes."""

from __future__ import annotations

import dataclasses
import gzip
from datetime import UTC, datetime, timedelta

import pytest

from ledgerflow.archive.archiver import whole_transactions
from ledgerflow.archive.segments import (
    GENESIS_DIGEST,
    build_digest,
    build_manifest,
    chain_digest,
    currency_sums,
    decode_checkable,
    decode_segment,
    encode_segment,
    segment_keys,
    sha256_hex,
)
from ledgerflow.domain.hashing import event_bytes
from ledgerflow.domain.model import Event

T0 = datetime(2026, 11, 23, 23, 59, 59, 999_999, tzinfo=UTC)
EVENT_FIELDS = [f.name for f in dataclasses.fields(Event)]


def event(n: int, tx: int, amount: int, *, at: datetime = T0, currency: str = "USD") -> Event:
    kind = "Debited" if amount < 0 else "Credited"
    return Event(
        event_id=f"00000000-0000-0000-0000-{n:012d}",
        type=kind,
        account_id=f"acc-{n % 3}",
        version=n,
        amount=amount,
        currency=currency,
        balance_after=amount,
        occurred_at=at,
        recorded_at=at,
        region="us",
        initiated_by="test",
        transfer_id=f"t-{tx}",
        leg="debit" if amount < 0 else "credit",
        counterparty="x",
        description="zürich ✓",
        metadata={"n": n, "nested": {"k": [1, 2]}},
        prev_hash="a" * 64,
        hash=f"{n:064x}",
        position=1000 - n,
        tx_id=tx,
    )


def pair(n: int, tx: int, amount: int, at: datetime = T0) -> list[Event]:
    return [event(n, tx, -amount, at=at), event(n + 1, tx, amount, at=at)]


def test_segment_round_trips_and_encodes_to_the_same_bytes_every_time() -> None:
    events = pair(1, 10, 500) + pair(3, 11, 7)
    body = encode_segment(41, events)
    assert body == encode_segment(41, events)  # gzip without a timestamp
    decoded = decode_segment(body)
    assert [seq for seq, _ in decoded] == [41, 42, 43, 44]
    assert [e for _, e in decoded] == events


def test_a_verifier_decodes_the_same_events_with_the_bytes_their_hashes_cover() -> None:
    # U+2028 and U+0085 stay unescaped in canonical JSON: a split of the
    # decoded text at line boundaries would cut a record there.
    events = [
        dataclasses.replace(e, description="line\u2028separator\x85next", pending_after=n)
        for n, e in enumerate(pair(1, 10, 500) + pair(3, 11, 7))
    ]
    body = encode_segment(41, events)
    checkable = decode_checkable(body)
    assert [(c.seq, c.body) for c in checkable] == [
        (41 + n, event_bytes(e)) for n, e in enumerate(events)
    ]
    for c, e in zip(checkable, events, strict=True):
        assert {f: getattr(c, f) for f in EVENT_FIELDS} == dataclasses.asdict(e)


def test_a_record_of_the_wrong_type_or_form_is_not_taken_for_an_event() -> None:
    body = encode_segment(1, pair(1, 10, 500))
    lines = gzip.decompress(body)
    # A string amount: refused as undecodable, not hashed as some other value.
    with pytest.raises(TypeError):
        decode_checkable(gzip.compress(lines.replace(b'"amount":-500', b'"amount":"-500"')))
    # The same instant written in another form hashes as written, so it no
    # longer verifies against the hash of the canonical form.
    other_form = lines.replace(b"23:59:59.999999+00:00", b"23:59:59.999999Z")
    assert other_form != lines
    rewritten = decode_checkable(gzip.compress(other_form))
    assert rewritten[0].recorded_at == T0
    assert rewritten[0].body != decode_checkable(body)[0].body


def test_keys_use_the_archive_sequence_and_the_utc_day_of_the_first_event() -> None:
    local = T0.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))  # already the 24th
    keys = segment_keys("eu", 7, 1, 10_000, local)
    assert keys.segment == "eu/events/2026/11/23/000000000001-000000010000.jsonl.gz"
    assert keys.manifest == "eu/events/2026/11/23/000000000001-000000010000.manifest.json"
    assert keys.digest == "eu/digests/000000000007.json"


def test_manifest_sums_per_currency_and_names_the_range() -> None:
    eur = [event(3, 11, -20, currency="EUR"), event(4, 11, 20, currency="EUR")]
    events = pair(1, 10, 500) + eur
    body = encode_segment(1, events)
    manifest = build_manifest(
        region="us", segment_no=1, first_seq=1, after=(0, 0), cutoff=T0,
        keys=segment_keys("us", 1, 1, 4, T0), segment_sha256=sha256_hex(body),
        segment_bytes=len(body), events=events,
    )  # fmt: skip
    assert manifest["event_count"] == 4 and manifest["last_seq"] == 4
    assert manifest["global_order"] == {"after": [0, 0], "through": [11, 996]}
    assert manifest["positions"] == {"min": 996, "max": 999}
    assert manifest["first_hash"] == events[0].hash and manifest["last_hash"] == events[-1].hash
    assert manifest["currencies"] == {
        "EUR": {"debits": -20, "credits": 20, "postings": 2},
        "USD": {"debits": -500, "credits": 500, "postings": 2},
    }
    assert currency_sums([event(1, 1, -5), event(2, 1, 4)])["USD"]["debits"] == -5


def test_each_digest_chains_the_previous_one() -> None:
    first = build_digest("us", 1, "k1", "11" * 32, GENESIS_DIGEST)
    second = build_digest("us", 2, "k2", "22" * 32, first["digest"])
    assert second["prev_digest"] == first["digest"]
    assert second["digest"] == chain_digest(chain_digest(GENESIS_DIGEST, "11" * 32), "22" * 32)
    # Any change to an earlier manifest changes every later digest.
    forged = chain_digest(chain_digest(GENESIS_DIGEST, "12" * 32), "22" * 32)
    assert forged != second["digest"]


def test_a_segment_takes_whole_transactions_older_than_the_cutoff_up_to_the_limit() -> None:
    old, new = T0 - timedelta(hours=2), T0
    events = pair(1, 10, 1, old) + pair(3, 11, 1, old) + pair(5, 12, 1, new) + pair(7, 13, 1, old)
    cutoff = T0 - timedelta(hours=1)
    # Stops at the first transaction past the cut-off, even if later ones are older.
    assert [e.tx_id for e in whole_transactions(events, cutoff, 100)] == [10, 10, 11, 11]
    # Never splits a transaction: a limit of 3 takes one transfer, not a leg and a half.
    assert [e.tx_id for e in whole_transactions(events, cutoff, 3)] == [10, 10]
    # But always at least one whole transaction, however large.
    assert len(whole_transactions(events, cutoff, 1)) == 2
    assert whole_transactions(pair(1, 10, 1, new), cutoff, 100) == []
