"""Tables of one region's database, as SQLAlchemy Core metadata.

The migrations in `ledgerflow/store/migrations` create exactly these tables
(plus triggers and grants, which metadata cannot express).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("currency", Text, nullable=False),
    Column("region", Text, nullable=False),
    # NULL = unlimited (system accounts); 0 = no overdraft; N = credit limit.
    Column("overdraft_limit", BigInteger, nullable=True),
    Column("status", Text, nullable=False, server_default="open"),
    Column("version", BigInteger, nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("head_hash", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)

events = Table(
    "events",
    metadata,
    # `position` is allocated at insert time, so positions commit out of order;
    # readers tail by (tx_id, position) below the transaction horizon instead.
    Column("position", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "tx_id",
        BigInteger,
        nullable=False,
        server_default=text("(pg_current_xact_id()::text)::bigint"),
    ),
    Column("event_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("type", Text, nullable=False),
    Column("account_id", Text, ForeignKey("accounts.account_id"), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("region", Text, nullable=False),
    Column("initiated_by", Text, nullable=False),
    Column("transfer_id", Text, nullable=True),
    Column("leg", Text, nullable=True),
    Column("counterparty", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    UniqueConstraint("account_id", "version", name="events_account_version_key"),
    UniqueConstraint("transfer_id", "leg", name="events_transfer_leg_key"),
    Index("events_tail_idx", "tx_id", "position"),
    Index("events_account_recorded_idx", "account_id", "recorded_at", "version"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("transfer_id", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("region", Text, nullable=False),
    Column("from_account", Text, nullable=False),
    Column("to_account", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("initiated_by", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("reason_type", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("debit_event_id", UUID(as_uuid=False), nullable=True),
    Column("credit_event_id", UUID(as_uuid=False), nullable=True),
    Column("from_balance_after", BigInteger, nullable=True),
    Column("to_balance_after", BigInteger, nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column(
        "tx_id",
        BigInteger,
        nullable=False,
        server_default=text("(pg_current_xact_id()::text)::bigint"),
    ),
    Index("transfers_status_recorded_idx", "status", "recorded_at"),
)

balance_view = Table(
    "balance_view",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("currency", Text, nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

statement_view = Table(
    "statement_view",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("event_id", UUID(as_uuid=False), nullable=False),
    Column("type", Text, nullable=False),
    Column("transfer_id", Text, nullable=True),
    Column("counterparty", Text, nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("description", Text, nullable=True),
    PrimaryKeyConstraint("account_id", "version", name="statement_view_pkey"),
)

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("name", Text, primary_key=True),
    Column("tx_id", BigInteger, nullable=False, server_default="0"),
    Column("position", BigInteger, nullable=False, server_default="0"),
    Column("events_applied", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("last_error", Text, nullable=True),
)
