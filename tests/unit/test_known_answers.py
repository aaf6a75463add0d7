"""Known-answer vectors: the bytes the ledger hashes, pinned (issue 14).

Every chain already stored, and every segment already archived under object
lock for seven years, was hashed with these exact bytes. A change to
canonical JSON, to the fields an event's hash covers, to how an instant is
written, to the fingerprint or to the digest chain would make every stored
history fail `verify` — so a change that alters any of these fails here
first. The expected values are literals; each hash is also recomputed from
the literal bytes with `hashlib`, independently of the code under test.
"""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime, timedelta, timezone

from ledgerflow.archive.segments import (
    GENESIS_DIGEST,
    SegmentKeys,
    build_digest,
    build_manifest,
    chain_digest,
    encode_segment,
    sha256_hex,
)
from ledgerflow.domain.hashing import GENESIS_HASH, chain_hash, event_content
from ledgerflow.domain.model import Event, Transfer, canonical_json

CONTENT = event_content(
    event_id="6f1b9d1e-3c55-4c1a-9a53-1c2f0e8a7b10",
    type="Credited",
    account_id="alice",
    version=2,
    amount=1250,
    currency="USD",
    balance_after=1250,
    occurred_at=datetime(2026, 11, 23, 21, 0, 0, 123456, tzinfo=UTC),
    # Given with an offset: hashed as the UTC instant it is.
    recorded_at=datetime(2026, 11, 23, 21, 0, 1, tzinfo=timezone(timedelta(hours=5))),
    region="us",
    initiated_by="payments",
    transfer_id="invoice-7781",
    leg="credit",
    counterparty="bank-us",
    description="Zoë ✓ refund",
    metadata={"ref": "R-1", "n": 3, "z": [1, None]},
)
CANONICAL = (
    '{"account_id":"alice","amount":1250,"balance_after":1250,"counterparty":"bank-us",'
    '"currency":"USD","description":"Zoë ✓ refund",'
    '"event_id":"6f1b9d1e-3c55-4c1a-9a53-1c2f0e8a7b10","initiated_by":"payments",'
    '"leg":"credit","metadata":{"n":3,"ref":"R-1","z":[1,null]},'
    '"occurred_at":"2026-11-23T21:00:00.123456+00:00",'
    '"recorded_at":"2026-11-23T16:00:01.000000+00:00","region":"us",'
    '"transfer_id":"invoice-7781","type":"Credited","version":2}'
)
EVENT_HASH = "f4cd4f82188ac7c6e55c7517e49ecc5dfbd91d9ee1865d84f528d0e00a4eb8cc"


def test_canonical_json_of_an_event_is_these_bytes() -> None:
    assert canonical_json(CONTENT) == CANONICAL.encode()


def test_an_event_hash_is_sha256_of_the_previous_hash_and_the_canonical_bytes() -> None:
    by_hand = hashlib.sha256(bytes.fromhex(GENESIS_HASH) + CANONICAL.encode()).hexdigest()
    assert by_hand == EVENT_HASH
    assert chain_hash(GENESIS_HASH, CONTENT) == EVENT_HASH


def test_a_transfer_fingerprint_is_pinned() -> None:
    transfer = Transfer("invoice-7781", "bank-us", "alice", 1250, "USD", "payments", "refund",
                        {"ref": "R-1"})  # fmt: skip
    fields = (
        '{"amount":1250,"currency":"USD","description":"refund","from_account":"bank-us",'
        '"initiated_by":"payments","metadata":{"ref":"R-1"},"to_account":"alice",'
        '"transfer_id":"invoice-7781"}'
    )
    expected = "c71fcb50ef79b7609bb14e387e4a1d69af8949d0da44b8cf9a537c4018957665"
    assert hashlib.sha256(fields.encode()).hexdigest() == expected
    assert transfer.fingerprint() == expected


def test_the_digest_chain_is_sha256_of_the_previous_digest_and_the_manifest_sha() -> None:
    manifest_sha = "a" * 64
    expected = "9ef814b42fa0be12d197c44d3e8e03441a4b1118237658368ba1351090e556ed"
    assert hashlib.sha256(bytes(32) + bytes.fromhex(manifest_sha)).hexdigest() == expected
    assert chain_digest(GENESIS_DIGEST, manifest_sha) == expected
    link = build_digest("us", 1, "us/x.manifest.json", manifest_sha, GENESIS_DIGEST)
    assert (
        canonical_json(link)
        == (
            '{"digest":"9ef814b42fa0be12d197c44d3e8e03441a4b1118237658368ba1351090e556ed",'
            '"manifest_key":"us/x.manifest.json","manifest_sha256":"' + manifest_sha + '",'
            '"prev_digest":"' + GENESIS_DIGEST + '","region":"us","segment_no":1}'
        ).encode()
    )


