"""One append transaction's postings: applied in order in memory, written
in one statement.

`PostgresEventStore._append_batch` locks the batch's accounts and reads the
idempotency records, then hands each posting to `PostingBatch.post`, which
checks it against the accounts as the postings before it left them (so a
batch behaves exactly like its postings appended one by one), chains its two
events' hashes, and collects the rows that `APPEND_WRITES` inserts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import text

from ledgerflow.domain.errors import DuplicateTransferMismatch, InvalidRequest
from ledgerflow.domain.hashing import GENESIS_HASH, chain_hash, event_content
from ledgerflow.domain.model import (
    Account,
    EventType,
    Leg,
    OpenAccountRequest,
    Posting,
    PostingKind,
    Transfer,
    TransferResult,
    TransferStatus,
    canonical_json,
)
from ledgerflow.domain.policy import check_policy, check_transaction
from ledgerflow.domain.transactions import Transaction, TransactionResult
from ledgerflow.store.rows import Recorded

#: Event ids are derived from business keys, so a retried append that lost its
#: reply computes the same ids and collides with what it already wrote.
_EVENT_NAMESPACE = uuid.UUID("6f1b9d1e-3c55-4c1a-9a53-1c2f0e8a7b10")


def event_id_for(key: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, key))


def require_home(posting: Posting, region: str) -> None:
    """A store writes only its own region's postings."""
    if posting.region != region:
        raise InvalidRequest(
            f"posting {posting.posting_id!r} belongs to region {posting.region!r}; "
            f"this is the {region!r} store",
            field="region",
        )


def clearing_request(
    account_id: str, currency: str, region: str, peer_region: str | None
) -> OpenAccountRequest:
    """What opening a clearing account asks: no limit, since its balance is
    what one region owes another and may go either way."""
    return OpenAccountRequest(
        account_id=account_id, currency=currency, region=region, overdraft_limit=None,
        initiated_by="ledgerflow", metadata={"role": "clearing", "peer_region": peer_region},
    ).validated(clearing=True)  # fmt: skip


def clearing_stand_in(account_id: str, currency: str, region: str, opened_at: datetime) -> Account:
    """A clearing account as the policy sees it before it is opened: open,
    empty, without limit (what opening it makes it)."""
    return Account(account_id, currency, region, None, "open", 1, 0, opened_at, GENESIS_HASH,
                   {}, opened_at)  # fmt: skip


def check_posting_policy(
    posting: Posting, found: Mapping[str, Account], region: str, opened_at: datetime
) -> None:
    """The advisory check of a posting against the accounts as they stand. A
    clearing account not opened yet counts as open and without limit: the
    append opens it so."""
    transfer = posting.as_transfer()
    accounts = dict(found)
    clearing = posting.clearing_account
    if clearing is not None and clearing not in accounts:
        accounts[clearing] = clearing_stand_in(clearing, transfer.currency, region, opened_at)
    check_policy(transfer, accounts.get(transfer.from_account), accounts.get(transfer.to_account))


def same_posting(existing: Recorded, posting: Posting) -> TransferResult:
    """Exactly-once: the recorded outcome stands, if and only if it is the same
    payload *and* the same part of the transfer. A local posting is not a
    source leg: taking one for the other would let a re-run that adds a
    `to_region` credit the far region with money that never left."""
    if existing.result.fingerprint != posting.transfer.fingerprint() or (
        existing.kind,
        existing.peer_region,
    ) != (str(posting.kind), posting.peer_region):
        raise DuplicateTransferMismatch.for_transfer(posting.transfer.transfer_id)
    return existing.result


