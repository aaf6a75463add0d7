"""`read_record`: orjson where it reads what `json.loads` reads, json where
it would not (an integer past 64 bits in metadata, text orjson refuses)."""

from __future__ import annotations

import dataclasses
import gzip
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.archive.segments import (
    decode_checkable,
    decode_segment,
    encode_segment,
    read_record,
)
from ledgerflow.domain.hashing import event_bytes
from ledgerflow.domain.model import canonical_json
from tests.unit.test_archive_segments import pair

# What metadata may hold: the ledger refuses floats there, not big integers.
METADATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), METADATA, max_size=4))
def test_a_record_reads_as_json_reads_it(metadata: dict[str, Any]) -> None:
    line = canonical_json({"seq": 1, "metadata": metadata})
    assert read_record(line) == json.loads(line)
    assert canonical_json(read_record(line)) == line


def test_an_event_whose_metadata_holds_an_integer_past_64_bits_still_verifies() -> None:
    # orjson alone reads 2**70 as 1.1805916207174113e+21: the hashed bytes
    # would change and a sound event would fail verify.
    events = [
        dataclasses.replace(e, metadata={"ref": 2**70, "list": [-(2**65), 1]})
        for e in pair(1, 10, 500)
    ]
    body = encode_segment(1, events)
    assert [c.body for c in decode_checkable(body)] == [event_bytes(e) for e in events]
    assert [e for _, e in decode_segment(body)] == events


def test_text_orjson_refuses_is_read_as_json_reads_it() -> None:
    lone_surrogate = b'{"description":"\\ud800","seq":1}'
    assert read_record(lone_surrogate) == json.loads(lone_surrogate)
    not_a_number = b'{"amount":NaN,"seq":1}'
    assert repr(read_record(not_a_number)) == repr(json.loads(not_a_number))


def test_a_record_nested_past_what_json_reads_is_refused_as_not_json() -> None:
    # json itself runs out of stack there; a forged segment used to stop
    # `archive verify` with a RecursionError instead of a finding.
    deep = b'{"metadata":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(ValueError, match="nests too deep"):
        read_record(deep)
    with pytest.raises(ValueError):
        decode_checkable(gzip.compress(deep + b"\n"))


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("recorded_at", "2026-12-03T00:00:00.000000", ValueError),
        ("occurred_at", "2026-12-03T00:00:00.000000", ValueError),
        ("position", "7", TypeError),
        ("position", 7.0, TypeError),
    ],
)
def test_a_record_whose_instant_or_position_a_verifier_cannot_compare_is_refused(
    field: str, value: Any, error: type[Exception]
) -> None:
    # A naive instant beside aware ones, or a string position beside
    # integers, passed the decode and stopped both archive verifiers with a
    # TypeError when the manifest was rebuilt (min over them).
    lines = gzip.decompress(encode_segment(1, pair(1, 10, 500))).splitlines()
    sound = [json.loads(line) for line in lines]
    assert [e.position for e in decode_checkable(gzip.compress(b"\n".join(lines)))] == [
        r["position"] for r in sound
    ]
    forged = [sound[0], {**sound[1], field: value}]
    with pytest.raises(error, match=r"instants carry their UTC offset|position is an integer"):
        decode_checkable(gzip.compress(b"\n".join(canonical_json(r) for r in forged)))
