"""The read side of the SDK: what `LedgerClient` reads, behind one interface.

`LedgerClient` writes through Temporal only; everything it reads (where an
account lives, its balance, its past, its trail, its statement) goes through
a `ReadSide`. `DatabaseReads` reads the regions' databases as the read-only
role (and the S3 archive for pruned history), which is what an application
inside the ledger's network uses today; a remote read side (the HTTP API of
a later issue) implements the same interface, so an application needs no
more credentials than its role.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import asyncpg

from ledgerflow.config import Settings
from ledgerflow.domain.errors import (
    AccountNotFound,
    InvalidRequest,
    LedgerError,
    StoreUnavailable,
)
from ledgerflow.domain.holds import CaptureResult, HoldState, ReleaseResult
from ledgerflow.domain.model import Account, require_id

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ledgerflow.archive.reader import ArchiveReader
    from ledgerflow.audit.point_in_time import BalanceAsOf
    from ledgerflow.audit.trail import AuditTrail
    from ledgerflow.projections.views import Balance, StatementLine
    from ledgerflow.store.holds import HoldRecords

T = TypeVar("T")
MAX_STATEMENT_PAGE = 1000
#: How long a read keeps retrying a database it cannot reach (a restart, a
#: failover) before it raises `StoreUnavailable`.
READ_RETRY_S = 15.0
#: The driver's errors for the same, which SQLAlchemy may wrap in a bare
#: `DBAPIError` ("connection was closed in the middle of operation" while a
#: restarting server hangs up during the handshake).
_DRIVER_UNREACHABLE = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,  # "connection is closed"
    # "cannot switch to state …; another operation (2) is in progress": the
    # protocol still consuming an error a restarting server sent on a fresh
    # connection. The connection is dropped (`_home_in`); a read may retry.
    asyncpg.exceptions.InternalClientError,
)


class ReadSide(Protocol):
    """Everything the SDK reads. Each method raises `AccountNotFound` for an
    account that does not exist and `StoreUnavailable` when the ledger cannot
    be read right now."""

    async def locate(self, account_id: str) -> str:
        """The account's home region."""
        ...

    async def account(self, account_id: str) -> Account: ...

    async def balance(self, account_id: str) -> Balance:
        """From the read model (it may lag the write by moments)."""
        ...

    async def balance_as_of(self, account_id: str, as_of: datetime) -> BalanceAsOf: ...

    async def audit(self, account_id: str, start: datetime, end: datetime) -> AuditTrail: ...

    async def statement(
        self, account_id: str, *, after_version: int = 0, limit: int = 100
    ) -> list[StatementLine]: ...

    async def hold(self, hold_id: str) -> HoldState | None:
        """Where a hold stands (None if no hold has that id)."""
        ...

    async def capture(self, hold_id: str, capture_id: str) -> CaptureResult | None:
        """A capture's recorded outcome (None if it was never recorded)."""
        ...

    async def release(self, hold_id: str) -> ReleaseResult | None:
        """A hold's void or expiry, if it ended so."""
        ...

    async def close(self) -> None: ...


#: Where an account lives: its region's own row, or the global directory's.
HOME_QUERY = "SELECT region FROM accounts WHERE account_id = $1"
DIRECTORY_QUERY = "SELECT region FROM global_directory WHERE account_id = $1"


