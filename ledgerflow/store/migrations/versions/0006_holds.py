"""Holds: amounts reserved on an account, captured, voided or expired.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

* `accounts.pending_out` is what the account's open holds still reserve;
  every event carries `pending_after`, the account's pending amount right
  after it (0 for every event written before this revision, when there were
  no holds). What an account may spend is its *available* balance, posted
  minus pending out.
* Three event types: `HoldPlaced` (amount 0; pending rises by the amount
  held), `HoldCaptured` (the debit leg of a capture's posting, amount < 0;
  pending falls by what the capture takes from the hold) and `HoldReleased`
  (amount 0; a void or the expiry gives back what is left). The hold's id is
  in each one's metadata; a capture's posting id is `<hold>/capture/<id>`.
* The pending amount follows the events, for any role, like the balance and
  the status: a statement-level trigger on `accounts` checks that each event
  keeps the pending amount (postings), raises it (a placement) or lowers it
  (a capture or a release), never below zero, that the head's `pending_out`
  is its last event's, and that no placement or debit leaves the available
  balance below the overdraft limit.
* `holds` (one row per hold id, placed or refused), `hold_captures` (one per
  capture id, captured or refused), `hold_releases` (at most one per hold:
  its void or its expiry) and `hold_deadlines` (each change of a deadline),
  all append-only. A hold ends exactly once: fully captured, or its one
  release row.
* Account checkpoints keep the pending amount of the event they stand for,
  filled in by a trigger from that event when the prune writes them.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APP_ROLE = "ledgerflow_app"
READER_ROLE = "ledgerflow_reader"
PRUNER_ROLE = "ledgerflow_pruner"

HOLD_TYPES = "'HoldPlaced', 'HoldCaptured', 'HoldReleased'"

STATEMENTS = [
    "ALTER TABLE accounts ADD COLUMN pending_out bigint NOT NULL DEFAULT 0",
    "ALTER TABLE events ADD COLUMN pending_after bigint NOT NULL DEFAULT 0",
    "ALTER TABLE account_checkpoints ADD COLUMN pending bigint NOT NULL DEFAULT 0",
    "ALTER TABLE balance_view ADD COLUMN pending_out bigint NOT NULL DEFAULT 0",
    # (NULL for segments indexed before holds existed: then there were none.)
    "ALTER TABLE archive_account_index ADD COLUMN last_pending bigint",
    "ALTER TABLE events DROP CONSTRAINT events_type_check",
    f"""
    ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN (
        'AccountOpened', 'Debited', 'Credited', 'AccountFrozen', 'AccountUnfrozen',
        'AccountClosed', {HOLD_TYPES}))
    """,
    "ALTER TABLE events DROP CONSTRAINT events_sign_check",
    """
    ALTER TABLE events ADD CONSTRAINT events_sign_check CHECK (
        (type IN ('Debited', 'HoldCaptured') AND amount < 0)
        OR (type = 'Credited' AND amount > 0)
        OR (type NOT IN ('Debited', 'Credited', 'HoldCaptured') AND amount = 0))
    """,
    "ALTER TABLE events DROP CONSTRAINT events_leg_check",
    """
    ALTER TABLE events ADD CONSTRAINT events_leg_check CHECK (
        (type IN ('Debited', 'HoldCaptured') AND transfer_id IS NOT NULL AND leg = 'debit')
        OR (type = 'Credited' AND transfer_id IS NOT NULL AND leg = 'credit')
        OR (type NOT IN ('Debited', 'Credited', 'HoldCaptured')
            AND transfer_id IS NULL AND leg IS NULL))
    """,
    "ALTER TABLE events ADD CONSTRAINT events_pending_check CHECK (pending_after >= 0)",
    "ALTER TABLE transfers DROP CONSTRAINT transfers_kind_check",
    """
    ALTER TABLE transfers ADD CONSTRAINT transfers_kind_check
        CHECK (kind IN ('local', 'outbound', 'inbound', 'reversal', 'capture'))
    """,
    "ALTER TABLE transfers DROP CONSTRAINT transfers_peer_region_check",
    """
    ALTER TABLE transfers ADD CONSTRAINT transfers_peer_region_check
        CHECK ((kind IN ('local', 'capture')) = (peer_region IS NULL))
    """,
    """
    CREATE TABLE holds (
        hold_id       text PRIMARY KEY,
        fingerprint   text NOT NULL,
        status        text NOT NULL CHECK (status IN ('placed', 'refused')),
        from_account  text NOT NULL,
        to_account    text NOT NULL,
        amount        bigint NOT NULL CHECK (amount > 0),
        currency      text NOT NULL,
        over_capture  bigint NOT NULL CHECK (over_capture >= 0),
        expires_at    timestamptz,
        event_id      uuid,
        reason_type   text,
        reason        text,
        initiated_by  text NOT NULL,
        description   text,
        recorded_at   timestamptz NOT NULL,
        CONSTRAINT holds_outcome_check CHECK (
            (status = 'placed' AND event_id IS NOT NULL AND reason_type IS NULL
             AND expires_at IS NOT NULL)
            OR (status = 'refused' AND event_id IS NULL AND reason_type IS NOT NULL
                AND expires_at IS NULL))
    )
    """,
    "CREATE INDEX holds_from_idx ON holds (from_account, recorded_at)",
    "CREATE INDEX holds_to_idx ON holds (to_account, recorded_at)",
    """
    CREATE TABLE hold_captures (
        hold_id       text NOT NULL REFERENCES holds (hold_id),
        capture_id    text NOT NULL,
        amount        bigint NOT NULL CHECK (amount > 0),
        status        text NOT NULL CHECK (status IN ('captured', 'refused')),
        -- what the capture took from the hold's reservation (<= amount)
        consumed      bigint NOT NULL CHECK (consumed >= 0),
        posting_id    text,
        reason_type   text,
        reason        text,
        initiated_by  text NOT NULL,
        recorded_at   timestamptz NOT NULL,
        PRIMARY KEY (hold_id, capture_id),
        CONSTRAINT hold_captures_outcome_check CHECK (
            (status = 'captured' AND posting_id IS NOT NULL AND reason_type IS NULL
             AND consumed <= amount)
            OR (status = 'refused' AND posting_id IS NULL AND reason_type IS NOT NULL
                AND consumed = 0))
    )
    """,
    """
    CREATE TABLE hold_releases (
        hold_id       text PRIMARY KEY REFERENCES holds (hold_id),
        ending        text NOT NULL CHECK (ending IN ('voided', 'expired')),
        released      bigint NOT NULL CHECK (released >= 0),
        event_id      uuid NOT NULL,
        initiated_by  text NOT NULL,
        recorded_at   timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE hold_deadlines (
        hold_id       text NOT NULL REFERENCES holds (hold_id),
        change_id     text NOT NULL,
        expires_at    timestamptz NOT NULL,
        initiated_by  text NOT NULL,
        recorded_at   timestamptz NOT NULL,
        PRIMARY KEY (hold_id, change_id)
    )
    """,
    *(
        f"""
        CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
        """
        for table in ("holds", "hold_captures", "hold_releases", "hold_deadlines")
    ),
    *(
        f"""
        CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
        """
        for table in ("holds", "hold_captures", "hold_releases", "hold_deadlines")
    ),
    """
    CREATE FUNCTION ledger_pending_follows_events() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad text;
    BEGIN
        WITH moved AS (
            SELECT n.account_id, n.version, n.pending_out, n.overdraft_limit,
                   o.version AS old_version, o.pending_out AS old_pending
              FROM new_heads n JOIN old_heads o ON o.account_id = n.account_id
        ), chain AS (
            SELECT m.*, e.type, e.pending_after, e.balance_after,
                   coalesce(lag(e.pending_after) OVER w, m.old_pending) AS p_pending,
                   lead(e.version) OVER w IS NULL AS last
              FROM moved m
              JOIN public.events e ON e.account_id = m.account_id
               AND e.version > m.old_version AND e.version <= m.version
            WINDOW w AS (PARTITION BY m.account_id ORDER BY e.version)
        ), problems AS (
            SELECT account_id FROM moved
             WHERE version = old_version AND pending_out <> old_pending
            UNION ALL
            SELECT account_id FROM chain
             WHERE (type = 'HoldPlaced' AND pending_after <= p_pending)
                OR (type IN ('HoldCaptured', 'HoldReleased') AND pending_after > p_pending)
                OR (type NOT IN ('HoldPlaced', 'HoldCaptured', 'HoldReleased')
                    AND pending_after <> p_pending)
                OR (type IN ('HoldPlaced', 'Debited', 'HoldCaptured')
                    AND overdraft_limit IS NOT NULL
                    AND balance_after - pending_after < -overdraft_limit)
                OR (last AND pending_after <> pending_out)
        )
        SELECT account_id INTO bad FROM problems LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'write model: the pending amount of account % does not follow '
                'its events', bad USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END;
    $$
    """,
    """
    CREATE TRIGGER accounts_pending_follows_events AFTER UPDATE ON accounts
        REFERENCING OLD TABLE AS old_heads NEW TABLE AS new_heads
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_pending_follows_events()
    """,
    """
    -- A checkpoint stands for the event at its version: its pending amount
    -- is that event's (the prune writes checkpoints before it deletes).
    CREATE FUNCTION ledger_checkpoint_pending() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT e.pending_after INTO NEW.pending FROM public.events e
         WHERE e.account_id = NEW.account_id AND e.version = NEW.version;
        NEW.pending := coalesce(NEW.pending, 0);
        RETURN NEW;
    END;
    $$
    """,
    """
    CREATE TRIGGER account_checkpoints_pending BEFORE INSERT OR UPDATE ON account_checkpoints
        FOR EACH ROW EXECUTE FUNCTION ledger_checkpoint_pending()
    """,
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT ON holds, hold_captures, hold_releases, hold_deadlines
            TO {APP_ROLE};
        GRANT UPDATE (pending_out) ON accounts TO {APP_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        GRANT SELECT ON holds, hold_captures, hold_releases, hold_deadlines TO {READER_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{PRUNER_ROLE}') THEN
        GRANT SELECT ON holds, hold_captures, hold_releases, hold_deadlines TO {PRUNER_ROLE};
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
