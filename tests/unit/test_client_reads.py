"""The SDK's reads ride out a database restart, then fail typed."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import InternalError, OperationalError, ProgrammingError

from ledgerflow.domain.errors import StoreUnavailable
from ledgerflow.reads import reading


def _failing(error: Exception, times: int) -> tuple[list[int], object]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "row"

    return calls, call


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT", {}, ConnectionResetError()),
        InternalError("SELECT", {}, Exception("another operation is in progress")),
        ConnectionRefusedError(),
        # A connection a restarting server broke between the connect and the
        # query: asyncpg's own protocol error, raised by the bare driver
        # (`locate`'s connection). Found by the simulator, seed 22, round 4.
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 11; another operation (2) is in progress"
        ),
    ],
)
async def test_a_read_retries_through_an_unreachable_database(error: Exception) -> None:
    calls, call = _failing(error, times=2)
    assert await reading(call, window=5) == "row"  # type: ignore[arg-type]
    assert len(calls) == 3


async def test_a_read_that_never_reaches_the_database_is_typed() -> None:
    calls, call = _failing(OperationalError("SELECT", {}, ConnectionRefusedError()), times=99)
    with pytest.raises(StoreUnavailable, match=r"^cannot reach PostgreSQL: ") as caught:
        await reading(call, window=0.5)  # type: ignore[arg-type]
    assert 2 <= len(calls) < 10
    assert "\n" not in caught.value.message


async def test_a_window_of_zero_tries_once() -> None:
    calls, call = _failing(ConnectionRefusedError("refused"), times=99)
    with pytest.raises(StoreUnavailable, match="refused"):
        await reading(call, window=0)  # type: ignore[arg-type]
    assert len(calls) == 1


async def test_a_wrong_query_is_not_retried() -> None:
    calls, call = _failing(ProgrammingError("SELECT", {}, Exception("no such column")), times=1)
    with pytest.raises(ProgrammingError):
        await reading(call, window=5)  # type: ignore[arg-type]
    assert len(calls) == 1


async def test_a_connection_lost_inside_a_bare_driver_error_is_retried() -> None:
    """Found by the simulator (a PostgreSQL restart): SQLAlchemy wraps
    asyncpg's "connection was closed in the middle of operation", met during
    the connection handshake, in a bare `DBAPIError`."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    lost = DBAPIError("connect", {}, Exception("connection was closed in the middle of operation"))
    lost.__cause__ = asyncpg.exceptions.ConnectionDoesNotExistError("closed")
    calls, call = _failing(lost, times=2)
    assert await reading(call, window=5) == "row"  # type: ignore[arg-type]
    assert len(calls) == 3
    wrong = DBAPIError("SELECT", {}, Exception("division by zero"))
    wrong.__cause__ = asyncpg.exceptions.DivisionByZeroError("division by zero")
    calls, call = _failing(wrong, times=1)
    with pytest.raises(DBAPIError):
        await reading(call, window=5)  # type: ignore[arg-type]
    assert len(calls) == 1


class OneQueryAtATime:
    """A driver connection that, like asyncpg's, refuses a second query in flight."""

    def __init__(self) -> None:
        self.busy = False
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed

    async def fetchrow(self, query: str, account_id: str) -> dict[str, str] | None:
        import asyncio

        import asyncpg

        if self.busy:
            raise asyncpg.exceptions.InterfaceError("another operation is in progress")
        self.busy = True
        await asyncio.sleep(0.01)
        self.busy = False
        return {"region": "us"} if account_id.startswith("alice") else None

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - asyncpg's signature
        raise ConnectionResetError("the server is gone")  # closing cannot say goodbye

    def terminate(self) -> None:
        self.closed = True


async def test_concurrent_locates_share_one_connection_one_query_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found in review: concurrent `locate` calls on one client opened a
    connection each (leaking all but one) or ran two queries at once on the
    cached one."""
    import asyncio

    from ledgerflow import reads
    from ledgerflow.config import Settings

    opened: list[OneQueryAtATime] = []

    async def connect(*args: object, **kwargs: object) -> OneQueryAtATime:
        await asyncio.sleep(0.01)
        opened.append(OneQueryAtATime())
        return opened[-1]

    monkeypatch.setattr(reads.asyncpg, "connect", connect)
    side = reads.DatabaseReads(Settings.from_env({"LEDGERFLOW_REGIONS": "us"}))
    found = await asyncio.gather(*(side.locate(f"alice{i}") for i in range(6)))
    assert found == ["us"] * 6 and len(opened) == 1
    await side.close()  # (with a server that is gone: terminated, no error)
    assert opened[0].closed


async def test_what_is_not_a_lost_connection_is_not_retried() -> None:
    import ssl

    import asyncpg

    from ledgerflow.domain.errors import ArchiveUnavailable

    archive_down = ArchiveUnavailable("the archive is unreachable")
    archive_down.__cause__ = ConnectionRefusedError()
    for error in (archive_down, ssl.SSLCertVerificationError("certificate verify failed")):
        calls, call = _failing(error, times=1)
        with pytest.raises(type(error)):
            await reading(call, window=5)  # type: ignore[arg-type]
        assert len(calls) == 1
    calls, call = _failing(asyncpg.exceptions.AdminShutdownError("terminating connection"), 1)
    assert await reading(call, window=5) == "row"  # type: ignore[arg-type]
