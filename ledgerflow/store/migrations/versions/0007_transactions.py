"""Multi-leg transactions: one id, N postings of one region, atomic.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

* A transaction's legs are events under the posting id `<id>/tx`, one per
  account: each (posting id, leg, account) is unique, where a transfer had
  one debit and one credit per posting id. (A transfer's posting still has
  exactly two legs: verify checks it.)
* `transactions` records each id's outcome once, confirmed (with its
  events) or rejected (with the reason), append-only.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APP_ROLE = "ledgerflow_app"
READER_ROLE = "ledgerflow_reader"
PRUNER_ROLE = "ledgerflow_pruner"

STATEMENTS = [
    "ALTER TABLE events DROP CONSTRAINT events_transfer_leg_key",
    """
    ALTER TABLE events ADD CONSTRAINT events_transfer_leg_key
        UNIQUE (transfer_id, leg, account_id)
    """,
    """
    CREATE TABLE transactions (
        transaction_id  text PRIMARY KEY,
        fingerprint     text NOT NULL,
        status          text NOT NULL CHECK (status IN ('confirmed', 'rejected')),
        legs            jsonb NOT NULL,
        event_ids       uuid[] NOT NULL,
        reason_type     text,
        reason          text,
        initiated_by    text NOT NULL,
        description     text,
        recorded_at     timestamptz NOT NULL,
        tx_id           bigint NOT NULL DEFAULT (pg_current_xact_id()::text)::bigint,
        CONSTRAINT transactions_outcome_check CHECK (
            (status = 'confirmed' AND cardinality(event_ids) >= 2 AND reason_type IS NULL)
            OR (status = 'rejected' AND cardinality(event_ids) = 0 AND reason_type IS NOT NULL))
    )
    """,
    """
    CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
    """,
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT ON transactions TO {APP_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        GRANT SELECT ON transactions TO {READER_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{PRUNER_ROLE}') THEN
        GRANT SELECT ON transactions TO {PRUNER_ROLE};
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