#: The writes of a batch of postings, in one statement: their events, their
#: transfer records and the accounts' new heads, each column an array.
APPEND_WRITES = text(
    """
    WITH posted AS (
        INSERT INTO events (event_id, type, account_id, version, amount, currency,
            balance_after, occurred_at, recorded_at, region, initiated_by, transfer_id, leg,
            counterparty, description, metadata, prev_hash, hash, pending_after)
        SELECT e.event_id, e.type, e.account_id, e.version, e.amount, e.currency,
               e.balance_after, e.occurred_at, e.recorded_at, :region, e.initiated_by,
               e.transfer_id,
               e.leg, e.counterparty, e.description, CAST(e.metadata AS jsonb), e.prev_hash,
               e.hash, e.pending_after
          FROM unnest(CAST(:e_event_id AS uuid[]), CAST(:e_type AS text[]),
                      CAST(:e_account_id AS text[]), CAST(:e_version AS bigint[]),
                      CAST(:e_amount AS bigint[]), CAST(:e_currency AS text[]),
                      CAST(:e_balance_after AS bigint[]),
                      CAST(:e_occurred_at AS timestamptz[]),
                      CAST(:e_recorded_at AS timestamptz[]),
                      CAST(:e_initiated_by AS text[]), CAST(:e_transfer_id AS text[]),
                      CAST(:e_leg AS text[]), CAST(:e_counterparty AS text[]),
                      CAST(:e_description AS text[]), CAST(:e_metadata AS text[]),
                      CAST(:e_prev_hash AS text[]), CAST(:e_hash AS text[]),
                      CAST(:e_pending_after AS bigint[]))
            AS e (event_id, type, account_id, version, amount, currency, balance_after,
                  occurred_at, recorded_at, initiated_by, transfer_id, leg, counterparty,
                  description, metadata, prev_hash, hash, pending_after)
    ), recorded AS (
        INSERT INTO transfers (transfer_id, fingerprint, status, region, from_account,
            to_account, amount, currency, initiated_by, description, metadata,
            debit_event_id, credit_event_id, from_balance_after, to_balance_after,
            occurred_at, recorded_at, kind, peer_region)
        SELECT t.transfer_id, t.fingerprint, 'confirmed', :region, t.from_account,
               t.to_account, t.amount, t.currency, t.initiated_by, t.description,
               CAST(t.metadata AS jsonb), t.debit_event_id, t.credit_event_id,
               t.from_balance_after, t.to_balance_after, t.occurred_at, t.recorded_at, t.kind,
               t.peer_region
          FROM unnest(CAST(:t_transfer_id AS text[]), CAST(:t_fingerprint AS text[]),
                      CAST(:t_from_account AS text[]), CAST(:t_to_account AS text[]),
                      CAST(:t_amount AS bigint[]), CAST(:t_currency AS text[]),
                      CAST(:t_initiated_by AS text[]), CAST(:t_description AS text[]),
                      CAST(:t_metadata AS text[]), CAST(:t_debit_event_id AS uuid[]),
                      CAST(:t_credit_event_id AS uuid[]),
                      CAST(:t_from_balance_after AS bigint[]),
                      CAST(:t_to_balance_after AS bigint[]),
                      CAST(:t_occurred_at AS timestamptz[]),
                      CAST(:t_recorded_at AS timestamptz[]), CAST(:t_kind AS text[]),
                      CAST(:t_peer_region AS text[]))
            AS t (transfer_id, fingerprint, from_account, to_account, amount, currency,
                  initiated_by, description, metadata, debit_event_id, credit_event_id,
                  from_balance_after, to_balance_after, occurred_at, recorded_at, kind,
                  peer_region)
    )
    UPDATE accounts AS a
       SET version = v.version, balance = v.balance, head_hash = v.head_hash,
           head_recorded_at = v.head_recorded_at, pending_out = v.pending_out
      FROM unnest(CAST(:a_account_id AS text[]), CAST(:a_version AS bigint[]),
                  CAST(:a_balance AS bigint[]), CAST(:a_head_hash AS text[]),
                  CAST(:a_head_recorded_at AS timestamptz[]),
                  CAST(:a_pending_out AS bigint[]))
           AS v (account_id, version, balance, head_hash, head_recorded_at, pending_out)
     WHERE a.account_id = v.account_id
    """
)


