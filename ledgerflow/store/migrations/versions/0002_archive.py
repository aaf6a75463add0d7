"""The S3 archive's records, per-account checkpoints, and the one way to prune.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

`archive_segments` is the archive's ledger in PostgreSQL: a segment is first
*planned* (its exact range in the global order is fixed before anything is
uploaded, so a rerun after a crash rebuilds byte-identical objects under the
same keys), then *archived* once its objects were uploaded, read back and
checksummed. `archive_account_index` says which segments hold an account's
events, so a point-in-time query over a pruned period downloads one segment,
not the archive. `account_checkpoints` is where an account's history
continues after pruning: the balance, version and hash of its last pruned
event, which the hot store's chain links to.

Events are still append-only. The only DELETE the trigger lets through is the
one `ledger_prune_through` performs (owner's rights, a transaction-local
flag), and only for events at or below their account's checkpoint, which the
function writes only for events in verified segments. The app role has no
DELETE grant on `events` at all.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APP_ROLE = "ledgerflow_app"
READER_ROLE = "ledgerflow_reader"

STATEMENTS = [
    """
    CREATE TABLE archive_segments (
        segment_no        bigint PRIMARY KEY CHECK (segment_no >= 1),
        status            text NOT NULL CHECK (status IN ('planned', 'archived')),
        -- The archive's own gap-free numbering of events: segment n+1 starts
        -- where segment n ended, which is what makes a skip or an overlap visible.
        first_seq         bigint NOT NULL CHECK (first_seq >= 1),
        last_seq          bigint NOT NULL,
        event_count       bigint NOT NULL CHECK (event_count >= 1),
        -- The range in the global order: after (from_*) and up to (to_*) inclusive.
        from_tx_id        bigint NOT NULL,
        from_position     bigint NOT NULL,
        to_tx_id          bigint NOT NULL,
        to_position       bigint NOT NULL,
        first_recorded_at timestamptz NOT NULL,
        last_recorded_at  timestamptz NOT NULL,
        cutoff            timestamptz NOT NULL,
        segment_key       text NOT NULL UNIQUE,
        manifest_key      text NOT NULL UNIQUE,
        digest_key        text NOT NULL UNIQUE,
        retain_until      timestamptz,
        segment_sha256    text,
        manifest_sha256   text,
        prev_digest       text,
        digest            text,
        manifest          jsonb,
        planned_at        timestamptz NOT NULL DEFAULT now(),
        archived_at       timestamptz,
        verified_at       timestamptz,
        pruned_at         timestamptz,
        CONSTRAINT archive_segments_seq_span CHECK (last_seq - first_seq + 1 = event_count),
        CONSTRAINT archive_segments_range
            CHECK ((to_tx_id, to_position) > (from_tx_id, from_position)),
        CONSTRAINT archive_segments_archived_complete CHECK (
            (status = 'planned' AND segment_sha256 IS NULL AND digest IS NULL
                AND archived_at IS NULL AND verified_at IS NULL AND pruned_at IS NULL)
            OR (status = 'archived' AND segment_sha256 IS NOT NULL AND manifest_sha256 IS NOT NULL
                AND digest IS NOT NULL AND prev_digest IS NOT NULL AND manifest IS NOT NULL
                AND archived_at IS NOT NULL)),
        CONSTRAINT archive_segments_pruned_after_verified CHECK (
            pruned_at IS NULL OR verified_at IS NOT NULL)
    )
    """,
    """
    -- At most one segment is in flight per region: archiving is sequential, so
    -- the digest chain has exactly one order.
    CREATE UNIQUE INDEX archive_segments_one_planned ON archive_segments ((true))
        WHERE status = 'planned'
    """,
    """
    CREATE TABLE archive_account_index (
        account_id        text NOT NULL,
        segment_no        bigint NOT NULL REFERENCES archive_segments (segment_no),
        events            bigint NOT NULL,
        first_version     bigint NOT NULL,
        last_version      bigint NOT NULL,
        first_recorded_at timestamptz NOT NULL,
        last_recorded_at  timestamptz NOT NULL,
        last_balance      bigint NOT NULL,
        CONSTRAINT archive_account_index_pkey PRIMARY KEY (account_id, segment_no)
    )
    """,
    """
    CREATE INDEX archive_account_index_time_idx
        ON archive_account_index (account_id, first_recorded_at)
    """,
    """
    CREATE TABLE account_checkpoints (
        account_id  text PRIMARY KEY REFERENCES accounts (account_id),
        version     bigint NOT NULL CHECK (version >= 1),
        balance     bigint NOT NULL,
        currency    text NOT NULL,
        hash        text NOT NULL,
        recorded_at timestamptz NOT NULL,
        segment_no  bigint NOT NULL REFERENCES archive_segments (segment_no),
        updated_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TRIGGER archive_segments_kept BEFORE DELETE ON archive_segments
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    CREATE TRIGGER account_checkpoints_kept BEFORE DELETE ON account_checkpoints
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()
    """,
    """
    -- Events stay append-only; the single exception is pruning (see module doc).
    CREATE FUNCTION ledger_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND current_setting('ledgerflow.pruning', true) = 'on'
           AND EXISTS (SELECT 1 FROM account_checkpoints c
                       WHERE c.account_id = OLD.account_id AND c.version >= OLD.version) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'ledger history is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    "DROP TRIGGER events_append_only ON events",
    """
    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION ledger_events_guard()
    """,
    """
    -- Remove from the hot store the events of verified segments, keeping each
    -- account's history a contiguous version range: the global order is not
    -- each account's version order, so an account is cut at the longest prefix
    -- of versions that lies wholly at or behind the segment's end (a version
    -- still ahead of it keeps every later one hot until a later prune).
    CREATE FUNCTION ledger_prune_through(p_segment bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        seg archive_segments%ROWTYPE;
        views projection_checkpoints%ROWTYPE;
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
    "REVOKE ALL ON FUNCTION ledger_prune_through(bigint) FROM PUBLIC",
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT ON archive_segments, archive_account_index TO {APP_ROLE};
        GRANT UPDATE (status, segment_sha256, manifest_sha256, prev_digest, digest, manifest,
                      archived_at, verified_at)
            ON archive_segments TO {APP_ROLE};
        GRANT SELECT ON account_checkpoints TO {APP_ROLE};
        GRANT EXECUTE ON FUNCTION ledger_prune_through(bigint) TO {APP_ROLE};
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        GRANT SELECT ON archive_segments, archive_account_index, account_checkpoints
            TO {READER_ROLE};
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
