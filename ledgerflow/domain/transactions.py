"""Multi-leg transactions: N postings across accounts of one region, atomic.

A transaction debits and credits two or more accounts at once (an FX trade:
the customer's USD to a USD liquidity account, the EUR liquidity account's
EUR to the customer), all or none, each currency summing to zero. Each
account appears once; each account's rules are checked on its leg. The
transaction id is the idempotency key, with the transfer id's rules. Pure
standard-library code: workflows pass it through the sandbox.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from ledgerflow.domain.errors import InvalidAmount, InvalidRequest
from ledgerflow.domain.model import (
    canonical_json,
    require_client_account,
    require_id,
    require_metadata,
    require_short_text,
)
from ledgerflow.domain.money import parse_amount

MAX_LEGS = 64
SIDES = ("debit", "credit")


def transaction_workflow_id(transaction_id: str) -> str:
    return f"transaction-{transaction_id}"


def transaction_posting_id(transaction_id: str) -> str:
    """What the legs' events carry as their posting id (`/` is in no client
    id, so it never meets a transfer's)."""
    return f"{transaction_id}/tx"


def transaction_of(posting_id: str) -> str | None:
    """The transaction id behind a posting id, if it is a transaction's."""
    return posting_id[: -len("/tx")] if posting_id.endswith("/tx") else None


@dataclass(frozen=True)
class LegRequest:
    """One leg: `side` is `debit` (money leaves the account) or `credit`."""

    account_id: str
    side: str
    amount: int | str
    currency: str

    @classmethod
    def parse(cls, text: str) -> LegRequest:
        """`debit:alice:12.50:USD` (the CLI's `--leg`)."""
        parts = text.split(":")
        if len(parts) != 4:
            raise InvalidRequest(
                f"a leg is side:account:amount:currency, e.g. debit:alice:12.50:USD, got {text!r}",
                field="legs",
            )
        return cls(parts[1], parts[0], parts[2], parts[3])


@dataclass(frozen=True)
class Leg:
    account_id: str
    side: str
    amount: int
    currency: str

    @property
    def signed(self) -> int:
        return -self.amount if self.side == "debit" else self.amount


@dataclass(frozen=True)
class TransactionRequest:
    transaction_id: str
    legs: list[LegRequest]
    initiated_by: str
    description: str | None = None
    metadata: dict[str, Any] | None = None

    def validated(self) -> Transaction:
        require_id(self.transaction_id, "transaction_id")
        require_id(self.initiated_by, "initiated_by")
        if not isinstance(self.legs, list) or not 2 <= len(self.legs) <= MAX_LEGS:
            raise InvalidRequest(f"a transaction has 2 to {MAX_LEGS} legs", field="legs")
        legs: list[Leg] = []
        for n, asked in enumerate(self.legs):
            if not isinstance(asked, LegRequest):
                raise InvalidRequest(f"leg {n} is not a leg", field="legs")
            require_client_account(asked.account_id, f"legs[{n}].account_id")
            if asked.side not in SIDES:
                raise InvalidRequest(
                    f"leg {n}: side must be debit or credit, got {asked.side!r}", field="legs"
                )
            amount = parse_amount(asked.amount, asked.currency)
            legs.append(Leg(asked.account_id, asked.side, amount, asked.currency))
        accounts = [leg.account_id for leg in legs]
        if len(set(accounts)) != len(accounts):
            raise InvalidRequest("each account appears in one leg at most", field="legs")
        sums: dict[str, int] = defaultdict(int)
        for leg in legs:
            sums[leg.currency] += leg.signed
        unbalanced = {currency: total for currency, total in sorted(sums.items()) if total}
        if unbalanced:
            raise InvalidAmount(
                "each currency's legs must sum to zero; "
                + ", ".join(f"{c} sums to {t}" for c, t in unbalanced.items()),
                field="legs",
            )
        if self.description is not None:
            require_short_text(self.description, "description")
        return Transaction(self.transaction_id, legs, self.initiated_by, self.description,
                           require_metadata(self.metadata))  # fmt: skip


@dataclass(frozen=True)
class Transaction:
    transaction_id: str
    legs: list[Leg]
    initiated_by: str
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        content = {f.name: getattr(self, f.name) for f in fields(self)}
        content["legs"] = [[leg.account_id, leg.side, leg.amount, leg.currency]
                           for leg in self.legs]  # fmt: skip
        return hashlib.sha256(canonical_json(content)).hexdigest()

    @property
    def posting_id(self) -> str:
        return transaction_posting_id(self.transaction_id)

    @property
    def workflow_id(self) -> str:
        return transaction_workflow_id(self.transaction_id)


@dataclass(frozen=True)
class TransactionResult:
    """A transaction's outcome, identical on every resubmission of its id."""

    transaction_id: str
    status: str  # confirmed | rejected
    fingerprint: str
    region: str
    event_ids: list[str] = field(default_factory=list)
    #: account -> its balance right after the transaction
    balances_after: dict[str, int] = field(default_factory=dict)
    reason_type: str | None = None
    reason: str | None = None
    confirmed_at: datetime | None = None

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"
