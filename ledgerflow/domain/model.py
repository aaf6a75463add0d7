"""Immutable records of the ledger: requests, results and events.

Every workflow and activity takes one of these dataclasses and returns one.
Amounts are `int` minor units with the currency beside them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from ledgerflow.domain.errors import InvalidRequest, SameAccount
from ledgerflow.domain.money import MAX_MINOR_UNITS, format_amount, minor_units, parse_amount

#: Account, transfer and principal ids: readable, URL- and workflow-id-safe.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
MAX_METADATA_BYTES = 4096
#: How deep metadata may nest (the object itself is level 1).
MAX_METADATA_DEPTH = 32
MAX_DESCRIPTION_CHARS = 500
#: Account ids under this prefix belong to the ledger's clearing accounts: no
#: client may open one or name one in a transfer (they have no overdraft limit).
CLEARING_PREFIX = "clearing:"


class EventType(StrEnum):
    ACCOUNT_OPENED = "AccountOpened"
    DEBITED = "Debited"
    CREDITED = "Credited"
    ACCOUNT_FROZEN = "AccountFrozen"
    ACCOUNT_UNFROZEN = "AccountUnfrozen"
    ACCOUNT_CLOSED = "AccountClosed"
    HOLD_PLACED = "HoldPlaced"
    #: The debit leg of a capture's posting (amount < 0).
    HOLD_CAPTURED = "HoldCaptured"
    HOLD_RELEASED = "HoldReleased"


class AccountStatus(StrEnum):
    """An open account takes debits and credits; a frozen one only credits; a
    closed one neither, forever."""

    OPEN = "open"
    FROZEN = "frozen"
    CLOSED = "closed"


class AccountAction(StrEnum):
    """A change of an account's status, each an event of its chain."""

    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    CLOSE = "close"

    @property
    def event_type(self) -> EventType:
        return {
            AccountAction.FREEZE: EventType.ACCOUNT_FROZEN,
            AccountAction.UNFREEZE: EventType.ACCOUNT_UNFROZEN,
            AccountAction.CLOSE: EventType.ACCOUNT_CLOSED,
        }[self]

    @property
    def status_after(self) -> AccountStatus:
        return {
            AccountAction.FREEZE: AccountStatus.FROZEN,
            AccountAction.UNFREEZE: AccountStatus.OPEN,
            AccountAction.CLOSE: AccountStatus.CLOSED,
        }[self]


class Leg(StrEnum):
    """Which side of a transfer an event is: the money leaving or arriving."""

    DEBIT = "debit"
    CREDIT = "credit"


class TransferStatus(StrEnum):
    PENDING = "pending"
    #: Cross-region: the source leg is posted, the destination leg is not yet.
    IN_TRANSIT = "in_transit"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    #: Cross-region: the destination leg failed for good and the source leg
    #: was compensated by a reversing posting; the money is back at its source.
    REVERSED = "reversed"
    FAILED = "failed"


class PostingKind(StrEnum):
    """What a region's posting is within its transfer (see `Posting`)."""

    LOCAL = "local"
    OUTBOUND = "outbound"
    INBOUND = "inbound"
    REVERSAL = "reversal"
    #: A hold's capture: from the held account to the hold's target, in the
    #: hold's region, under `<hold id>/capture/<capture id>`.
    CAPTURE = "capture"


def require_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidRequest(
            f"{what} must be 1-64 characters of letters, digits and . _ : @ - "
            f"(starting with a letter or digit), got {value!r}",
            field=what,
        )
    return value


def require_client_account(value: object, what: str) -> str:
    """An account id a client may use: well formed and not a clearing account."""
    account_id = require_id(value, what)
    if account_id.startswith(CLEARING_PREFIX):
        raise InvalidRequest(
            f"{what} {account_id!r}: ids starting with {CLEARING_PREFIX!r} are reserved for "
            "the ledger's clearing accounts",
            field=what,
        )
    return account_id


