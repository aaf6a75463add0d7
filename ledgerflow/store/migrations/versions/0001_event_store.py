"""Event store, idempotency records, read models; immutability enforced.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Roles the embedded stack creates. Grants are applied only to roles that
# exist, so a production database may name its roles differently and grant
# by hand (see README, "Configuration").
APP_ROLE = "ledgerflow_app"
READER_ROLE = "ledgerflow_reader"

#: One statement per entry: asyncpg prepares each statement separately.
STATEMENTS = [
    """
    CREATE TABLE accounts (
        account_id      text PRIMARY KEY,
        currency        text NOT NULL,
        region          text NOT NULL,
        overdraft_limit bigint CHECK (overdraft_limit IS NULL OR overdraft_limit >= 0),
        status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
        version         bigint NOT NULL CHECK (version >= 1),
        balance         bigint NOT NULL,
        head_hash       text NOT NULL,
        opened_at       timestamptz NOT NULL,
        metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
        -- A second line of defence for the overdraft policy (invariant 4).
        CONSTRAINT accounts_within_overdraft_limit
            CHECK (overdraft_limit IS NULL OR balance >= -overdraft_limit)
    )
    """,
    """

    CREATE TABLE events (
        position      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tx_id         bigint NOT NULL DEFAULT (pg_current_xact_id()::text)::bigint,
        event_id      uuid NOT NULL UNIQUE,
        type          text NOT NULL CHECK (type IN ('AccountOpened', 'Debited', 'Credited')),
        account_id    text NOT NULL REFERENCES accounts (account_id),
        version       bigint NOT NULL CHECK (version >= 1),
        amount        bigint NOT NULL,
        currency      text NOT NULL,
        balance_after bigint NOT NULL,
        occurred_at   timestamptz NOT NULL,
        recorded_at   timestamptz NOT NULL,
        region        text NOT NULL,
        initiated_by  text NOT NULL,
        transfer_id   text,
        leg           text,
        counterparty  text,
        description   text,
        metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
        prev_hash     text NOT NULL,
        hash          text NOT NULL,
        CONSTRAINT events_account_version_key UNIQUE (account_id, version),
        CONSTRAINT events_transfer_leg_key UNIQUE (transfer_id, leg),
        CONSTRAINT events_sign_check CHECK (
            (type = 'Debited' AND amount < 0) OR (type = 'Credited' AND amount > 0)
            OR (type = 'AccountOpened' AND amount = 0)),
        -- Every posting belongs to a transfer, on the leg its type says; the
        -- unique (transfer_id, leg) then means "each leg at most once".
        CONSTRAINT events_leg_check CHECK (
            (type = 'Debited' AND transfer_id IS NOT NULL AND leg = 'debit')
            OR (type = 'Credited' AND transfer_id IS NOT NULL AND leg = 'credit')
            OR (type = 'AccountOpened' AND transfer_id IS NULL AND leg IS NULL))
    )
    """,
    """
    CREATE INDEX events_tail_idx ON events (tx_id, position)
    """,
    """
    CREATE INDEX events_account_recorded_idx ON events (account_id, recorded_at, version)
    """,
    """

    CREATE TABLE transfers (
        transfer_id        text PRIMARY KEY,
        fingerprint        text NOT NULL,
        status             text NOT NULL CHECK (status IN ('confirmed', 'rejected')),
        region             text NOT NULL,
        from_account       text NOT NULL,
        to_account         text NOT NULL,
        amount             bigint NOT NULL,
        currency           text NOT NULL,
        initiated_by       text NOT NULL,
        description        text,
        metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
        reason_type        text,
        reason             text,
        debit_event_id     uuid,
        credit_event_id    uuid,
        from_balance_after bigint,
        to_balance_after   bigint,
        occurred_at        timestamptz NOT NULL,
        recorded_at        timestamptz NOT NULL,
        tx_id              bigint NOT NULL DEFAULT (pg_current_xact_id()::text)::bigint,
        CONSTRAINT transfers_amount_positive CHECK (amount > 0),
        CONSTRAINT transfers_outcome_complete CHECK (
            (status = 'confirmed' AND debit_event_id IS NOT NULL
                AND credit_event_id IS NOT NULL AND from_balance_after IS NOT NULL
                AND to_balance_after IS NOT NULL AND reason_type IS NULL)
            OR (status = 'rejected' AND reason_type IS NOT NULL AND debit_event_id IS NULL
                AND credit_event_id IS NULL))
    )
    """,
    """
    CREATE INDEX transfers_status_recorded_idx ON transfers (status, recorded_at)
    """,
    """

    CREATE TABLE balance_view (
        account_id text PRIMARY KEY,
        currency   text NOT NULL,
        balance    bigint NOT NULL,
        version    bigint NOT NULL,
        updated_at timestamptz NOT NULL
    )
    """,
    """

    CREATE TABLE statement_view (
        account_id    text NOT NULL,
        version       bigint NOT NULL,
        event_id      uuid NOT NULL,
        type          text NOT NULL,
        transfer_id   text,
        counterparty  text,
        amount        bigint NOT NULL,
        currency      text NOT NULL,
        balance_after bigint NOT NULL,
        recorded_at   timestamptz NOT NULL,
        description   text,
        CONSTRAINT statement_view_pkey PRIMARY KEY (account_id, version)
    )
    """,
    """

    CREATE TABLE projection_checkpoints (
        name           text PRIMARY KEY,
        tx_id          bigint NOT NULL DEFAULT 0,
        position       bigint NOT NULL DEFAULT 0,
        events_applied bigint NOT NULL DEFAULT 0,
        updated_at     timestamptz NOT NULL DEFAULT now(),
        last_error     text
    )
    """,
    """

    -- History is append-only: the database itself refuses to change it, whoever
    -- asks (the app role also lacks the grants). The owner could switch a trigger
    -- off; the DDL guard (ledgerflow/store/guard.py, installed by a superuser)
    -- refuses that, and verify catches what a superuser does behind its back.
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger history is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    """
    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
    """,
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        REVOKE ALL ON events, transfers, accounts FROM {APP_ROLE};
        GRANT SELECT, INSERT ON events, transfers TO {APP_ROLE};
        -- Only what a posting changes: never an account's currency or region.
        GRANT SELECT, INSERT, UPDATE (version, balance, head_hash, status)
            ON accounts TO {APP_ROLE};
        GRANT SELECT, INSERT, UPDATE, DELETE
            ON balance_view, statement_view, projection_checkpoints TO {APP_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE};
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