def _event(version: int, amount: int, balance: int, prev: str, digest: str) -> Event:
    opened = version == 1
    at = datetime(2026, 11, 23, 21, 0, version, tzinfo=UTC)
    return Event(
        f"6f1b9d1e-3c55-4c1a-9a53-1c2f0e8a7b1{version}", "AccountOpened" if opened else "Credited",
        "alice", version, amount, "USD", balance, at, at, "us", "payments",
        None if opened else "t1", None if opened else "credit", None if opened else "bank",
        None, {}, prev, digest, position=10 + version, tx_id=700 + version,
    )  # fmt: skip


SEGMENT_LINES = (
    '{"account_id":"alice","amount":0,"balance_after":0,"counterparty":null,"currency":"USD",'
    '"description":null,"event_id":"6f1b9d1e-3c55-4c1a-9a53-1c2f0e8a7b11","hash":"h1",'
    '"initiated_by":"payments","leg":null,"metadata":{},'
    '"occurred_at":"2026-11-23T21:00:01.000000+00:00","position":11,"prev_hash":"'
    + GENESIS_HASH
    + '","recorded_at":"2026-11-23T21:00:01.000000+00:00","region":"us","seq":1,'
    '"transfer_id":null,"tx_id":701,"type":"AccountOpened","version":1}\n'
    '{"account_id":"alice","amount":1250,"balance_after":1250,"counterparty":"bank",'
    '"currency":"USD","description":null,"event_id":"6f1b9d1e-3c55-4c1a-9a53-1c2f0e8a7b12",'
    '"hash":"h2","initiated_by":"payments","leg":"credit","metadata":{},'
    '"occurred_at":"2026-11-23T21:00:02.000000+00:00","position":12,"prev_hash":"h1",'
    '"recorded_at":"2026-11-23T21:00:02.000000+00:00","region":"us","seq":2,'
    '"transfer_id":"t1","tx_id":702,"type":"Credited","version":2}\n'
)


def test_a_segment_is_these_lines_and_its_manifest_is_pinned() -> None:
    events = [_event(1, 0, 0, GENESIS_HASH, "h1"), _event(2, 1250, 1250, "h1", "h2")]
    body = encode_segment(1, events)
    # The lines are pinned; the gzip framing carries no timestamp, so the
    # same lines always compress to the same bytes with one zlib.
    assert gzip.decompress(body).decode() == SEGMENT_LINES
    assert encode_segment(1, events) == body
    keys = SegmentKeys("us/events/2026/11/23/000000000001-000000000002.jsonl.gz",
                       "us/events/2026/11/23/000000000001-000000000002.manifest.json",
                       "us/digests/000000000001.json")  # fmt: skip
    manifest = build_manifest(
        region="us", segment_no=1, first_seq=1, after=(0, 0),
        cutoff=datetime(2026, 11, 23, 22, tzinfo=UTC), keys=keys,
        segment_sha256="b" * 64, segment_bytes=123, events=events,
    )  # fmt: skip
    expected = (
        '{"accounts":1,"currencies":{"USD":{"credits":1250,"debits":0,"postings":1}},'
        '"cutoff":"2026-11-23T22:00:00+00:00","event_count":2,"first_hash":"h1",'
        '"first_seq":1,"format":"ledgerflow.segment.v1",'
        '"global_order":{"after":[0,0],"through":[702,12]},"last_hash":"h2","last_seq":2,'
        '"positions":{"max":12,"min":11},'
        '"recorded_at":{"first":"2026-11-23T21:00:01+00:00","last":"2026-11-23T21:00:02+00:00"},'
        '"region":"us","segment_bytes":123,'
        '"segment_key":"us/events/2026/11/23/000000000001-000000000002.jsonl.gz",'
        '"segment_no":1,"segment_sha256":"' + "b" * 64 + '"}'
    )
    assert canonical_json(manifest).decode() == expected
    assert sha256_hex(canonical_json(manifest)) == hashlib.sha256(expected.encode()).hexdigest()
