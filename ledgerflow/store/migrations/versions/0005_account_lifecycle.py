"""Account lifecycle: freeze, unfreeze and close are events of the account's chain.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Until now `accounts.status` could only be `open` or `closed`, and nothing but
an edit of the database closed an account: the app role could set the status
at will, with no event to show for it. Now:

* `AccountFrozen`, `AccountUnfrozen` and `AccountClosed` are event types
  (amount 0; the balance carries over), chained and hashed like postings,
  with who did it (`initiated_by`) and why (`description`) on the event and
  the change's id in its metadata.
* The status follows the events, checked by a statement-level trigger on
  every UPDATE of `accounts` (like the balance, issue 12): a status changes
  only by a status event, which is the only event of its account in the
  statement; the transitions are open → frozen → open, open or frozen →
  closed, and nothing leaves closed; a close needs a zero balance. A debit
  needs an open account; a credit needs one that is not closed (a frozen
  account accepts credits: see docs/ARCHITECTURE.md, "Account lifecycle"),
  except a cross-region transfer's reversal, which returns money that left
  the account before it closed.
* Each change is recorded once under its account and change id in
  `account_changes`, applied or refused, append-only: the change id's
  outcome is its first recorded outcome, as for transfer ids.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

APP_ROLE = "ledgerflow_app"
READER_ROLE = "ledgerflow_reader"
PRUNER_ROLE = "ledgerflow_pruner"

STATEMENTS = [
    "ALTER TABLE events DROP CONSTRAINT events_type_check",
    """
    ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN (
        'AccountOpened', 'Debited', 'Credited', 'AccountFrozen', 'AccountUnfrozen',
        'AccountClosed'))
    """,
    "ALTER TABLE events DROP CONSTRAINT events_sign_check",
    """
    ALTER TABLE events ADD CONSTRAINT events_sign_check CHECK (
        (type = 'Debited' AND amount < 0) OR (type = 'Credited' AND amount > 0)
        OR (type NOT IN ('Debited', 'Credited') AND amount = 0))
    """,
    "ALTER TABLE events DROP CONSTRAINT events_leg_check",
    """
    ALTER TABLE events ADD CONSTRAINT events_leg_check CHECK (
        (type = 'Debited' AND transfer_id IS NOT NULL AND leg = 'debit')
        OR (type = 'Credited' AND transfer_id IS NOT NULL AND leg = 'credit')
        OR (type NOT IN ('Debited', 'Credited') AND transfer_id IS NULL AND leg IS NULL))
    """,
    "ALTER TABLE accounts DROP CONSTRAINT accounts_status_check",
    """
    ALTER TABLE accounts ADD CONSTRAINT accounts_status_check
        CHECK (status IN ('open', 'frozen', 'closed'))
    """,
    """
    CREATE TABLE account_changes (
        account_id    text NOT NULL,
        change_id     text NOT NULL,
        action        text NOT NULL CHECK (action IN ('freeze', 'unfreeze', 'close')),
        fingerprint   text NOT NULL,
        status        text NOT NULL CHECK (status IN ('applied', 'refused')),
        event_id      uuid,
        status_after  text NOT NULL,
        reason_type   text,
        reason        text,
        initiated_by  text NOT NULL,
        note          text,
        recorded_at   timestamptz NOT NULL,
        PRIMARY KEY (account_id, change_id),
        CONSTRAINT account_changes_outcome_check CHECK (
            (status = 'applied' AND event_id IS NOT NULL AND reason_type IS NULL)
            OR (status = 'refused' AND event_id IS NULL AND reason_type IS NOT NULL))
    )
    """,
    """
    CREATE TRIGGER account_changes_append_only BEFORE UPDATE OR DELETE ON account_changes
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER account_changes_no_truncate BEFORE TRUNCATE ON account_changes
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE FUNCTION ledger_status_follows_events() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad text;
    BEGIN
        WITH moved AS (
            SELECT n.account_id, n.status, o.status AS old_status, o.balance AS old_balance,
                   o.version AS old_version, n.version
              FROM new_heads n JOIN old_heads o ON o.account_id = n.account_id
        ), chain AS (
            SELECT m.*, e.type, e.transfer_id,
                   count(*) OVER (PARTITION BY m.account_id) AS events
              FROM moved m
              JOIN public.events e ON e.account_id = m.account_id
               AND e.version > m.old_version AND e.version <= m.version
        ), problems AS (
            -- a status that changed with no status event to show for it
            SELECT m.account_id FROM moved m
             WHERE m.status <> m.old_status
               AND NOT EXISTS (SELECT 1 FROM chain c WHERE c.account_id = m.account_id
                                  AND c.type IN ('AccountFrozen', 'AccountUnfrozen',
                                                 'AccountClosed'))
            UNION ALL
            SELECT account_id FROM chain
             WHERE (type = 'Debited' AND old_status <> 'open')
                OR (type = 'Credited' AND old_status = 'closed'
                    AND transfer_id NOT LIKE '%/reversal')
                OR (type IN ('AccountFrozen', 'AccountUnfrozen', 'AccountClosed')
                    AND (events <> 1
                         OR (old_status, type, status) NOT IN (
                             ('open', 'AccountFrozen', 'frozen'),
                             ('frozen', 'AccountUnfrozen', 'open'),
                             ('open', 'AccountClosed', 'closed'),
                             ('frozen', 'AccountClosed', 'closed'))
                         OR (type = 'AccountClosed' AND old_balance <> 0)))
        )
        SELECT account_id INTO bad FROM problems LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'write model: the status of account % does not follow its events',
                bad USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END;
    $$
    """,
    """
    CREATE TRIGGER accounts_status_follows_events AFTER UPDATE ON accounts
        REFERENCING OLD TABLE AS old_heads NEW TABLE AS new_heads
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_status_follows_events()
    """,
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT ON account_changes TO {APP_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        GRANT SELECT ON account_changes TO {READER_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{PRUNER_ROLE}') THEN
        GRANT SELECT ON account_changes TO {PRUNER_ROLE};
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
