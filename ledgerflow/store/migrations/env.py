"""Alembic environment: runs on the connection `ledgerflow.store.migrate` hands in."""

from alembic import context

from ledgerflow.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with `ledgerflow.store.migrate.upgrade`, not the alembic CLI"
    )
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