class PostingBatch:
    """The postings of one append transaction, applied in order in memory.

    Each posting is checked against the accounts as the postings before it
    left them, so a batch behaves exactly like its postings appended one by
    one; its writes are columns of arrays for `APPEND_WRITES`.
    """

    def __init__(self, now: datetime, region: str) -> None:
        #: The database clock when the batch's locks were taken.
        self.now = now
        self.region = region
        self.postings: list[Transfer] = []
        self.touched: dict[str, Account] = {}
        self.events: dict[str, list[Any]] = {k: [] for k in _EVENT_FIELDS}
        self.transfers: dict[str, list[Any]] = {k: [] for k in _TRANSFER_FIELDS}

    def post(
        self,
        posting: Posting,
        occurred_at: datetime,
        accounts: dict[str, Account],
        recorded: dict[str, Recorded],
    ) -> TransferResult:
        existing = recorded.get(posting.posting_id)
        if existing is not None:
            return same_posting(existing, posting)
        transfer = posting.transfer
        source = accounts.get(posting.debit_account)
        target = accounts.get(posting.credit_account)
        # A reversal returns money to where it came from: not a new spend
        # (the clearing account has no limit, the customer only gains), so
        # only the accounts' existence is checked.
        if posting.kind != PostingKind.REVERSAL or source is None or target is None:
            check_policy(posting.as_transfer(), source, target, released=posting.pending_release)
        assert source is not None and target is not None
        # Monotonic per account: never before either account's last event,
        # whatever the database clock says (a clock that steps back must not
        # make an account's history run backwards, or `balance_as_of` would
        # disagree with the replay). Both events of the posting share it.
        recorded_at = max(self.now, _head_time(source), _head_time(target))
        # A local posting keeps the original key; a saga's legs add their kind,
        # so the two regions' events of one transfer never share an id.
        key = posting.posting_id
        if posting.kind != PostingKind.LOCAL:
            key = f"{key}/{posting.kind}"
        try:
            metadata = canonical_json(transfer.metadata).decode()
            fingerprint = transfer.fingerprint()
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            # Text no encoder accepts: refuse this posting alone, never retry it.
            raise InvalidRequest(f"the transfer cannot be stored as given: {exc}") from None
        # A capture's debit consumes its hold's reservation (a capture toward
        # another region is an outbound leg that does).
        capture = posting.kind == PostingKind.CAPTURE or posting.pending_release > 0
        debit = EventType.HOLD_CAPTURED if capture else EventType.DEBITED
        legs = (
            (source, -transfer.amount, Leg.DEBIT, debit, posting.debit_counterparty,
             source.pending_out - posting.pending_release),
            (target, transfer.amount, Leg.CREDIT, EventType.CREDITED,
             posting.credit_counterparty, target.pending_out),
        )  # fmt: skip
        heads: list[Account] = []
        rows: list[dict[str, Any]] = []
        for account, amount, leg, kind, counterparty, pending in legs:
            event_id = event_id_for(f"transfer/{key}/{leg}")
            version, balance = account.version + 1, account.balance + amount
            content = event_content(
                event_id=event_id,
                type=kind,
                account_id=account.account_id,
                version=version,
                amount=amount,
                currency=transfer.currency,
                balance_after=balance,
                occurred_at=occurred_at,
                recorded_at=recorded_at,
                region=self.region,
                initiated_by=transfer.initiated_by,
                transfer_id=posting.posting_id,
                leg=leg,
                counterparty=counterparty,
                description=transfer.description,
                metadata=transfer.metadata,
                pending_after=pending,
            )
            try:
                digest = chain_hash(account.head_hash, content)
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"the transfer cannot be hashed as given: {exc}") from None
            rows.append(dict(
                event_id=event_id, type=str(kind), account_id=account.account_id,
                version=version, amount=amount, currency=transfer.currency,
                balance_after=balance, occurred_at=occurred_at, recorded_at=recorded_at,
                initiated_by=transfer.initiated_by, transfer_id=posting.posting_id,
                leg=str(leg), counterparty=counterparty, description=transfer.description,
                metadata=metadata, prev_hash=account.head_hash, hash=digest,
                pending_after=pending,
            ))  # fmt: skip
            # (Positional, not dataclasses.replace: this runs twice per transfer.)
            head = Account(account.account_id, account.currency, account.region,
                           account.overdraft_limit, account.status, version, balance,
                           account.opened_at, digest, account.metadata,
                           recorded_at, pending)  # fmt: skip
            heads.append(head)
        # Nothing is kept until both legs were built: a posting refused while
        # hashing leaves the batch exactly as it was.
        for row, head in zip(rows, heads, strict=True):
            _append_row(self.events, **row)
            accounts[head.account_id] = self.touched[head.account_id] = head
        debit_id, credit_id = rows[0]["event_id"], rows[1]["event_id"]
        result = TransferResult(
            transfer_id=transfer.transfer_id,
            status=TransferStatus.CONFIRMED,
            fingerprint=fingerprint,
            region=self.region,
            debit_event_id=debit_id,
            credit_event_id=credit_id,
            from_balance_after=heads[0].balance,
            to_balance_after=heads[1].balance,
            confirmed_at=recorded_at,
        )
        _append_row(
            self.transfers, transfer_id=posting.posting_id, fingerprint=fingerprint,
            from_account=posting.debit_account, to_account=posting.credit_account,
            amount=transfer.amount, currency=transfer.currency,
            initiated_by=transfer.initiated_by, description=transfer.description,
            metadata=metadata, debit_event_id=debit_id, credit_event_id=credit_id,
            from_balance_after=heads[0].balance, to_balance_after=heads[1].balance,
            occurred_at=occurred_at, recorded_at=recorded_at, kind=str(posting.kind),
            peer_region=posting.peer_region,
        )  # fmt: skip
        # A later posting of the batch with the same id sees this one's outcome.
        recorded[posting.posting_id] = Recorded(result, str(posting.kind), posting.peer_region)
        self.postings.append(transfer)
        return result

    def post_legs(
        self, transaction: Transaction, occurred_at: datetime, accounts: dict[str, Account]
    ) -> TransactionResult:
        """A multi-leg transaction's events, all or none: every rule checked
        on the whole transaction first (`check_transaction`), then one event
        per leg under the posting id `<transaction id>/tx`."""
        check_transaction(transaction, accounts)
        try:
            metadata = canonical_json(transaction.metadata).decode()
            fingerprint = transaction.fingerprint()
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"the transaction cannot be stored as given: {exc}") from None
        recorded_at = max([self.now, *(_head_time(accounts[leg.account_id])
                                       for leg in transaction.legs)])  # fmt: skip
        posting_id = transaction.posting_id
        rows, heads = [], []
        for leg in transaction.legs:
            account = accounts[leg.account_id]
            kind = EventType.DEBITED if leg.side == "debit" else EventType.CREDITED
            event_id = event_id_for(f"transaction/{transaction.transaction_id}/{leg.account_id}")
            version, balance = account.version + 1, account.balance + leg.signed
            fields: dict[str, Any] = dict(
                event_id=event_id, type=kind, account_id=account.account_id, version=version,
                amount=leg.signed, currency=leg.currency, balance_after=balance,
                occurred_at=occurred_at, recorded_at=recorded_at, region=self.region,
                initiated_by=transaction.initiated_by, transfer_id=posting_id, leg=leg.side,
                counterparty=None, description=transaction.description,
                metadata=transaction.metadata, pending_after=account.pending_out,
            )  # fmt: skip
            try:
                digest = chain_hash(account.head_hash, event_content(**fields))
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"the transaction cannot be hashed as given: {exc}") from None
            rows.append(fields | {"type": str(kind), "metadata": metadata,
                                  "prev_hash": account.head_hash, "hash": digest})  # fmt: skip
            heads.append(Account(account.account_id, account.currency, account.region,
                                 account.overdraft_limit, account.status, version, balance,
                                 account.opened_at, digest, account.metadata, recorded_at,
                                 account.pending_out))  # fmt: skip
        for row, head in zip(rows, heads, strict=True):
            row.pop("region")
            _append_row(self.events, **row)
            accounts[head.account_id] = self.touched[head.account_id] = head
        return TransactionResult(
            transaction_id=transaction.transaction_id, status="confirmed",
            fingerprint=fingerprint, region=self.region,
            event_ids=[row["event_id"] for row in rows],
            balances_after={head.account_id: head.balance for head in heads},
            confirmed_at=recorded_at,
        )  # fmt: skip

    def params(self) -> dict[str, Any]:
        heads = list(self.touched.values())
        return (
            {"now": self.now, "region": self.region}
            | {f"e_{k}": v for k, v in self.events.items()}
            | {f"t_{k}": v for k, v in self.transfers.items()}
            | {
                "a_account_id": [a.account_id for a in heads],
                "a_version": [a.version for a in heads],
                "a_balance": [a.balance for a in heads],
                "a_head_hash": [a.head_hash for a in heads],
                "a_head_recorded_at": [a.head_recorded_at for a in heads],
                "a_pending_out": [a.pending_out for a in heads],
            }
        )


def _head_time(account: Account) -> datetime:
    """When the account's head event was recorded (its opening, if unknown)."""
    return account.head_recorded_at or account.opened_at


def _append_row(columns: dict[str, list[Any]], **row: Any) -> None:
    """One row onto the column arrays: every column, no other."""
    if row.keys() != columns.keys():
        raise KeyError(f"row columns {sorted(row)} are not {sorted(columns)}")
    for name, value in row.items():
        columns[name].append(value)


_EVENT_FIELDS = ("event_id", "type", "account_id", "version", "amount", "currency",
                 "balance_after", "occurred_at", "recorded_at", "initiated_by", "transfer_id",
                 "leg",
                 "counterparty", "description", "metadata", "prev_hash", "hash",
                 "pending_after")  # fmt: skip
_TRANSFER_FIELDS = ("transfer_id", "fingerprint", "from_account", "to_account", "amount",
                    "currency", "initiated_by", "description", "metadata", "debit_event_id",
                    "credit_event_id", "from_balance_after", "to_balance_after", "occurred_at",
                    "recorded_at", "kind", "peer_region")  # fmt: skip
