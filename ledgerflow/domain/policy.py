"""The rules a transfer must pass, given the two accounts as they stand.

Pure domain logic: the store calls it under the account locks (the
authoritative check) and without them (the advisory validation).
"""

from __future__ import annotations

from collections.abc import Mapping

from ledgerflow.domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountHasOpenHolds,
    AccountNotEmpty,
    AccountNotFound,
    AccountStateConflict,
    AccountUnknown,
    CaptureExceedsHold,
    CurrencyMismatch,
    HoldNotOpen,
    InsufficientFunds,
    InvalidAmount,
)
from ledgerflow.domain.holds import Hold, HoldState, HoldStatus
from ledgerflow.domain.model import (
    Account,
    AccountAction,
    AccountChangeRequest,
    AccountStatus,
    Transfer,
)
from ledgerflow.domain.money import MAX_MINOR_UNITS, format_amount
from ledgerflow.domain.transactions import Transaction


def check_policy(
    transfer: Transfer, source: Account | None, target: Account | None, *, released: int = 0
) -> None:
    """The business rules of a transfer, given the two accounts as they stand
    (`released`: how much of the amount comes out of the source's own
    reservation, for a hold's capture)."""
    sides = ((transfer.from_account, source, True), (transfer.to_account, target, False))
    for account_id, account, debited in sides:
        _check_account(account_id, account, debited, transfer.currency, "transfer")
    assert source is not None and target is not None
    check_funds(source, transfer.amount, released=released)
    remaining = source.balance - transfer.amount
    if target.balance + transfer.amount > MAX_MINOR_UNITS or remaining < -MAX_MINOR_UNITS:
        raise InvalidAmount("the transfer would overflow an account balance")


def _check_account(
    account_id: str, account: Account | None, debited: bool, currency: str, what: str
) -> None:
    """One side of a posting: the account exists, may take it, holds its currency."""
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
        raise AccountClosed(f"account {account_id!r} is {account.status}", account_id=account_id)
    if account.currency != currency:
        raise CurrencyMismatch(
            f"account {account_id!r} holds {account.currency}, the {what} is in {currency}",
            account_id=account_id,
        )


def check_transaction(transaction: Transaction, accounts: Mapping[str, Account]) -> None:
    """A transaction's rules, on the whole of it, in the order a transfer's
    are checked: every leg's account, then every debited account's funds,
    then the ledger's limits."""
    for leg in transaction.legs:
        _check_account(leg.account_id, accounts.get(leg.account_id), leg.side == "debit",
                       leg.currency, "leg")  # fmt: skip
    for leg in transaction.legs:
        if leg.side == "debit":
            check_funds(accounts[leg.account_id], leg.amount, released=0)
    for leg in transaction.legs:
        if abs(accounts[leg.account_id].balance + leg.signed) > MAX_MINOR_UNITS:
            raise InvalidAmount("the transaction would overflow an account balance")


def check_funds(source: Account, amount: int, *, released: int) -> None:
    """Whether `source` may spend `amount`, of which `released` comes out of
    its own reservation (a capture): what is left available must not go
    below the overdraft limit. Available is posted minus pending out."""
    available_after = source.balance - amount - (source.pending_out - released)
    if source.overdraft_limit is not None and available_after < -source.overdraft_limit:
        held = (
            f" ({format_amount(source.pending_out, source.currency)} of it held)"
            if source.pending_out
            else ""
        )
        raise InsufficientFunds(
            f"account {source.account_id!r} has a balance of "
            f"{format_amount(source.balance, source.currency)}{held} and an overdraft limit of "
            f"{format_amount(source.overdraft_limit, source.currency)}; "
            f"{format_amount(amount, source.currency)} exceeds what it may spend",
            account_id=source.account_id,
        )


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
    if action == AccountAction.CLOSE and account.pending_out != 0:
        raise AccountHasOpenHolds(
            f"account {account.account_id!r} has "
            f"{format_amount(account.pending_out, account.currency)} held by open holds; "
            "void them or let them expire first",
            account_id=account.account_id,
        )
    if action == AccountAction.CLOSE and account.balance != 0:
        raise AccountNotEmpty(
            f"account {account.account_id!r} has a balance of "
            f"{format_amount(account.balance, account.currency)}; only an empty account closes",
            account_id=account.account_id,
        )


def check_hold(hold: Hold, source: Account | None, target: Account | None) -> None:
    """A hold is placed as a transfer of its amount would be, against what the
    source has available: both accounts exist here, the source is open, the
    target not closed, both in the hold's currency."""
    check_policy(
        Transfer(hold.hold_id, hold.from_account, hold.to_account, hold.amount, hold.currency,
                 hold.initiated_by),
        source,
        target,
    )  # fmt: skip


def check_capture(state: HoldState, amount: int) -> None:
    """Whether an open hold takes a capture of `amount` (the accounts' own
    rules are the posting's)."""
    if state.status != HoldStatus.OPEN:
        raise HoldNotOpen(
            f"hold {state.hold_id!r} is {state.status}: nothing more can be captured",
            hold_id=state.hold_id,
            status=state.status,
        )
    if amount > state.capturable:
        raise CaptureExceedsHold(
            f"hold {state.hold_id!r} can take {format_amount(state.capturable, state.currency)} "
            f"more; {format_amount(amount, state.currency)} exceeds it",
            hold_id=state.hold_id,
        )
