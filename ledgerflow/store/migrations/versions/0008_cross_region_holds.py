"""Holds toward another region: a capture travels through the saga.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

* `holds.to_region`: the region the hold's target lives in, when it is not
  the hold's (NULL for a hold within its region, and for every hold placed
  before this revision). A capture of such a hold posts the saga's source
  leg here (held account → clearing account for that region, kind
  `outbound`, its debit a `HoldCaptured`); the destination's leg is posted
  there.
* `hold_capture_reversals`: a cross-region capture its destination refused
  for good, returned here under `<capture posting id>/reversal`; at most one
  per capture, append-only, and only of a capture that posted.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APP_ROLE = "ledgerflow_app"
READER_ROLE = "ledgerflow_reader"
PRUNER_ROLE = "ledgerflow_pruner"

STATEMENTS = [
    "ALTER TABLE holds ADD COLUMN to_region text",
    """
    CREATE TABLE hold_capture_reversals (
        hold_id       text NOT NULL,
        capture_id    text NOT NULL,
        posting_id    text NOT NULL UNIQUE,
        reason_type   text NOT NULL,
        reason        text NOT NULL,
        recorded_at   timestamptz NOT NULL,
        PRIMARY KEY (hold_id, capture_id),
        FOREIGN KEY (hold_id, capture_id) REFERENCES hold_captures (hold_id, capture_id)
    )
    """,
    """
    CREATE TRIGGER hold_capture_reversals_append_only
        BEFORE UPDATE OR DELETE ON hold_capture_reversals
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER hold_capture_reversals_no_truncate BEFORE TRUNCATE ON hold_capture_reversals
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
    """,
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT ON hold_capture_reversals TO {APP_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        GRANT SELECT ON hold_capture_reversals TO {READER_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{PRUNER_ROLE}') THEN
        GRANT SELECT ON hold_capture_reversals TO {PRUNER_ROLE};
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
