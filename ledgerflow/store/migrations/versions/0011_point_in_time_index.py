"""The point-in-time probe answered from the index alone.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

`balance_as_of` asks for an account's last event at or before an instant:
its version, balance after and pending after. The index on (account_id,
recorded_at, version) found the row, and then the probe read the row from
the table: one more random page per probe. On a long history that page is
seldom in memory, so the tail grew with the history (p99 2.0 ms at 100k
events, 5.3 ms at 1M). The same key, now carrying the two amounts
(`INCLUDE`), lets the probe be an index-only scan on every page the
visibility map marks all-visible (events are never updated, so after a
vacuum that is nearly all of them). It serves every query the old index
served, which it replaces.

Building it takes a lock that holds writes back while it runs. On a large
live region, build it first without one (`CREATE INDEX CONCURRENTLY
events_account_as_of_idx ...`, the same definition) and this migration
finds it there.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS events_account_as_of_idx "
        "ON events (account_id, recorded_at, version) INCLUDE (balance_after, pending_after)"
    )
    op.execute("DROP INDEX IF EXISTS events_account_recorded_idx")


def downgrade() -> None:
    raise NotImplementedError("the ledger's history is never dropped by a migration")
