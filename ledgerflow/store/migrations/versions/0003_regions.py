"""Cross-region postings and the reconciliation reports.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

A cross-region transfer writes one posting in each of two regions through
clearing accounts (see `ledgerflow.domain.model.Posting`). `transfers.kind`
says which part of its transfer a row is (`local`, `outbound`, `inbound`,
`reversal`) and `peer_region` the other region of the saga, so each region
can list its side of every cross-region transfer without asking the other.

`reconciliation_reports` keeps every ReconcileWorkflow report, append-only.
Each report names the one it continues from (`previous_id`, unique), so two
runs that raced cannot both continue from the same report: the loser
recomputes from the winner's.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP_ROLE = "ledgerflow_app"
READER_ROLE = "ledgerflow_reader"

STATEMENTS = [
    """
    ALTER TABLE transfers
        ADD COLUMN kind text NOT NULL DEFAULT 'local'
            CHECK (kind IN ('local', 'outbound', 'inbound', 'reversal')),
        ADD COLUMN peer_region text,
        ADD CONSTRAINT transfers_peer_region_check
            CHECK ((kind = 'local') = (peer_region IS NULL))
    """,
    """
    CREATE INDEX transfers_cross_region_idx ON transfers (peer_region, kind, recorded_at)
        WHERE kind <> 'local'
    """,
    """
    -- Reconciliation reads the transfers written in its window by transaction.
    CREATE INDEX transfers_tx_idx ON transfers (tx_id)
    """,
    """
    CREATE TABLE reconciliation_reports (
        report_id     text PRIMARY KEY,
        previous_id   text UNIQUE REFERENCES reconciliation_reports (report_id),
        started_at    timestamptz NOT NULL,
        finished_at   timestamptz NOT NULL,
        status        text NOT NULL
            CHECK (status IN ('clean', 'discrepancies_found', 'incomplete')),
        discrepancies integer NOT NULL CHECK (discrepancies >= 0),
        s3_key        text,
        report        jsonb NOT NULL,
        recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp()
    )
    """,
    """
    -- At most one first report: a NULL previous_id is not caught by UNIQUE.
    CREATE UNIQUE INDEX reconciliation_reports_one_first
        ON reconciliation_reports ((previous_id IS NULL)) WHERE previous_id IS NULL
    """,
    """
    CREATE INDEX reconciliation_reports_recorded_idx ON reconciliation_reports (recorded_at)
    """,
    """
    CREATE TRIGGER reconciliation_reports_append_only
        BEFORE UPDATE OR DELETE ON reconciliation_reports
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT ON reconciliation_reports TO {APP_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        GRANT SELECT ON reconciliation_reports TO {READER_ROLE};
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