def clearing_account_id(home_region: str, peer_region: str, currency: str) -> str:
    """The clearing account that region `home_region` holds for `peer_region`.

    Credited by transfers leaving for the peer, debited by transfers arriving
    from it; once every transfer has settled, A's account for B and B's for A
    sum to zero per currency.
    """
    return f"{CLEARING_PREFIX}{home_region}:{peer_region}:{currency}"


def parse_clearing_account(account_id: str) -> tuple[str, str, str] | None:
    """(home region, peer region, currency) of a clearing account id, else None."""
    if not account_id.startswith(CLEARING_PREFIX):
        return None
    parts = account_id[len(CLEARING_PREFIX) :].split(":")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def base_transfer_id(posting_id: str) -> str:
    """The posting id a reversal compensates (`t/reversal` → `t`); any other
    posting id is its own (a capture's `h/capture/c` is one transfer, not
    its hold's: two captures of one hold settle apart)."""
    return posting_id.removesuffix("/reversal")


def reversal_id(transfer_id: str) -> str:
    """The id of the posting that compensates a cross-region transfer's source leg.

    `/` cannot appear in a client's transfer id, so it never collides with one.
    """
    return f"{transfer_id}/reversal"


def require_text(value: str, what: str) -> None:
    """Text the ledger can store, hash and hand back unchanged: valid UTF-8
    (no lone surrogates, which no encoder accepts) and no NUL (which
    PostgreSQL cannot store)."""
    if "\x00" in value:
        raise InvalidRequest(f"{what} must not contain NUL characters", field=what)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"{what} is not valid UTF-8 text (a lone surrogate at position {exc.start})",
            field=what,
        ) from None


def require_short_text(value: object, what: str) -> None:
    """A description or a reason: text of at most `MAX_DESCRIPTION_CHARS`
    characters that the ledger can store (`require_text`)."""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_CHARS:
        raise InvalidRequest(
            f"{what} must be text of at most {MAX_DESCRIPTION_CHARS} characters", field=what
        )
    require_text(value, what)


def fingerprint_of(value: Any, *, optional: tuple[str, ...] = ()) -> str:
    """SHA-256 of a request dataclass's fields as they are (not `asdict`'s
    deep copy: the same JSON, at a fraction of the cost on the append path):
    resubmitting the same id must match it. Fields named in `optional` count
    only when set, so adding one keeps the fingerprints recorded before it."""
    content = {
        f.name: v
        for f in fields(value)
        if (v := getattr(value, f.name)) is not None or f.name not in optional
    }
    return hashlib.sha256(canonical_json(content)).hexdigest()


def _check_metadata_value(value: object, depth: int = 1) -> None:
    """Plain JSON that survives PostgreSQL's jsonb unchanged, so hashes verify.

    Floats do not (jsonb normalises 1e16 to 10000000000000000), so numbers
    must be integers; put decimals in strings. NUL cannot be stored at all.
    Nesting is bounded (a structure that contains itself, or nests thousands
    deep, would otherwise exhaust the stack instead of being refused).
    """
    if isinstance(value, dict | list) and depth > MAX_METADATA_DEPTH:
        raise InvalidRequest(
            f"metadata nests deeper than {MAX_METADATA_DEPTH} levels", field="metadata"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRequest("metadata keys must be strings", field="metadata")
            require_text(key, "metadata")
            _check_metadata_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_metadata_value(item, depth + 1)
    elif isinstance(value, str):
        require_text(value, "metadata")
    elif isinstance(value, float):
        raise InvalidRequest(
            "metadata numbers must be integers (put decimals in strings)", field="metadata"
        )
    elif value is not None and not isinstance(value, int):
        raise InvalidRequest(
            f"metadata holds a {type(value).__name__}, which is not JSON", field="metadata"
        )


def require_metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object with string keys", field="metadata")
    _check_metadata_value(value)
    try:
        encoded = canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"metadata is not plain JSON: {exc}", field="metadata") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidRequest(
            f"metadata is {len(encoded)} bytes; at most {MAX_METADATA_BYTES} are allowed",
            field="metadata",
        )
    return dict(value)


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


