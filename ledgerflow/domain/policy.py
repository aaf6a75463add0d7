"""The rules a transfer must pass, given the two accounts as they stand.

Pure domain logic: the store calls it under the account locks (the
authoritative check) and without them (the advisory validation).
"""

from __future__ import annotations

from ledgerflow.domain.errors import (
    AccountClosed,
    AccountNotFound,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidAmount,
)
from ledgerflow.domain.model import Account, Transfer
from ledgerflow.domain.money import MAX_MINOR_UNITS, format_amount


def check_policy(transfer: Transfer, source: Account | None, target: Account | None) -> None:
    """The business rules of a transfer, given the two accounts as they stand."""
    for account_id, account in ((transfer.from_account, source), (transfer.to_account, target)):
        if account is None:
            raise AccountNotFound(f"account {account_id!r} does not exist", account_id=account_id)
        if account.status != "open":
            raise AccountClosed(f"account {account_id!r} is closed", account_id=account_id)
        if account.currency != transfer.currency:
            raise CurrencyMismatch(
                f"account {account_id!r} holds {account.currency}, "
                f"the transfer is in {transfer.currency}",
                account_id=account_id,
            )
    assert source is not None and target is not None
    remaining = source.balance - transfer.amount
    if source.overdraft_limit is not None and remaining < -source.overdraft_limit:
        raise InsufficientFunds(
            f"account {source.account_id!r} has a balance of "
            f"{format_amount(source.balance, source.currency)} and an overdraft limit of "
            f"{format_amount(source.overdraft_limit, source.currency)}; "
            f"{format_amount(transfer.amount, transfer.currency)} exceeds what it may spend",
            account_id=source.account_id,
        )
    if target.balance + transfer.amount > MAX_MINOR_UNITS or remaining < -MAX_MINOR_UNITS:
        raise InvalidAmount("the transfer would overflow an account balance")
