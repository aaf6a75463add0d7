"""The schema defends itself against the roles that write to it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Issue 12 found three ways a worker's role could make the ledger lie:

* **The write model could drift from the events.** The app role may update
  an account's version, balance and head hash (the append does), so it could
  also set any balance. Now a statement-level trigger checks every INSERT
  and UPDATE of `accounts` against the events: a new account starts at
  version 1 with a balance of 0 and its `AccountOpened` event; an update
  either leaves version, balance, head hash and head time alone, or moves
  them forward to the event at the new version, and every event in between
  links to the one before it (previous hash, running balance, non-decreasing
  `recorded_at`, the account's currency, never below its overdraft limit).
  The append already writes exactly that, so nothing honest is refused.
* **Events could be placed behind the readers' cursors.** `tx_id` and
  `position` had defaults a writer could override (`OVERRIDING SYSTEM
  VALUE`, an explicit `tx_id`), putting a row behind the projector's,
  archiver's and reconciler's cursors where no reader would ever see it.
  Now a BEFORE INSERT trigger assigns both (the current transaction's id and
  the next value of the position sequence) and refuses a row that brings
  its own.
* **An event could be left out of its account's chain**, taking the next
  honest posting's version and wedging the account: a deferred constraint
  trigger requires every new event to be covered by its account's head by
  the commit.
* **Temporary objects could shadow the ledger's tables** for unqualified
  names: the guard functions name every relation with its schema, and
  PUBLIC may not create temporary objects.
* **History could be erased without being archived.** The app role could
  insert an archive segment marked verified and call `ledger_prune_through`.
  Now only the pruner role (`ledgerflow_pruner`) may mark a segment verified
  (`ledger_mark_segment_verified`, after downloading it) and prune; the app
  role can plan and record segments but never vouch for them.

`accounts.head_recorded_at` (the `recorded_at` of the account's head event)
is new: the append takes each posting's `recorded_at` as the later of the
database clock and the heads of both accounts, so a clock that steps back
can never make an account's history run backwards.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APP_ROLE = "ledgerflow_app"
READER_ROLE = "ledgerflow_reader"
PRUNER_ROLE = "ledgerflow_pruner"

STATEMENTS = [
    # -- the head's time -----------------------------------------------------
    "ALTER TABLE accounts ADD COLUMN head_recorded_at timestamptz",
    """
    UPDATE accounts a SET head_recorded_at = coalesce(
        (SELECT e.recorded_at FROM events e
          WHERE e.account_id = a.account_id AND e.version = a.version),
        (SELECT k.recorded_at FROM account_checkpoints k
          WHERE k.account_id = a.account_id AND k.version = a.version),
        a.opened_at)
    """,
    "ALTER TABLE accounts ALTER COLUMN head_recorded_at SET NOT NULL",
    # -- the database places every row in the global order -------------------
    """
    DO $$
    DECLARE
        last bigint;
        called boolean;
    BEGIN
        -- Carry the identity's counter over: positions of pruned events are
        -- never handed out again.
        SELECT last_value, is_called INTO last, called FROM events_position_seq;
        ALTER TABLE events ALTER COLUMN position DROP IDENTITY;
        CREATE SEQUENCE events_position_seq OWNED BY events.position;
        PERFORM setval('events_position_seq', last, called);
    END
    $$
    """,
    "ALTER TABLE events ALTER COLUMN tx_id DROP DEFAULT",
    "ALTER TABLE transfers ALTER COLUMN tx_id DROP DEFAULT",
    """
    -- Why: readers tail by (tx_id, position) below the transaction horizon
    -- (DESIGN.md section 4, first pitfall). That is only sound if every row's
    -- tx_id is the transaction that wrote it; a row with an older tx_id or a
    -- reused position would sit behind every reader's cursor, unseen.
    CREATE FUNCTION ledger_place_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.tx_id IS NOT NULL OR NEW.position IS NOT NULL THEN
            RAISE EXCEPTION 'an event''s tx_id and position are chosen by the database'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        NEW.tx_id := pg_current_xact_id()::text::bigint;
        NEW.position := nextval('public.events_position_seq');
        RETURN NEW;
    END;
    $$
    """,
    """
    CREATE FUNCTION ledger_place_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.tx_id IS NOT NULL THEN
            RAISE EXCEPTION 'a transfer record''s tx_id is chosen by the database'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        NEW.tx_id := pg_current_xact_id()::text::bigint;
        RETURN NEW;
    END;
    $$
    """,
    """
    CREATE TRIGGER events_placed BEFORE INSERT ON events
        FOR EACH ROW EXECUTE FUNCTION ledger_place_event()
    """,
    """
    CREATE TRIGGER transfers_placed BEFORE INSERT ON transfers
        FOR EACH ROW EXECUTE FUNCTION ledger_place_transfer()
    """,
    # -- the write model follows the events -----------------------------------
    """
    -- Statement-level with transition tables: one set-based check per
    -- statement (a group-committed append updates up to 128 accounts in one),
    -- fired after the whole statement, so it sees the events that the same
    -- statement inserted.
    CREATE FUNCTION ledger_accounts_opened() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad text;
    BEGIN
        SELECT n.account_id INTO bad FROM new_heads n
          LEFT JOIN public.events e ON e.account_id = n.account_id AND e.version = 1
         WHERE n.version <> 1 OR n.balance <> 0 OR e.position IS NULL
            OR e.type <> 'AccountOpened' OR e.prev_hash <> repeat('0', 64)
            OR e.hash <> n.head_hash OR e.recorded_at <> n.head_recorded_at
            OR e.currency <> n.currency OR e.balance_after <> 0
         LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'write model: account % does not follow its AccountOpened event', bad
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END;
    $$
    """,
    """
    CREATE FUNCTION ledger_accounts_follow_events() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad text;
    BEGIN
        -- One pass over the accounts the statement moved and their new events
        -- (an index range scan per account), each event compared with the one
        -- before it: the old head for the first, its predecessor for the rest.
        WITH moved AS (
            SELECT n.account_id, n.version, n.balance, n.head_hash, n.head_recorded_at,
                   o.version AS old_version, o.balance AS old_balance,
                   o.head_hash AS old_hash, o.head_recorded_at AS old_recorded_at,
                   o.currency, o.overdraft_limit
              FROM new_heads n JOIN old_heads o ON o.account_id = n.account_id
             WHERE n.version > o.version
        ), chain AS (
            SELECT m.*, e.version AS e_version, e.amount, e.balance_after, e.currency AS e_currency,
                   e.prev_hash, e.hash, e.recorded_at,
                   coalesce(lag(e.version) OVER w, m.old_version) AS p_version,
                   coalesce(lag(e.hash) OVER w, m.old_hash) AS p_hash,
                   coalesce(lag(e.balance_after) OVER w, m.old_balance) AS p_balance,
                   coalesce(lag(e.recorded_at) OVER w, m.old_recorded_at) AS p_recorded_at,
                   lead(e.version) OVER w IS NULL AS last
              FROM moved m
              JOIN public.events e ON e.account_id = m.account_id
               AND e.version > m.old_version AND e.version <= m.version
            WINDOW w AS (PARTITION BY m.account_id ORDER BY e.version)
        ), problems AS (
            SELECT account_id FROM chain
             WHERE e_version <> p_version + 1 OR prev_hash <> p_hash
                OR balance_after - amount <> p_balance OR recorded_at < p_recorded_at
                OR e_currency <> currency
                OR (overdraft_limit IS NOT NULL AND balance_after < -overdraft_limit)
                OR (last AND (e_version, balance_after, hash, recorded_at)
                             <> (version, balance, head_hash, head_recorded_at))
            UNION ALL
            -- an account moved to a version with no events up to it at all
            SELECT m.account_id FROM moved m
             WHERE NOT EXISTS (SELECT 1 FROM chain c
                                WHERE c.account_id = m.account_id AND c.last)
            UNION ALL
            SELECT n.account_id FROM new_heads n
              LEFT JOIN old_heads o ON o.account_id = n.account_id
             WHERE o.account_id IS NULL
                OR (n.currency, n.region, n.opened_at) <> (o.currency, o.region, o.opened_at)
                OR n.overdraft_limit IS DISTINCT FROM o.overdraft_limit
                OR n.version < o.version
                OR (n.version = o.version
                    AND (n.balance, n.head_hash, n.head_recorded_at)
                        <> (o.balance, o.head_hash, o.head_recorded_at))
        )
        SELECT account_id INTO bad FROM problems LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'write model: account % does not follow its events', bad
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END;
    $$
    """,
    """
    CREATE TRIGGER accounts_opened AFTER INSERT ON accounts
        REFERENCING NEW TABLE AS new_heads
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_accounts_opened()
    """,
    """
    CREATE TRIGGER accounts_follow_events AFTER UPDATE ON accounts
        REFERENCING OLD TABLE AS old_heads NEW TABLE AS new_heads
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_accounts_follow_events()
    """,
    """
    -- Every event is part of its account's chain by the end of the transaction
    -- that wrote it: an event the head was not moved onto would take the next
    -- honest posting's version and wedge the account (a unique violation on
    -- every retry). Deferred to the commit, because the append inserts the
    -- events before it moves the heads (in one statement, but the bench's bulk
    -- loads use COPY and then move the heads).
    CREATE FUNCTION ledger_event_in_chain() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM public.accounts a
                        WHERE a.account_id = NEW.account_id AND a.version >= NEW.version) THEN
            RAISE EXCEPTION 'event % of account % is not in its chain: the account''s head was '
                'not moved onto it', NEW.version, NEW.account_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END;
    $$
    """,
    """
    CREATE CONSTRAINT TRIGGER events_in_chain AFTER INSERT ON events
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_event_in_chain()
    """,
    """
    -- No temporary objects: a temporary table or sequence named like one of
    -- the ledger's would shadow it for anything that names it unqualified.
    -- (The guards above name everything with its schema as well.)
    DO $$
    BEGIN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    END
    $$
    """,
    """
    CREATE TRIGGER accounts_kept BEFORE DELETE ON accounts
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()
    """,
    # -- only the pruner vouches for the archive ------------------------------
    """
    -- Called by the pruner after it downloaded the segment and compared it
    -- with the hot store event by event (ledgerflow.archive.prune).
    CREATE FUNCTION ledger_mark_segment_verified(p_segment bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    BEGIN
        UPDATE archive_segments SET verified_at = now()
         WHERE segment_no = p_segment AND status = 'archived' AND verified_at IS NULL;
        RETURN FOUND;
    END;
    $$
    """,
    "REVOKE ALL ON FUNCTION ledger_mark_segment_verified(bigint) FROM PUBLIC",
    # -- the archive reads the object versions it recorded ---------------------
    """
    -- On a versioned bucket a new version can be put over a locked object (the
    -- lock keeps the old version, not the key): the archive records the
    -- version it wrote and read back, and reads that one (issue 13, finding 12).
    ALTER TABLE archive_segments
        ADD COLUMN segment_version_id text,
        ADD COLUMN manifest_version_id text,
        ADD COLUMN digest_version_id text
    """,
    # -- nothing is pruned that no reconciliation run has checked -------------
    """
    -- Where each reconciliation run's check of this region ended (issue 13,
    -- finding 6). Append-only, written by the reconciling workflow once its
    -- report is stored; the prune function goes no further than the newest.
    CREATE TABLE reconciled_through (
        report_id   text PRIMARY KEY,
        tx_id       bigint NOT NULL,
        position    bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )
    """,
    """
    CREATE INDEX reconciled_through_order_idx ON reconciled_through (tx_id DESC, position DESC)
    """,
    """
    CREATE TRIGGER reconciled_through_append_only
        BEFORE UPDATE OR DELETE ON reconciled_through
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE OR REPLACE FUNCTION ledger_prune_through(p_segment bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        seg archive_segments%ROWTYPE;
        views projection_checkpoints%ROWTYPE;
        checked reconciled_through%ROWTYPE;
        deleted bigint;
    BEGIN
        -- One prune at a time per database (two would compute the same cut).
        PERFORM pg_advisory_xact_lock(hashtext('ledgerflow.prune'));
        SELECT * INTO seg FROM archive_segments WHERE segment_no = p_segment;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'archive segment % does not exist', p_segment;
        END IF;
        IF EXISTS (SELECT 1 FROM archive_segments WHERE segment_no <= p_segment
                   AND (status <> 'archived' OR verified_at IS NULL)) THEN
            RAISE EXCEPTION 'archive segments up to % are not all archived and verified', p_segment;
        END IF;
        -- Never prune what the read models have not seen: a rebuild could not
        -- bring it back.
        SELECT * INTO views FROM projection_checkpoints WHERE name = 'views';
        IF NOT FOUND OR (views.tx_id, views.position) < (seg.to_tx_id, seg.to_position) THEN
            RAISE EXCEPTION 'segment % is ahead of the read models'' checkpoint', p_segment;
        END IF;
        -- Nor what no reconciliation run has checked: its clearing legs could
        -- never be matched afterwards.
        SELECT * INTO checked FROM reconciled_through ORDER BY tx_id DESC, position DESC LIMIT 1;
        IF NOT FOUND OR (checked.tx_id, checked.position) < (seg.to_tx_id, seg.to_position) THEN
            RAISE EXCEPTION 'segment % is ahead of what reconciliation has checked', p_segment;
        END IF;
        INSERT INTO account_checkpoints AS c
            (account_id, version, balance, currency, hash, recorded_at, segment_no)
        SELECT e.account_id, e.version, e.balance_after, e.currency, e.hash, e.recorded_at,
               p_segment
        FROM (
            SELECT b.account_id,
                   CASE WHEN h.first_hot IS NULL THEN b.last_archived
                        ELSE LEAST(b.last_archived, h.first_hot - 1) END AS version
            FROM (SELECT account_id, max(version) AS last_archived FROM events
                  WHERE (tx_id, position) <= (seg.to_tx_id, seg.to_position)
                  GROUP BY account_id) b
            LEFT JOIN (SELECT account_id, min(version) AS first_hot FROM events
                       WHERE (tx_id, position) > (seg.to_tx_id, seg.to_position)
                       GROUP BY account_id) h USING (account_id)
        ) cut
        JOIN events e ON e.account_id = cut.account_id AND e.version = cut.version
        ON CONFLICT (account_id) DO UPDATE
            SET version = excluded.version, balance = excluded.balance, hash = excluded.hash,
                recorded_at = excluded.recorded_at, segment_no = excluded.segment_no,
                updated_at = now()
            WHERE c.version < excluded.version;
        PERFORM set_config('ledgerflow.pruning', 'on', true);
        DELETE FROM statement_view s USING account_checkpoints c
            WHERE s.account_id = c.account_id AND s.version <= c.version;
        DELETE FROM events e USING account_checkpoints c
            WHERE e.account_id = c.account_id AND e.version <= c.version;
        GET DIAGNOSTICS deleted = ROW_COUNT;
        PERFORM set_config('ledgerflow.pruning', 'off', true);
        UPDATE archive_segments SET pruned_at = now()
            WHERE segment_no <= p_segment AND pruned_at IS NULL;
        RETURN deleted;
    END;
    $$
    """,
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT USAGE ON SEQUENCE events_position_seq TO {APP_ROLE};
        GRANT SELECT ON alembic_version TO {APP_ROLE};
        REVOKE UPDATE ON accounts FROM {APP_ROLE};
        GRANT UPDATE (version, balance, head_hash, head_recorded_at, status)
            ON accounts TO {APP_ROLE};
        -- The app role plans and records segments; it never vouches for them.
        REVOKE INSERT, UPDATE ON archive_segments FROM {APP_ROLE};
        GRANT INSERT (segment_no, status, first_seq, last_seq, event_count, from_tx_id,
                      from_position, to_tx_id, to_position, first_recorded_at,
                      last_recorded_at, cutoff, segment_key, manifest_key, digest_key,
                      retain_until)
            ON archive_segments TO {APP_ROLE};
        GRANT UPDATE (status, segment_sha256, manifest_sha256, prev_digest, digest, manifest,
                      archived_at, segment_version_id, manifest_version_id, digest_version_id)
            ON archive_segments TO {APP_ROLE};
        REVOKE EXECUTE ON FUNCTION ledger_prune_through(bigint) FROM {APP_ROLE};
        GRANT SELECT, INSERT ON reconciled_through TO {APP_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{PRUNER_ROLE}') THEN
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO {PRUNER_ROLE};
        GRANT EXECUTE ON FUNCTION ledger_prune_through(bigint) TO {PRUNER_ROLE};
        GRANT EXECUTE ON FUNCTION ledger_mark_segment_verified(bigint) TO {PRUNER_ROLE};
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
