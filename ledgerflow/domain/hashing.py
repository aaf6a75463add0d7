"""The per-account hash chain that lets `verify` prove history was not altered.

Each event's hash is SHA-256 over the previous event's hash (of the same
account) and the canonical JSON of the event's content. Changing, removing or
reordering any event breaks every later hash of that account. Chaining per
account rides on the account row lock the append already holds, so it adds no
global serialization point (docs/ARCHITECTURE.md, "Hash chain per account").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, Protocol

from ledgerflow.domain.model import Event, canonical_json

#: The "previous hash" of an account's first event.
GENESIS_HASH = "0" * 64


def _instant(value: datetime) -> str:
    """An instant in its one canonical form: UTC, microseconds, `+00:00`.

    PostgreSQL hands every `timestamptz` back in UTC, so an instant given with
    another offset must be hashed as the UTC instant it is, or the event it
    was written on would fail `verify` when read back. A naive datetime names
    no instant at all."""
    if value.tzinfo is not UTC:
        if value.utcoffset() is None:
            raise ValueError(f"a naive datetime is not an instant: {value!r}")
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def event_content(
    *,
    event_id: str,
    type: str,
    account_id: str,
    version: int,
    amount: int,
    currency: str,
    balance_after: int,
    occurred_at: datetime,
    recorded_at: datetime,
    region: str,
    initiated_by: str,
    transfer_id: str | None,
    leg: str | None,
    counterparty: str | None,
    description: str | None,
    metadata: dict[str, Any],
    pending_after: int = 0,
) -> dict[str, Any]:
    """The fields an event's hash covers, in their canonical representation.

    `pending_after` (what the account's open holds reserve after the event,
    migration 0006) is covered when it is not zero: absent means zero, so
    every event written before holds existed hashes as it always did, and
    changing a pending amount either way changes the hash."""
    content = {
        "event_id": event_id,
        "type": type,
        "account_id": account_id,
        "version": version,
        "amount": amount,
        "currency": currency,
        "balance_after": balance_after,
        "occurred_at": _instant(occurred_at),
        "recorded_at": _instant(recorded_at),
        "region": region,
        "initiated_by": initiated_by,
        "transfer_id": transfer_id,
        "leg": leg,
        "counterparty": counterparty,
        "description": description,
        "metadata": metadata,
    }
    if pending_after:
        content["pending_after"] = pending_after
    return content


def content_of(event: Event) -> dict[str, Any]:
    return event_content(
        event_id=event.event_id, type=event.type, account_id=event.account_id,
        version=event.version, amount=event.amount, currency=event.currency,
        balance_after=event.balance_after, occurred_at=event.occurred_at,
        recorded_at=event.recorded_at, region=event.region,
        initiated_by=event.initiated_by, transfer_id=event.transfer_id, leg=event.leg,
        counterparty=event.counterparty, description=event.description,
        metadata=event.metadata, pending_after=event.pending_after,
    )  # fmt: skip


def event_record(event: Event) -> dict[str, Any]:
    """An event as plain JSON, with what a reader needs to check it: its
    hashed content, its place in its region's order, and both hashes (the
    archive's segments and the event stream carry exactly this)."""
    return content_of(event) | {
        "position": event.position,
        "tx_id": event.tx_id,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def event_from_record(r: dict[str, Any]) -> Event:
    """The event back from `event_record`."""
    return Event(
        event_id=r["event_id"], type=r["type"], account_id=r["account_id"],
        version=r["version"], amount=r["amount"], currency=r["currency"],
        balance_after=r["balance_after"], occurred_at=datetime.fromisoformat(r["occurred_at"]),
        recorded_at=datetime.fromisoformat(r["recorded_at"]), region=r["region"],
        initiated_by=r["initiated_by"], transfer_id=r["transfer_id"], leg=r["leg"],
        counterparty=r["counterparty"], description=r["description"], metadata=r["metadata"],
        prev_hash=r["prev_hash"], hash=r["hash"], position=r["position"], tx_id=r["tx_id"],
        pending_after=r.get("pending_after", 0),
    )  # fmt: skip


#: The keys of `event_content`, without and with `pending_after`.
_CONTENT_KEYS = frozenset(
    (
        "event_id", "type", "account_id", "version", "amount", "currency", "balance_after",
        "occurred_at", "recorded_at", "region", "initiated_by", "transfer_id", "leg",
        "counterparty", "description", "metadata",
    )
)  # fmt: skip
_CONTENT_KEYS_PENDING = _CONTENT_KEYS | {"pending_after"}


def _text(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def canonical_content(
    account_id: str,
    amount: int,
    balance_after: int,
    counterparty: str | None,
    currency: str,
    description: str | None,
    event_id: str,
    initiated_by: str,
    leg: str | None,
    metadata: Mapping[str, Any],
    occurred_at: str,
    pending_after: int,
    recorded_at: str,
    region: str,
    transfer_id: str | None,
    type: str,
    version: int,
) -> bytes:
    """`canonical_json(event_content(...))` without building the dict or
    asking `json.dumps` to sort it: the hashed bytes of an event, from its
    fields in key order (the instants already in `_instant`'s form). The hash
    chain's hot path, on every append and for every event `verify` reads; a
    property test holds it byte for byte to `canonical_json`."""
    if not (
        amount.__class__ is balance_after.__class__ is version.__class__ is int
        and pending_after.__class__ is int
    ):
        raise TypeError("an event's amounts and version are integers")
    return (
        f'{{"account_id":{encode_basestring(account_id)},"amount":{amount},'
        f'"balance_after":{balance_after},"counterparty":{_text(counterparty)},'
        f'"currency":{encode_basestring(currency)},"description":{_text(description)},'
        f'"event_id":{encode_basestring(event_id)},'
        f'"initiated_by":{encode_basestring(initiated_by)},"leg":{_text(leg)},'
        f'"metadata":{canonical_json(metadata).decode() if metadata else "{}"},'
        f'"occurred_at":{encode_basestring(occurred_at)},'
        + (f'"pending_after":{pending_after},' if pending_after else "")
        + f'"recorded_at":{encode_basestring(recorded_at)},"region":{encode_basestring(region)},'
        f'"transfer_id":{_text(transfer_id)},"type":{encode_basestring(type)},'
        f'"version":{version}}}'
    ).encode()


def record_bytes(r: Mapping[str, Any]) -> bytes:
    """The canonical bytes of an `event_record` as it stands: its instants
    hashed as they are written, not parsed and formatted again, so a record
    whose bytes are not the canonical ones does not verify. Raises
    `TypeError` or `KeyError` for a record that is not an event's."""
    return canonical_content(
        r["account_id"], r["amount"], r["balance_after"], r["counterparty"], r["currency"],
        r["description"], r["event_id"], r["initiated_by"], r["leg"], r["metadata"],
        r["occurred_at"], r.get("pending_after", 0), r["recorded_at"], r["region"],
        r["transfer_id"], r["type"], r["version"],
    )  # fmt: skip


def content_bytes(content: Mapping[str, Any]) -> bytes:
    """The canonical bytes of an event's content (`event_content`'s dict)."""
    # `canonical_content` leaves a zero pending amount out, as `event_content`
    # does; a dict that spells it out is the general encoder's.
    keys = content.keys()
    if keys == _CONTENT_KEYS or (keys == _CONTENT_KEYS_PENDING and content["pending_after"] != 0):
        try:
            return canonical_content(**{"pending_after": 0, **content})
        except TypeError:
            pass  # a value of another type: the general encoder decides
    return canonical_json(content)


def event_bytes(event: ChainedEvent) -> bytes:
    """The canonical bytes of a stored event's content."""
    return canonical_content(
        event.account_id, event.amount, event.balance_after, event.counterparty,
        event.currency, event.description, event.event_id, event.initiated_by, event.leg,
        event.metadata, _instant(event.occurred_at), event.pending_after,
        _instant(event.recorded_at), event.region, event.transfer_id, event.type,
        event.version,
    )  # fmt: skip


class ChainedEvent(Protocol):
    """What the chain reads of an event: an `Event`, or a row of `verify`'s
    chain walk under the same names."""

    @property
    def account_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def balance_after(self) -> int: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def type(self) -> str: ...
    @property
    def transfer_id(self) -> str | None: ...
    @property
    def metadata(self) -> Mapping[str, Any]: ...
    @property
    def pending_after(self) -> int: ...
    @property
    def event_id(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def region(self) -> str: ...
    @property
    def initiated_by(self) -> str: ...
    @property
    def leg(self) -> str | None: ...
    @property
    def counterparty(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...


def link_hash(prev_hash: str, body: bytes) -> str:
    """SHA-256 over the previous hash's bytes and an event's canonical bytes."""
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(body)
    return digest.hexdigest()


def chain_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return link_hash(prev_hash, content_bytes(content))


class ChainBroken(Exception):
    """An account's history does not verify; names the first bad event.

    `check` says what broke: `hash-chain` (versions, links, balances,
    hashes), `recorded-at` (an event recorded before the one it follows) or
    `status` (a debit of an account that was not open, a credit of a closed
    one, a status change its status did not allow, a close with money in
    it) or `pending` (a hold's reservation that does not add up, or an
    available balance below the overdraft limit)."""

    def __init__(
        self, account_id: str, version: int, problem: str, check: str = "hash-chain"
    ) -> None:
        super().__init__(f"account {account_id!r}, version {version}: {problem}")
        self.account_id = account_id
        self.version = version
        self.problem = problem
        self.check = check


#: What each status event leaves the account as, and from which status it may come.
_STATUS_AFTER = {"AccountFrozen": "frozen", "AccountUnfrozen": "open", "AccountClosed": "closed"}
_STATUS_ALLOWED = {
    ("open", "AccountFrozen"),
    ("frozen", "AccountUnfrozen"),
    ("open", "AccountClosed"),
    ("frozen", "AccountClosed"),
}


class AccountChain:
    """Checks one account's events fed in version order, one at a time.

    Versions must run 1, 2, 3, ... without a gap, each balance must be the
    previous one plus the amount, each hash must be the hash of the event's
    content chained to the previous event's hash, and no event may be
    recorded before the one it follows (point-in-time answers rely on it).
    Memory stays flat however long the history.
    """

    def __init__(
        self,
        account_id: str,
        version: int = 0,
        balance: int = 0,
        head: str = GENESIS_HASH,
        recorded_at: datetime | None = None,
        pending: int = 0,
        limit: int | None = None,
    ) -> None:
        """Start at the genesis, or after a checkpoint (`version`, `balance`,
        `head`, `recorded_at`, `pending`) where an earlier part of the history
        was pruned to the archive. With the account's overdraft `limit`, the
        available balance (posted minus pending) is checked too."""
        self.account_id = account_id
        self.head = head
        self.balance = balance
        self.version = version
        self.recorded_at = recorded_at
        #: The account's status as its events say; unknown (None) when the
        #: chain starts after a checkpoint, until its next status event.
        self.status: str | None = None if version else "open"
        #: What the account's open holds reserve, as its events say.
        self.pending = pending
        self.limit = limit

    def feed(self, event: ChainedEvent, body: bytes | None = None) -> None:
        """Check the next event; `body`: its canonical bytes, where the
        caller built them already (`canonical_content`)."""
        expected = self.version + 1
        if event.version != expected:
            raise ChainBroken(self.account_id, event.version, f"expected version {expected}")
        if event.prev_hash != self.head:
            raise ChainBroken(self.account_id, event.version, "prev_hash does not link")
        balance = self.balance + event.amount
        if event.balance_after != balance:
            raise ChainBroken(
                self.account_id, event.version, f"balance_after is not the running sum {balance}"
            )
        if link_hash(self.head, body or event_bytes(event)) != event.hash:
            raise ChainBroken(self.account_id, event.version, "hash does not match content")
        if self.recorded_at is not None and event.recorded_at < self.recorded_at:
            raise ChainBroken(
                self.account_id,
                event.version,
                f"recorded at {event.recorded_at.isoformat()}, before the event it follows "
                f"({self.recorded_at.isoformat()})",
                check="recorded-at",
            )
        self._follow_status(event)
        self._follow_pending(event)
        self.head, self.balance, self.version = event.hash, balance, event.version
        self.recorded_at = event.recorded_at
        self.pending = event.pending_after

    def _follow_pending(self, event: ChainedEvent) -> None:
        """The holds' reservations (migration 0006), replayed: each event
        keeps the pending amount, except a placement (up by what it holds),
        a capture (down by at most what it posts) and a release (down by what
        it gives back); and nothing leaves available below the limit."""
        before, after, kind = self.pending, event.pending_after, event.type
        meta = event.metadata
        problem = None
        if after < 0:
            problem = f"pending {after} is negative"
        elif kind == "HoldPlaced":
            if after != before + int(meta.get("held", 0)) or after <= before:
                problem = f"a placement of {meta.get('held')} moves pending {before} to {after}"
        elif kind == "HoldCaptured":
            if not before - after <= -event.amount or after > before:
                problem = f"a capture of {-event.amount} moves pending {before} to {after}"
        elif kind == "HoldReleased":
            if after != before - int(meta.get("released", -1)):
                problem = f"a release of {meta.get('released')} moves pending {before} to {after}"
        elif after != before:
            problem = f"a {kind} event moves pending {before} to {after}"
        if (
            problem is None
            and kind in ("HoldPlaced", "Debited", "HoldCaptured")
            and self.limit is not None
            and event.balance_after - after < -self.limit
        ):
            problem = (
                f"available {event.balance_after - after} is below the overdraft limit {self.limit}"
            )
        if problem is not None:
            raise ChainBroken(self.account_id, event.version, problem, check="pending")

    def _follow_status(self, event: ChainedEvent) -> None:
        """The lifecycle rules the schema enforces (migration 0005), replayed."""
        status, kind = self.status, event.type
        problem = None
        if kind == "Debited" and status not in (None, "open"):
            problem = f"debited while {status}"
        elif kind == "Credited" and status == "closed":
            if not (event.transfer_id or "").endswith("/reversal"):
                problem = "credited while closed"
        elif kind in _STATUS_AFTER:
            if status is not None and (status, kind) not in _STATUS_ALLOWED:
                problem = f"{kind} while {status}"
            elif kind == "AccountClosed" and self.balance != 0:
                problem = f"closed with a balance of {self.balance}"
            self.status = _STATUS_AFTER[kind]
        if problem is not None:
            raise ChainBroken(self.account_id, event.version, problem, check="status")


def verify_chain(events: Sequence[Event]) -> str:
    """Check one account's whole history from version 1; return the head hash."""
    if not events:
        return GENESIS_HASH
    chain = AccountChain(events[0].account_id)
    for event in events:
        chain.feed(event)
    return chain.head
