"""API tokens of the HTTP API, in the default region.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

* `api_tokens`: one row per token: the principal it acts as (recorded as
  `initiated_by` on every write it makes), its scopes (`read`, `write`,
  `admin`), an optional account prefix it is limited to, its rate limit, and
  the SHA-256 of its secret (never the secret: a token is 256 random bits, so
  a plain hash is as strong as a slow one and costs nothing per request).
  Revoking sets `revoked_at`; a row is never deleted, so the trail of who
  could act stays.
* Only the owner writes it (`ledgerflow token create|revoke` is an
  administrator's step, as a migration is); the reader role, which the API
  reads with, may select it. The workers' role has no access at all.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

READER_ROLE = "ledgerflow_reader"

STATEMENTS = [
    """
    CREATE TABLE api_tokens (
        token_id       text PRIMARY KEY,
        principal      text NOT NULL,
        scopes         text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'write', 'admin']),
        account_prefix text,
        rate_per_s     integer NOT NULL CHECK (rate_per_s > 0),
        secret_sha256  text NOT NULL,
        created_at     timestamptz NOT NULL DEFAULT now(),
        created_by     text NOT NULL,
        revoked_at     timestamptz
    )
    """,
]

GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        GRANT SELECT ON api_tokens TO {READER_ROLE};
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