@dataclass(frozen=True)
class OpenAccountRequest:
    """Open an account homed in `region`.

    `overdraft_limit` is how far below zero the balance may go, in minor
    units: 0 (the default) allows no overdraft, `None` is unlimited and meant
    for system accounts such as a funding or settlement account.
    """

    account_id: str
    currency: str
    region: str
    overdraft_limit: int | None = 0
    initiated_by: str = "system"
    metadata: dict[str, Any] = field(default_factory=dict)

    def validated(self, *, clearing: bool = False) -> OpenAccountRequest:
        """Check the request; only the ledger itself opens clearing accounts."""
        if clearing:
            require_id(self.account_id, "account_id")
        else:
            require_client_account(self.account_id, "account_id")
        minor_units(self.currency)
        require_id(self.region, "region")
        require_id(self.initiated_by, "initiated_by")
        limit = self.overdraft_limit
        if limit is not None and (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 0 <= limit <= MAX_MINOR_UNITS
        ):
            raise InvalidRequest(
                "overdraft_limit must be a non-negative integer of minor units or null",
                field="overdraft_limit",
            )
        require_metadata(self.metadata)
        return self


@dataclass(frozen=True)
class Account:
    account_id: str
    currency: str
    region: str
    overdraft_limit: int | None
    status: str
    version: int
    balance: int
    opened_at: datetime
    #: Hash of the account's latest event: the next event chains to it.
    head_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)
    #: When the latest event was recorded: the next one is never earlier.
    head_recorded_at: datetime | None = None
    #: What the account's open holds reserve: it may spend `available`.
    pending_out: int = 0

    @property
    def available(self) -> int:
        """Posted balance minus what open holds reserve."""
        return self.balance - self.pending_out


@dataclass(frozen=True)
class TransferRequest:
    """What a client asks for. `amount` is `int` minor units or a decimal string.

    `initiated_by` is the principal (user or service) the transfer is
    attributed to; it is written on both events for audit. `to_region` is the
    credited account's home region when it is not the debited account's: the
    transfer then runs as a cross-region saga. The SDK fills it in.
    """

    transfer_id: str
    from_account: str
    to_account: str
    amount: int | str
    currency: str
    initiated_by: str
    description: str | None = None
    metadata: dict[str, Any] | None = None
    to_region: str | None = None

    def validated(self) -> Transfer:
        """Check the shape of the request; raise a `RequestError` if malformed."""
        missing = [
            name
            for name in ("transfer_id", "from_account", "to_account", "currency", "initiated_by")
            if getattr(self, name, None) in (None, "")
        ]
        if self.amount is None or self.amount == "":
            missing.append("amount")
        if missing:
            raise InvalidRequest(f"missing field(s): {', '.join(missing)}", fields=missing)
        require_id(self.transfer_id, "transfer_id")
        require_client_account(self.from_account, "from_account")
        require_client_account(self.to_account, "to_account")
        require_id(self.initiated_by, "initiated_by")
        if self.to_region is not None:
            require_id(self.to_region, "to_region")
        amount = parse_amount(self.amount, self.currency)
        if self.from_account == self.to_account:
            raise SameAccount(f"from_account and to_account are both {self.from_account!r}")
        if self.description is not None:
            require_short_text(self.description, "description")
        return Transfer(
            transfer_id=self.transfer_id,
            from_account=self.from_account,
            to_account=self.to_account,
            amount=amount,
            currency=self.currency,
            initiated_by=self.initiated_by,
            description=self.description,
            metadata=require_metadata(self.metadata),
        )


