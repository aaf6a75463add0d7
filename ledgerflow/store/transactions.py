"""Multi-leg transactions as both stores apply them: the outcome of a new
id (its events, or its rejection) and the recorded outcome of a known one."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ledgerflow.domain.errors import (
    REJECTION_TYPES,
    DuplicateTransactionMismatch,
    LedgerError,
)
from ledgerflow.domain.model import Account
from ledgerflow.domain.transactions import Transaction, TransactionResult
from ledgerflow.store.batch import PostingBatch


def same_transaction(existing: TransactionResult, transaction: Transaction) -> TransactionResult:
    if existing.fingerprint != transaction.fingerprint():
        raise DuplicateTransactionMismatch(
            f"transaction id {transaction.transaction_id!r} was already used for a different "
            "transaction",
            transaction_id=transaction.transaction_id,
        )
    return existing


def post_or_reject(
    transaction: Transaction,
    accounts: dict[str, Account],
    now: datetime,
    occurred_at: datetime,
    region: str,
) -> tuple[PostingBatch | None, TransactionResult]:
    """A new transaction id: its batch of legs, or its rejection (the
    policy's refusal of any leg rejects the whole transaction)."""
    batch = PostingBatch(now, region)
    try:
        return batch, batch.post_legs(transaction, occurred_at, accounts)
    except LedgerError as error:
        if error.type not in REJECTION_TYPES:
            raise
        return None, TransactionResult(
            transaction.transaction_id, "rejected", transaction.fingerprint(), region,
            reason_type=error.type, reason=error.message, confirmed_at=now,
        )  # fmt: skip


def legs_record(transaction: Transaction, result: TransactionResult) -> str:
    """The legs as recorded, with each account's balance after them."""
    return json.dumps(
        [
            {"account_id": leg.account_id, "side": leg.side, "amount": leg.amount,
             "currency": leg.currency,
             "balance_after": result.balances_after.get(leg.account_id)}
            for leg in transaction.legs
        ],
        sort_keys=True,
    )  # fmt: skip


def result_from_record(row: Any, region: str) -> TransactionResult:
    legs = row.legs if isinstance(row.legs, list) else json.loads(row.legs)
    return TransactionResult(
        transaction_id=row.transaction_id, status=row.status, fingerprint=row.fingerprint,
        region=region, event_ids=[str(e) for e in row.event_ids],
        balances_after={
            leg["account_id"]: leg["balance_after"] for leg in legs
            if leg.get("balance_after") is not None
        },
        reason_type=row.reason_type, reason=row.reason, confirmed_at=row.recorded_at,
    )  # fmt: skip
