"""The global read model fed by the event stream, in the default region.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

* `global_directory`: every account of every region, where it lives, its
  currency and status, as the global stream told it (the SDK asks it first
  where an account lives, instead of every region's database).
* `global_positions`: per region and currency, the net of what the region's
  accounts received from and sent to other regions (the sum of its postings
  outside its clearing accounts; over all regions, once settled, each
  currency sums to zero) and how many events the region had in it.
* Both are applied with their checkpoint (`projection_checkpoints`, name
  `directory`, `position` = the global stream's sequence) in one
  transaction, so each event counts once; rebuilt from the stream's start by
  `ledgerflow stream directory --rebuild`. Only the default region's
  database holds them filled; every region gets the (empty) tables, so the
  schema is one.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

APP_ROLE = "ledgerflow_app"
READER_ROLE = "ledgerflow_reader"

STATEMENTS = [
    """
    CREATE TABLE global_directory (
        account_id  text PRIMARY KEY,
        region      text NOT NULL,
        currency    text NOT NULL,
        status      text NOT NULL,
        opened_at   timestamptz NOT NULL,
        seq         bigint NOT NULL
    )
    """,
    """
    CREATE TABLE global_positions (
        region      text NOT NULL,
        currency    text NOT NULL,
        balance     bigint NOT NULL,
        events      bigint NOT NULL,
        PRIMARY KEY (region, currency)
    )
    """,
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON global_directory, global_positions
            TO {APP_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        GRANT SELECT ON global_directory, global_positions TO {READER_ROLE};
    END IF;
END
$$;
"""


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
    op.execute(GRANTS)


def downgrade() -> None:
    raise NotImplementedError("the ledger's history is never dropped by a migration")
