"""The per-account hash chain that lets `verify` prove history was not altered.

Each event's hash is SHA-256 over the previous event's hash (of the same
account) and the canonical JSON of the event's content. Changing, removing or
reordering any event breaks every later hash of that account. Chaining per
account rides on the account row lock the append already holds, so it adds no
global serialization point (DESIGN.md section 4).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from ledgerflow.domain.model import canonical_json

#: The "previous hash" of an account's first event.
GENESIS_HASH = "0" * 64


def _instant(value: datetime) -> str:
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
) -> dict[str, Any]:
    """The fields an event's hash covers, in their canonical representation."""
    return {
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


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(bytes.fromhex(prev_hash))
    digest.update(canonical_json(content))
    return digest.hexdigest()