def _unreachable(exc: BaseException) -> bool:
    """Whether a read failed because the server or the connection is gone
    (a restart, a failover), not because of the query, the data or a
    misconfiguration. SQLAlchemy's OperationalError, InterfaceError and
    InternalError say so, as does a bare DBAPIError whose connection was
    invalidated or whose cause is the driver's own "connection lost". A
    ledger error (an archive that cannot be read, say) is never this, and
    neither is a TLS failure (a certificate does not heal by waiting)."""
    if isinstance(exc, LedgerError | ssl.SSLError):
        return False
    if isinstance(exc, (OSError, *_DRIVER_UNREACHABLE)):
        return True
    sqlalchemy = sys.modules.get("sqlalchemy.exc")  # (loaded by whoever raised it)
    if sqlalchemy is not None and isinstance(exc, sqlalchemy.DBAPIError):
        gone = (sqlalchemy.OperationalError, sqlalchemy.InterfaceError, sqlalchemy.InternalError)
        if isinstance(exc, gone) or exc.connection_invalidated:
            return True
    cause = exc.__cause__ or exc.__context__
    while cause is not None:  # asyncpg's own words, under SQLAlchemy's wrapping
        if isinstance(cause, LedgerError | ssl.SSLError):
            return False
        if isinstance(cause, (OSError, *_DRIVER_UNREACHABLE)):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _first_line(exc: BaseException) -> str:
    """The driver's own words, on one line (not SQLAlchemy's wrapping)."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


async def reading(call: Callable[[], Awaitable[T]], *, window: float = READ_RETRY_S) -> T:
    """Run a read, riding out a database restart for up to `window` seconds."""
    deadline = time.monotonic() + window
    delay = 0.1
    while True:
        try:
            return await call()
        except Exception as exc:
            if not _unreachable(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise StoreUnavailable(f"cannot reach PostgreSQL: {_first_line(exc)}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class DatabaseReads:
    """Reads the regions' databases directly, as the read-only role."""

    def __init__(self, settings: Settings, *, read_retry_s: float = READ_RETRY_S) -> None:
        self.settings = settings
        #: How long a read rides out an unreachable database (0: one attempt).
        self.read_retry_s = read_retry_s
        self._engines: dict[str, AsyncEngine] = {}
        self._archives: dict[str, ArchiveReader] = {}
        #: One plain driver connection per region for `locate`, which every
        #: transfer needs: no SQLAlchemy on a command's or a service's hot path.
        self._locators: dict[str, asyncpg.Connection] = {}
        self._locating: dict[str, asyncio.Lock] = {}
        #: Homes found so far (an account never moves).
        self.homes: dict[str, str] = {}

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.dispose()
        for conn in self._locators.values():
            try:  # politely, but never waiting on a server that is gone
                await conn.close(timeout=2)
            except Exception:
                conn.terminate()
        self._engines.clear()
        self._archives.clear()
        self._locators.clear()

    def engine(self, region: str) -> AsyncEngine:
        from ledgerflow.store.postgres import create_engine

        if region not in self._engines:
            self._engines[region] = create_engine(
                self.settings.reader_url(region), self.settings, pool_size=2, pre_ping=True
            )
        return self._engines[region]

    def archive(self, region: str) -> ArchiveReader:
        """Reads the region's archived (possibly pruned) history back from S3."""
        if region not in self._archives:
            from ledgerflow.archive.objectstore import S3ObjectStore
            from ledgerflow.archive.reader import ArchiveReader

            self._archives[region] = ArchiveReader(
                self.engine(region), S3ObjectStore.from_settings(self.settings)
            )
        return self._archives[region]

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        return await reading(call, window=self.read_retry_s)

    async def locate(self, account_id: str) -> str:
        require_id(account_id, "account_id")
        if account_id in self.homes:
            return self.homes[account_id]
        # The global directory first (fed by the event stream, in the default
        # region): one query instead of one per region; every region only for
        # an account it has not seen yet.
        with contextlib.suppress(Exception):
            found = await self._home_in(self.settings.stream_region, account_id, DIRECTORY_QUERY)
            if found is not None:
                self.homes[account_id] = home = str(found["region"])
                return home
        for region in self.settings.regions:
            row = await self._read(functools.partial(self._home_in, region, account_id))
            if row is not None:
                self.homes[account_id] = home = str(row["region"])
                return home
        raise AccountNotFound(f"account {account_id!r} does not exist", account_id=account_id)

    async def _home_in(self, region: str, account_id: str, query: str = HOME_QUERY) -> Any:
        url = self.settings.reader_url(region)
        if urlsplit(url).query:
            # Options in the URL (`?ssl=require`, a pgbouncer's statement
            # cache size) are SQLAlchemy's to read, not a raw DSN's.
            return await self._home_in_engine(region, account_id, query)
        async with self._locating.setdefault(region, asyncio.Lock()):
            # One query at a time on a connection (asyncpg refuses more).
            conn = self._locators.get(region)
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(
                    url.replace("+asyncpg://", "://", 1),
                    timeout=self.settings.db_pool_timeout_s,
                    command_timeout=self.settings.db_statement_timeout_ms / 1000,
                    server_settings={"application_name": "ledgerflow"},
                )
                self._locators[region] = conn
            try:
                row = await conn.fetchrow(query, account_id)
            except BaseException:
                # A connection that failed once (a restart) is not used again.
                self._locators.pop(region, None)
                conn.terminate()
                raise
            return None if row is None else {"region": row["region"]}

    async def _home_in_engine(self, region: str, account_id: str, query: str) -> Any:
        from sqlalchemy import text

        async with self.engine(region).connect() as conn:
            row = (await conn.execute(text(query.replace("$1", ":id")), {"id": account_id})).first()
            return None if row is None else {"region": row.region}

    async def account(self, account_id: str) -> Account:
        from ledgerflow.store.postgres import PostgresEventStore

        region = await self.locate(account_id)
        account = await self._read(
            lambda: PostgresEventStore(self.engine(region), region).get_account(account_id)
        )
        if account is None:
            raise AccountNotFound(f"account {account_id!r} does not exist", account_id=account_id)
        return account

    async def balance(self, account_id: str) -> Balance:
        from ledgerflow.projections.views import get_balance

        region = await self.locate(account_id)
        balance = await self._read(lambda: get_balance(self.engine(region), account_id))
        if balance is None:
            raise AccountNotFound(f"account {account_id!r} has no balance yet")
        return balance

    async def balance_as_of(self, account_id: str, as_of: datetime) -> BalanceAsOf:
        from ledgerflow.audit.point_in_time import balance_as_of

        region = await self.locate(account_id)
        return await self._read(
            lambda: balance_as_of(self.engine(region), account_id, as_of, self.archive(region))
        )

    async def audit(self, account_id: str, start: datetime, end: datetime) -> AuditTrail:
        from ledgerflow.audit.trail import audit_trail

        region = await self.locate(account_id)
        return await self._read(
            lambda: audit_trail(self.engine(region), account_id, start, end, self.archive(region))
        )

    async def statement(
        self, account_id: str, *, after_version: int = 0, limit: int = 100
    ) -> list[StatementLine]:
        if not 1 <= limit <= MAX_STATEMENT_PAGE or after_version < 0:
            raise InvalidRequest(
                f"limit must be 1-{MAX_STATEMENT_PAGE} and after_version non-negative"
            )
        from ledgerflow.projections.views import get_statement

        region = await self.locate(account_id)
        return await self._read(
            lambda: get_statement(self.engine(region), account_id, after_version, limit)
        )

    async def _hold_records(self, hold_id: str) -> HoldRecords | None:
        """Everything recorded about a hold, from the region that holds it (a
        hold lives in its held account's region), in one read."""
        from ledgerflow.store.postgres import PostgresEventStore

        for region in self.settings.regions:
            store = PostgresEventStore(self.engine(region), region)
            records = await self._read(functools.partial(store.hold_records, hold_id))
            if records is not None:
                return records
        return None

    async def hold(self, hold_id: str) -> HoldState | None:
        records = await self._hold_records(hold_id)
        return records.state if records else None

    async def capture(self, hold_id: str, capture_id: str) -> CaptureResult | None:
        records = await self._hold_records(hold_id)
        return records.by_capture.get(capture_id) if records else None

    async def release(self, hold_id: str) -> ReleaseResult | None:
        records = await self._hold_records(hold_id)
        return records.release if records else None


if TYPE_CHECKING:  # DatabaseReads is a ReadSide, checked by mypy
    _database: type[ReadSide] = DatabaseReads