@dataclass(frozen=True)
class Transfer:
    """A validated transfer: exact amount, known currency, well-formed ids."""

    transfer_id: str
    from_account: str
    to_account: str
    amount: int
    currency: str
    initiated_by: str
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def workflow_id(self) -> str:
        return transfer_workflow_id(self.transfer_id)

    def fingerprint(self) -> str:
        """SHA-256 of the whole request: resubmitting the same id must match it."""
        return fingerprint_of(self)

    def summary(self) -> str:
        return (
            f"{format_amount(self.amount, self.currency)} {self.from_account} → {self.to_account}"
        )


def transfer_workflow_id(transfer_id: str) -> str:
    return f"transfer-{transfer_id}"


@dataclass(frozen=True)
class TransferResult:
    """The outcome of a transfer, identical on every resubmission of its id.

    `confirmed_at` is when the events were durably recorded; balances are the
    write-model balances right after this transfer's events.
    """

    transfer_id: str
    status: str
    fingerprint: str
    region: str
    reason_type: str | None = None
    reason: str | None = None
    debit_event_id: str | None = None
    credit_event_id: str | None = None
    from_balance_after: int | None = None
    to_balance_after: int | None = None
    confirmed_at: datetime | None = None
    #: Cross-region transfers: where the credited account lives (its events are there).
    to_region: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.status == TransferStatus.CONFIRMED

    @property
    def event_ids(self) -> list[str]:
        """The events it posted here (none for a refusal), for projection."""
        return [e for e in (self.debit_event_id, self.credit_event_id) if e]


@dataclass(frozen=True)
class Posting:
    """The part of a transfer that one region writes: debit one of its accounts
    and credit another, atomically, under the id `posting_id`.

    A local transfer is one posting. A cross-region transfer is a saga of
    postings through clearing accounts (docs/ARCHITECTURE.md section 2): `outbound` in the
    source region (customer → clearing account for the destination), `inbound`
    in the destination region (clearing account for the source → customer)
    and, only if the inbound leg fails for good, `reversal` in the source region
    (clearing → customer, under `<transfer_id>/reversal`). Each is idempotent by
    its id in its region's store; all carry the client's fingerprint.
    """

    transfer: Transfer
    kind: PostingKind
    region: str
    peer_region: str | None
    posting_id: str
    debit_account: str
    credit_account: str
    #: Whom each event names as the other side: the customer on the far end
    #: for the customer's event, the local customer for the clearing event.
    debit_counterparty: str
    credit_counterparty: str
    #: A capture: how much of the debited account's pending amount the
    #: posting consumes (its hold's reservation), and so its debit's type.
    pending_release: int = 0

    @classmethod
    def local(cls, transfer: Transfer, region: str) -> Posting:
        return cls(transfer, PostingKind.LOCAL, region, None, transfer.transfer_id,
                   transfer.from_account, transfer.to_account,
                   transfer.to_account, transfer.from_account)  # fmt: skip

    @classmethod
    def outbound(cls, transfer: Transfer, region: str, to_region: str) -> Posting:
        clearing = clearing_account_id(region, to_region, transfer.currency)
        return cls(transfer, PostingKind.OUTBOUND, region, to_region, transfer.transfer_id,
                   transfer.from_account, clearing,
                   transfer.to_account, transfer.from_account)  # fmt: skip

    @classmethod
    def inbound(cls, transfer: Transfer, region: str, from_region: str) -> Posting:
        clearing = clearing_account_id(region, from_region, transfer.currency)
        return cls(transfer, PostingKind.INBOUND, region, from_region, transfer.transfer_id,
                   clearing, transfer.to_account,
                   transfer.to_account, transfer.from_account)  # fmt: skip

    @classmethod
    def reversal(cls, transfer: Transfer, region: str, to_region: str) -> Posting:
        clearing = clearing_account_id(region, to_region, transfer.currency)
        return cls(transfer, PostingKind.REVERSAL, region, to_region,
                   reversal_id(transfer.transfer_id), clearing, transfer.from_account,
                   transfer.from_account, transfer.to_account)  # fmt: skip

    @classmethod
    def of(cls, transfer: Transfer, kind: str, region: str, peer_region: str | None) -> Posting:
        """The posting of `kind` that region `region` writes for `transfer`."""
        if kind == PostingKind.LOCAL:
            return cls.local(transfer, region)
        if peer_region is None or peer_region == region:
            raise InvalidRequest(f"a {kind} posting needs another region", field="peer_region")
        builders = {
            PostingKind.OUTBOUND: cls.outbound,
            PostingKind.INBOUND: cls.inbound,
            PostingKind.REVERSAL: cls.reversal,
        }
        if kind not in builders:
            raise InvalidRequest(f"unknown posting kind {kind!r}", field="kind")
        return builders[PostingKind(kind)](transfer, region, peer_region)

    @property
    def accounts(self) -> tuple[str, str]:
        return (self.debit_account, self.credit_account)

    @property
    def clearing_account(self) -> str | None:
        if self.kind == PostingKind.LOCAL:
            return None
        return self.credit_account if self.kind == PostingKind.OUTBOUND else self.debit_account

    def as_transfer(self) -> Transfer:
        """The posting as a transfer between its two local accounts (for the policy)."""
        return replace(
            self.transfer,
            transfer_id=self.posting_id,
            from_account=self.debit_account,
            to_account=self.credit_account,
        )


