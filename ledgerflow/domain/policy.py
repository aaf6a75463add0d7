"""The rules a transfer must pass, given the two accounts as they stand.

Pure domain logic: the store calls it under the account locks (the
authoritative check) and without them (the advisory validation).
"""

from __future__ import annotations

from ledgerflow.domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotEmpty,
    AccountNotFound,
    AccountStateConflict,
    AccountUnknown,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidAmount,
)
from ledgerflow.domain.model import (
    Account,
    AccountAction,
    AccountChangeRequest,
    AccountStatus,
    Transfer,
)
from ledgerflow.domain.money import MAX_MINOR_UNITS, format_amount


def check_policy(transfer: Transfer, source: Account | None, target: Account | None) -> None:
    """The business rules of a transfer, given the two accounts as they stand."""
    sides = ((transfer.from_account, source, True), (transfer.to_account, target, False))
    for account_id, account, debited in sides:
        if account is None:
            raise AccountNotFound(f"account {account_id!r} does not exist", account_id=account_id)
        if account.status == AccountStatus.CLOSED:
            raise AccountClosed(f"account {account_id!r} is closed", account_id=account_id)
        if account.status == AccountStatus.FROZEN and debited:
            raise AccountFrozen(
                f"account {account_id!r} is frozen: it accepts credits only",
                account_id=account_id,
            )
        if account.status not in (AccountStatus.OPEN, AccountStatus.FROZEN):
            raise AccountClosed(
                f"account {account_id!r} is {account.status}", account_id=account_id
            )
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


#: (status before, action) → allowed. Nothing leaves `closed`.
_TRANSITIONS = {
    (AccountStatus.OPEN, AccountAction.FREEZE),
    (AccountStatus.FROZEN, AccountAction.UNFREEZE),
    (AccountStatus.OPEN, AccountAction.CLOSE),
    (AccountStatus.FROZEN, AccountAction.CLOSE),
}


def check_change(change: AccountChangeRequest, account: Account | None) -> None:
    """The rules of a status change, given the account as it stands."""
    if account is None:
        raise AccountUnknown(
            f"account {change.account_id!r} does not exist", account_id=change.account_id
        )
    action = AccountAction(change.action)
    if (account.status, action) not in _TRANSITIONS:
        raise AccountStateConflict(
            f"account {account.account_id!r} is {account.status}: it cannot {action}",
            account_id=account.account_id,
            status=account.status,
        )
    if action == AccountAction.CLOSE and account.balance != 0:
        raise AccountNotEmpty(
            f"account {account.account_id!r} has a balance of "
            f"{format_amount(account.balance, account.currency)}; only an empty account closes",
            account_id=account.account_id,
        )
