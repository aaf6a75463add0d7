"""The DDL guard: the ledger's immutability triggers stay on, even for the owner.

The triggers that make history append-only (migrations 0001-0004) stop every
role that writes rows. But the schema owner owns the tables, and an owner may
`ALTER TABLE events DISABLE TRIGGER ...`, drop a trigger, or replace the
function behind one, and then rewrite history. This guard closes that door:
an event trigger, installed by a superuser (only a superuser can create one,
and only a superuser can drop or disable it), runs after every DDL command in
the database and rolls the command back unless every guard trigger is still
there, enabled, and running the function it ran when the guard was
installed; and unless the functions that authorise deletion (`ledger_prune_*`,
`ledger_mark_segment_verified`) are unchanged.

`ledgerflow migrate` installs it on the embedded PostgreSQL after migrating;
on a production server a DBA runs `HARDEN_SQL` once per region database (it
is idempotent, and never blesses a guard that was changed after it was first
recorded). A later migration that must change a guard asks the DBA to
`ALTER EVENT TRIGGER ledgerflow_guard DISABLE`, migrate, and run
`REFRESH_SQL`.

What the guard cannot stop: a superuser (who can disable it), and the owner
dropping the whole database. Both are caught after the fact: `verify` proves
every chain from the S3 archive (under compliance object lock) and the
digest chain, and a missing region fails reconciliation.
"""

from __future__ import annotations

#: (table, trigger) pairs that keep history immutable and the write model honest.
GUARDED_TRIGGERS: tuple[tuple[str, str], ...] = (
    ("events", "events_append_only"),
    ("events", "events_no_truncate"),
    ("events", "events_placed"),
    ("events", "events_in_chain"),
    ("transfers", "transfers_append_only"),
    ("transfers", "transfers_no_truncate"),
    ("transfers", "transfers_placed"),
    ("accounts", "accounts_opened"),
    ("accounts", "accounts_follow_events"),
    ("accounts", "accounts_kept"),
    ("accounts", "accounts_no_truncate"),
    ("archive_segments", "archive_segments_kept"),
    ("account_checkpoints", "account_checkpoints_kept"),
    ("reconciliation_reports", "reconciliation_reports_append_only"),
    ("reconciled_through", "reconciled_through_append_only"),
)

#: Functions that authorise deletion or vouch for the archive.
GUARDED_FUNCTIONS: tuple[str, ...] = ("ledger_prune_through", "ledger_mark_segment_verified")

_VALUES_TRIGGERS = ", ".join(f"('{t}', '{g}')" for t, g in GUARDED_TRIGGERS)
_VALUES_FUNCTIONS = ", ".join(f"('{f}')" for f in GUARDED_FUNCTIONS)

HARDEN_SQL = f"""
CREATE SCHEMA IF NOT EXISTS ledgerflow_guard;
REVOKE ALL ON SCHEMA ledgerflow_guard FROM PUBLIC;
GRANT USAGE ON SCHEMA ledgerflow_guard TO PUBLIC;
CREATE TABLE IF NOT EXISTS ledgerflow_guard.triggers (
    table_name   text NOT NULL,
    trigger_name text NOT NULL,
    function_md5 text NOT NULL,
    PRIMARY KEY (table_name, trigger_name)
);
CREATE TABLE IF NOT EXISTS ledgerflow_guard.functions (
    function_name text PRIMARY KEY,
    function_md5  text NOT NULL
);
GRANT SELECT ON ledgerflow_guard.triggers, ledgerflow_guard.functions TO PUBLIC;
-- Record each guard as it is now, once: a guard changed after that stays refused.
INSERT INTO ledgerflow_guard.triggers (table_name, trigger_name, function_md5)
SELECT g.table_name, g.trigger_name, md5(pg_get_functiondef(t.tgfoid))
  FROM (VALUES {_VALUES_TRIGGERS}) AS g (table_name, trigger_name)
  JOIN pg_class c ON c.relname = g.table_name
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
  JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = g.trigger_name
ON CONFLICT DO NOTHING;
INSERT INTO ledgerflow_guard.functions (function_name, function_md5)
SELECT g.function_name, md5(pg_get_functiondef(p.oid))
  FROM (VALUES {_VALUES_FUNCTIONS}) AS g (function_name)
  JOIN pg_proc p ON p.proname = g.function_name
  JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'public'
ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION ledgerflow_guard.check() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    broken text;
BEGIN
    SELECT string_agg(g.table_name || '.' || g.trigger_name, ', ') INTO broken
      FROM ledgerflow_guard.triggers g
     WHERE NOT EXISTS (
        SELECT 1 FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid AND c.relname = g.table_name
          JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
         WHERE t.tgname = g.trigger_name AND t.tgenabled IN ('O', 'A')
           AND md5(pg_get_functiondef(t.tgfoid)) = g.function_md5);
    IF broken IS NULL THEN
        SELECT string_agg(g.function_name || '()', ', ') INTO broken
          FROM ledgerflow_guard.functions g
         WHERE NOT EXISTS (
            SELECT 1 FROM pg_proc p
              JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'public'
             WHERE p.proname = g.function_name
               AND md5(pg_get_functiondef(p.oid)) = g.function_md5);
    END IF;
    IF broken IS NOT NULL THEN
        RAISE EXCEPTION 'refused: the ledger''s immutability guards must stay as installed '
            '(append-only history); this command would change %', broken
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END;
$$;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'ledgerflow_guard') THEN
        CREATE EVENT TRIGGER ledgerflow_guard ON ddl_command_end
            EXECUTE FUNCTION ledgerflow_guard.check();
    END IF;
END
$$;
"""

#: After a migration that changed a guard on purpose (the guard disabled by
#: the DBA for it): record the guards as they now are, and switch it back on.
REFRESH_SQL = (
    "TRUNCATE ledgerflow_guard.triggers, ledgerflow_guard.functions;\n"
    + HARDEN_SQL
    + "ALTER EVENT TRIGGER ledgerflow_guard ENABLE;\n"
)
