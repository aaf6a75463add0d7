"""Alembic environment: runs on the connection `ledgerflow.store.migrate` hands in."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with `ledgerflow.store.migrate.upgrade`, not the alembic CLI"
    )
# The migrations are hand-written SQL (constraints, triggers and grants that
# SQLAlchemy metadata cannot express), so there is no metadata to compare.
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