@dataclass(frozen=True)
class AccountChangeRequest:
    """Freeze, unfreeze or close `account_id`, idempotently by `change_id`
    (the same id with the same request answers what it answered first; with
    another, `DuplicateChangeMismatch`). `reason` says why, for the audit
    trail; `initiated_by` who."""

    change_id: str
    account_id: str
    action: str
    initiated_by: str
    reason: str

    def validated(self) -> AccountChangeRequest:
        missing = [
            name
            for name in ("change_id", "account_id", "action", "initiated_by", "reason")
            if getattr(self, name, None) in (None, "")
        ]
        if missing:
            raise InvalidRequest(f"missing field(s): {', '.join(missing)}", fields=missing)
        require_id(self.change_id, "change_id")
        require_client_account(self.account_id, "account_id")
        require_id(self.initiated_by, "initiated_by")
        if self.action not in set(AccountAction):
            raise InvalidRequest(
                f"action must be one of {', '.join(AccountAction)}, got {self.action!r}",
                field="action",
            )
        require_short_text(self.reason, "reason")
        return self

    @property
    def workflow_id(self) -> str:
        return account_change_workflow_id(self.account_id, self.change_id)

    def fingerprint(self) -> str:
        return fingerprint_of(self)


def account_change_workflow_id(account_id: str, change_id: str) -> str:
    """`/` is in no account or change id: this never equals `account-<id>`."""
    return f"account-change/{account_id}/{change_id}"


@dataclass(frozen=True)
class AccountChangeResult:
    """The outcome of an account change, identical on every resubmission of
    its id: `applied` (with its event) or `refused` (with the reason)."""

    change_id: str
    account_id: str
    action: str
    status: str
    fingerprint: str
    #: The account's status after the change (unchanged when refused).
    account_status: str
    event_id: str | None = None
    reason_type: str | None = None
    reason: str | None = None
    recorded_at: datetime | None = None

    @property
    def applied(self) -> bool:
        return self.status == "applied"


@dataclass(frozen=True)
class Event:
    """One immutable entry of an account's history.

    `amount` is signed: negative for `Debited` (money leaves the account),
    positive for `Credited`, zero for `AccountOpened` and the status events
    (`AccountFrozen`, `AccountUnfrozen`, `AccountClosed`). `version` counts the
    account's events from 1; `hash` chains each event to the previous one of
    the same account (see `ledgerflow.domain.hashing`).
    """

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
    position: int | None = None
    tx_id: int | None = None
    #: What the account's open holds reserve right after this event.
    pending_after: int = 0


@dataclass(frozen=True)
class OpenAccountResult:
    """`created` is False when the same account was already open (idempotent)."""

    account: Account
    created: bool
    event_id: str
