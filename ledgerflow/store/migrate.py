"""Apply the schema migrations to a region's database, as the schema owner.

Migrations are a deploy step (`ledgerflow migrate`, which `make run` and
`ledgerflow dev up` run for you), never something a worker does: a worker
holds only the app role's credentials, and checks at start that its
database's schema is the one its code expects (`require_schema_at_head`).

Migrating as the role that also writes events is refused: that role would
own the tables, and an owner can switch the immutability triggers off.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ledgerflow.config import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any constant works; it only has to be the same for every process.
_MIGRATION_LOCK_KEY = 0x1ED6E4F10


class RoleRefused(ValueError):
    """The configuration would do owner's or pruner's work as a writer's role."""


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this code was written for."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _run_alembic_upgrade(connection: Connection) -> None:
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(url: str) -> None:
    """Bring the database at `url` to the latest schema; safe to call concurrently."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            # Two deploys may migrate the same database at the same moment; a
            # transaction-scoped advisory lock makes them take turns, and the
            # second finds the schema already at head.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
            await conn.run_sync(_run_alembic_upgrade)
    finally:
        await engine.dispose()


def _role(url: str) -> str | None:
    return urlsplit(url).username


def _not_a_writer(url: str, settings: Settings, region: str, work: str, variable: str) -> str:
    """`url`, unless it names no role or the role the workers write events with."""
    role, app = _role(url), _role(settings.database_url(region))
    if role is None or role == app:
        raise RoleRefused(
            f"region {region}: {work} must not run as {app!r}, the role the workers write "
            f"events with; set {variable}[_{region.upper()}]"
        )
    return url


def migration_url(settings: Settings, region: str) -> str:
    """The schema owner's URL for `region`; refused if it is the app role's (that
    role would own the tables and could switch the immutability triggers off)."""
    return _not_a_writer(
        settings.migration_url(region), settings, region,
        "migrations run as the schema owner: they", "LEDGERFLOW_MIGRATION_DATABASE_URL",
    )  # fmt: skip


def pruner_url(settings: Settings, region: str) -> str:
    """The pruner role's URL for `region`; refused if missing or the app role's
    (the role that writes events must not be able to erase them)."""
    return _not_a_writer(
        settings.pruner_url(region), settings, region,
        "pruning runs as the pruner role: it", "LEDGERFLOW_PRUNER_DATABASE_URL",
    )  # fmt: skip


async def upgrade_regions(settings: Settings, regions: list[str] | None = None) -> None:
    chosen = regions or list(settings.regions)
    urls = [migration_url(settings, region) for region in chosen]  # refuse before any change
    for url in urls:
        await upgrade(url)


async def require_schema_at_head(engine: AsyncEngine, region: str) -> None:
    """Raise `SchemaNotCurrent` unless `engine`'s database is migrated to head."""
    head = head_revision()
    try:
        async with engine.connect() as conn:
            current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except DBAPIError as exc:
        if "alembic_version" not in str(exc):
            raise
        current = None
    if current != head:
        raise SchemaNotCurrent(
            f"the database of region {region} is at schema revision {current or 'none'}, "
            f"not {head}: run `ledgerflow migrate` (as the schema owner) first"
        )
