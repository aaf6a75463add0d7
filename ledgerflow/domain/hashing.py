"""The per-account hash chain that lets `verify` prove history was not altered.

Each event's hash is SHA-256 over the previous event's hash (of the same
account) and the canonical JSON of the event's content. Changing, removing or
reordering any event breaks every later hash of that account. Chaining per
account rides on the account row lock the append already holds, so it adds no
global serialization point (docs/ARCHITECTURE.md, "Hash chain per account").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ledgerflow.domain.model import Event, canonical_json

#: The "previous hash" of an account's first event.
GENESIS_HASH = "0" * 64


def _instant(value: datetime) -> str:
    """An instant in its one canonical form: UTC, microseconds, `+00:00`.

    PostgreSQL hands every `timestamptz` back in UTC, so an instant given with
    another offset must be hashed as the UTC instant it is, or the event it
    was written on would fail `verify` when read back. A naive datetime names
    no instant at all."""
    if value.utcoffset() is None:
        raise ValueError(f"a naive datetime is not an instant: {value!r}")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


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


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(bytes.fromhex(prev_hash))
    digest.update(canonical_json(content))
    return digest.hexdigest()


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

    def feed(self, event: Event) -> None:
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
        content = content_of(event)
        if chain_hash(self.head, content) != event.hash:
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

    def _follow_pending(self, event: Event) -> None:
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

    def _follow_status(self, event: Event) -> None:
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
