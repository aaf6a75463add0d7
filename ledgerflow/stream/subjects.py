"""Names, subjects and the message form of the event stream: pure code.

Every event is one message on `ledger.<region>.<account>.<type>` in its
region's stream `LEDGER_<REGION>`; the global stream `LEDGER` sources every
region's. A consumer filters by subject (`ledger.eu.>`, `ledger.*.<account>.>`,
`ledger.*.*.Debited`). Account ids may hold `.`, which separates subject
tokens: it is written `%2E` there (`%` is in no id, so the mapping is one to
one). The message body is the event as the archive stores it (its hashed
content, its place in its region's order and both hashes), so a consumer can
check each event against its chain without asking the ledger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.hashing import chain_hash, content_of, event_from_record, event_record
from ledgerflow.domain.model import Event, canonical_json
from ledgerflow.store.base import TailCursor

SUBJECT_ROOT = "ledger"
GLOBAL_STREAM = "LEDGER"
#: The event's id: JetStream drops a second message with it (within the
#: stream's duplicate window), so a relay that republishes adds nothing.
MSG_ID = "Nats-Msg-Id"
#: The relay's guard against gaps: a message is stored only if the region's
#: stream ends with the event published before it.
EXPECTED_LAST_ID = "Nats-Expected-Last-Msg-Id"
EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
#: The event's place in its region's global order (the relay resumes after it).
TX_ID, POSITION = "Ledger-Tx-Id", "Ledger-Position"


def region_stream(region: str) -> str:
    return f"{GLOBAL_STREAM}_{region.upper()}"


def region_subjects(region: str, root: str = SUBJECT_ROOT) -> str:
    return f"{root}.{region}.>"


def token(value: str) -> str:
    return value.replace("%", "%25").replace(".", "%2E")


def untoken(value: str) -> str:
    return value.replace("%2E", ".").replace("%25", "%")


def subject_of(event: Event, root: str = SUBJECT_ROOT) -> str:
    return f"{root}.{event.region}.{token(event.account_id)}.{event.type}"


def _filter_token(value: str | None, what: str) -> str:
    if value is None:
        return "*"
    if not value or any(c in value for c in " \t\r\n*>"):
        raise InvalidRequest(f"{what} {value!r} cannot be filtered on", field=what)
    return token(value)


def filter_subject(
    region: str | None = None, account: str | None = None, event_type: str | None = None
) -> str:
    """The subject filter of a region, an account and an event type (each
    optional); with none, every event."""
    if region is None and account is None and event_type is None:
        return f"{SUBJECT_ROOT}.>"
    parts = (_filter_token(region, "region"), _filter_token(account, "account"),
             _filter_token(event_type, "type"))  # fmt: skip
    return ".".join((SUBJECT_ROOT, *parts))


@dataclass(frozen=True)
class Message:
    subject: str
    body: bytes
    headers: dict[str, str]


def encode(event: Event, previous_id: str | None, root: str = SUBJECT_ROOT) -> Message:
    """The event's message. `previous_id`: the event published just before it
    in its region (`None`: the region's stream must be empty). `root`: the
    subjects' first token (another only for a benchmark's scratch stream)."""
    assert event.tx_id is not None and event.position is not None
    headers = {MSG_ID: event.event_id, TX_ID: str(event.tx_id), POSITION: str(event.position)}
    if previous_id is None:
        headers[EXPECTED_LAST_SEQ] = "0"
    else:
        headers[EXPECTED_LAST_ID] = previous_id
    return Message(subject_of(event, root), canonical_json(event_record(event)), headers)


def decode(body: bytes) -> Event:
    return event_from_record(json.loads(body))


def cursor_of(headers: dict[str, str] | None) -> TailCursor | None:
    """The region-order place a message's headers carry (None: not a relay's)."""
    if not headers or TX_ID not in headers or POSITION not in headers:
        return None
    return TailCursor(int(headers[TX_ID]), int(headers[POSITION]))


def hash_matches(event: Event) -> bool:
    """Whether the event's hash is its content's, chained to its `prev_hash`."""
    return chain_hash(event.prev_hash, content_of(event)) == event.hash
