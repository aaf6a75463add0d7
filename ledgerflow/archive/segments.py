"""The archive's object formats: segments, manifests and the region digest chain.

A region's archive is a sequence of segments, each a run of events in the
global order (a contiguous range, whole transactions only, so both legs of a
transfer always share a segment):

    <region>/events/<yyyy>/<mm>/<dd>/<first>-<last>.jsonl.gz       the events
    <region>/events/<yyyy>/<mm>/<dd>/<first>-<last>.manifest.json  what they hold
    <region>/digests/<segment_no>.json                             the chain link

`first` and `last` are archive sequence numbers: the archive numbers its
events 1, 2, 3, ... without a gap, so the key of a segment says where it sits
and a skipped or repeated range is visible from the listing alone. (The
events' `position` values are in the manifest; they are not gap-free and not
monotonic in the global order, so they make poor keys.) The date is the UTC
day of the segment's first event.

Everything here is a pure function of the events: the same segment always
encodes to the same bytes (gzip without a timestamp, canonical JSON), which is
what lets a rerun after a crash find its earlier upload and recognise it.

The digest of segment n is SHA-256(digest of n-1 || SHA-256 of manifest n),
starting from 64 zeros: changing, removing or reordering any manifest (and
through its checksum, any segment) breaks every later digest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from ledgerflow.domain.hashing import GENESIS_HASH, event_from_record, event_record, record_bytes
from ledgerflow.domain.model import Event, canonical_json

SEGMENT_FORMAT = "ledgerflow.segment.v1"
SEGMENT_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
#: The digest chain's "previous digest" of segment 1.
GENESIS_DIGEST = GENESIS_HASH


@dataclass(frozen=True)
class SegmentKeys:
    segment: str
    manifest: str
    digest: str


def segment_keys(
    region: str, segment_no: int, first_seq: int, last_seq: int, first_recorded_at: datetime
) -> SegmentKeys:
    day = first_recorded_at.astimezone(UTC).strftime("%Y/%m/%d")
    stem = f"{region}/events/{day}/{first_seq:012d}-{last_seq:012d}"
    return SegmentKeys(
        segment=stem + SEGMENT_SUFFIX,
        manifest=stem + MANIFEST_SUFFIX,
        digest=f"{region}/digests/{segment_no:012d}.json",
    )


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _record(seq: int, event: Event) -> dict[str, Any]:
    return event_record(event) | {"seq": seq}


def encode_segment(first_seq: int, events: Sequence[Event]) -> bytes:
    """JSON lines (one canonical event per line, with its archive sequence
    number), gzip-compressed with no timestamp so that the bytes are stable."""
    lines = b"".join(
        canonical_json(_record(first_seq + i, e)) + b"\n" for i, e in enumerate(events)
    )
    return gzip.compress(lines, compresslevel=6, mtime=0)


def read_record(line: bytes) -> Any:
    """One line of a segment as `json.loads` reads it, read by orjson in a
    third of the time where the two agree. They differ in two ways: orjson
    refuses some text json takes (a lone surrogate, nesting past 1024
    levels), and it reads an integer past 64 bits as a float. Metadata may
    hold such an integer (the ledger refuses floats there, not big numbers),
    so a line orjson refuses, or whose metadata comes back with a float in
    it, is read again by json. (An event's own numbers past 64 bits, which
    only a forged segment can hold, come back as floats: the record is then
    reported as not an event's.) Raises `ValueError` for a line that is not
    JSON, nesting too deep included."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            return json.loads(line.decode())
        except RecursionError:
            raise ValueError("a record nests too deep to be an event's") from None
    if record.__class__ is dict and (metadata := record.get("metadata")) and _holds_float(metadata):
        return json.loads(line.decode())
    return record


def json_object(body: bytes) -> dict[str, Any] | None:
    """A manifest or digest link as read, or None for one that is not a JSON
    object (a verifier reports it rather than stopping)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _holds_float(value: Any) -> bool:
    if value.__class__ is float:
        return True
    if value.__class__ is dict:
        return any(_holds_float(v) for v in value.values())
    if value.__class__ is list:
        return any(_holds_float(v) for v in value)
    return False


def decode_segment(body: bytes) -> list[tuple[int, Event]]:
    """The (archive sequence number, event) pairs of a segment, in its order."""
    out = []
    for line in gzip.decompress(body).splitlines():
        r = read_record(line)
        out.append((r["seq"], event_from_record(r)))
    return out


class ArchivedEvent(NamedTuple):
    """An archived event as a verifier reads it: `Event`'s fields under the
    same names (a tuple, built for a seventh of a frozen dataclass), after its
    archive sequence number and the bytes its hash covers, built from the
    record as stored (`record_bytes`)."""

    seq: int
    body: bytes
    event_id: str
    type: str
    account_id: str
    version: int
    amount: int
    currency: str
    balance_after: int
    occurred_at: datetime
    recorded_at: datetime
    region: str
    initiated_by: str
    transfer_id: str | None
    leg: str | None
    counterparty: str | None
    description: str | None
    metadata: dict[str, Any]
    prev_hash: str
    hash: str
    position: int | None
    tx_id: int | None
    pending_after: int


def decode_checkable(body: bytes) -> list[ArchivedEvent]:
    """`decode_segment` for a verifier: each event with its hashed bytes.
    Raises `ValueError`, `KeyError` or `TypeError` (and gzip's `OSError`,
    `EOFError`) for a body that is not a segment, an instant without its UTC
    offset or a position that is not an integer included: a verifier compares
    those, and a naive instant does not compare with an aware one."""
    out = []
    parse, instant = read_record, datetime.fromisoformat
    # Lines split as bytes: a text split would also cut at U+2028 and its
    # kin, which canonical JSON leaves unescaped.
    for line in gzip.decompress(body).splitlines():
        r = parse(line)
        occurred, recorded = instant(r["occurred_at"]), instant(r["recorded_at"])
        position = r["position"]
        if occurred.tzinfo is None or recorded.tzinfo is None:
            raise ValueError("an event's instants carry their UTC offset")
        if position is not None and position.__class__ is not int:
            raise TypeError("an event's position is an integer")
        event = ArchivedEvent(
            r["seq"], record_bytes(r), r["event_id"], r["type"], r["account_id"],
            r["version"], r["amount"], r["currency"], r["balance_after"],
            occurred, recorded, r["region"],
            r["initiated_by"], r["transfer_id"], r["leg"], r["counterparty"],
            r["description"], r["metadata"], r["prev_hash"], r["hash"], position,
            r["tx_id"], r.get("pending_after", 0),
        )  # fmt: skip
        out.append(event)
    return out


def currency_sums(events: Iterable[Event | ArchivedEvent]) -> dict[str, dict[str, int]]:
    """Per currency: the debits (negative), the credits and the number of postings."""
    sums: dict[str, dict[str, int]] = {}
    for e in events:
        if e.amount == 0:
            continue
        s = sums.setdefault(e.currency, {"debits": 0, "credits": 0, "postings": 0})
        s["debits" if e.amount < 0 else "credits"] += e.amount
        s["postings"] += 1
    return dict(sorted(sums.items()))


def build_manifest(
    *,
    region: str,
    segment_no: int,
    first_seq: int,
    after: tuple[int, int],
    cutoff: datetime,
    keys: SegmentKeys,
    segment_sha256: str,
    segment_bytes: int,
    events: Sequence[Event | ArchivedEvent],
) -> dict[str, Any]:
    """What a segment holds, so it can be checked without trusting PostgreSQL."""
    last = events[-1]
    positions = [e.position or 0 for e in events]
    return {
        "format": SEGMENT_FORMAT,
        "region": region,
        "segment_no": segment_no,
        "first_seq": first_seq,
        "last_seq": first_seq + len(events) - 1,
        "event_count": len(events),
        "global_order": {"after": list(after), "through": [last.tx_id, last.position]},
        "positions": {"min": min(positions), "max": max(positions)},
        "recorded_at": {
            "first": min(e.recorded_at for e in events).isoformat(),
            "last": max(e.recorded_at for e in events).isoformat(),
        },
        "cutoff": cutoff.isoformat(),
        "segment_key": keys.segment,
        "segment_sha256": segment_sha256,
        "segment_bytes": segment_bytes,
        "first_hash": events[0].hash,
        "last_hash": last.hash,
        "accounts": len({e.account_id for e in events}),
        "currencies": currency_sums(events),
    }


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """Why a manifest read back from the archive cannot be one `build_manifest`
    wrote, in a field a verifier reads (a number that is not an integer, a
    cutoff that is not an instant, sums that are not integers), or None. A
    verifier reports it and goes on, where reading the field would raise."""

    def integers(value: Any, n: int) -> bool:
        return (
            value.__class__ is list and len(value) == n and all(x.__class__ is int for x in value)
        )

    if not all(manifest.get(k).__class__ is int for k in ("segment_no", "first_seq", "last_seq")):
        return "its sequence numbers are not integers"
    order = manifest.get("global_order")
    if not (
        order.__class__ is dict
        and integers(order.get("after"), 2)
        and integers(order.get("through"), 2)
    ):
        return "its global order is not two (transaction, position) pairs"
    if not all(
        manifest.get(k).__class__ is str for k in ("segment_key", "segment_sha256", "cutoff")
    ):
        return "its segment key, SHA-256 or cutoff is not text"
    try:
        aware = datetime.fromisoformat(manifest["cutoff"]).tzinfo is not None
    except ValueError:
        aware = False
    if not aware:
        return "its cutoff is not an instant with its UTC offset"
    sums = manifest.get("currencies")
    if not (
        sums.__class__ is dict
        and all(
            s.__class__ is dict and all(v.__class__ is int for v in s.values())
            for s in sums.values()
        )
    ):
        return "its currency sums are not integers"
    return None


def chain_digest(prev_digest: str, manifest_sha256: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_digest) + bytes.fromhex(manifest_sha256)).hexdigest()


def chained_digest(prev_digest: str, manifest_sha256: str) -> str | None:
    """`chain_digest` for a verifier, whose inputs may be forged: None where
    either is not hexadecimal (so no link matches it)."""
    try:
        return chain_digest(prev_digest, manifest_sha256)
    except ValueError:
        return None


def build_digest(
    region: str, segment_no: int, manifest_key: str, manifest_sha256: str, prev_digest: str
) -> dict[str, Any]:
    return {
        "region": region,
        "segment_no": segment_no,
        "manifest_key": manifest_key,
        "manifest_sha256": manifest_sha256,
        "prev_digest": prev_digest,
        "digest": chain_digest(prev_digest, manifest_sha256),
    }
