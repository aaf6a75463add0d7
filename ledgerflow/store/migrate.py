"""Apply the schema migrations to a region's database (as the owner role)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ledgerflow.config import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any constant works; it only has to be the same for every process.
_MIGRATION_LOCK_KEY = 0x1ED6E4F10


def _run_alembic_upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(url: str) -> None:
    """Bring the database at `url` to the latest schema; safe to call concurrently."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            # Workers and `dev up` may migrate the same database at the same
            # moment; a transaction-scoped advisory lock makes them take turns,
            # and the second finds the schema already at head.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
            await conn.run_sync(_run_alembic_upgrade)
    finally:
        await engine.dispose()


async def upgrade_regions(settings: Settings, regions: list[str] | None = None) -> None:
    for region in regions or list(settings.regions):
        await upgrade(settings.migration_url(region))
