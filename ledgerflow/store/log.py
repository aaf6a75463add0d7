"""The event log's reads: the one owner of SQL that reads the `events` table.

The append path writes `events` (store/batch.py); everything else that reads
it (the SDK's reads, the projector and rebuild, the archiver and prune,
reconciliation) reads it through the functions here, inside the caller's
connection, so each caller keeps control of its snapshot: a function never
opens a transaction of its own.

Two deliberate exceptions, each with its own SQL: `verify`
(ledgerflow/audit/verify.py), because a proof of the store must not share its
queries with the code it proves, and the benchmarks' history builders, which
write synthetic histories in bulk (docs/ARCHITECTURE.md, "Package layout").

The simple reads are SQLAlchemy Core over `EVENTS` (the table as declared by
migration 0001); the ones built on row comparisons of the global order
(tx_id, position), the transaction horizon or aggregates across tables stay
as SQL text, which says them more plainly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    Row,
    Table,
    Text,
    cast,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from ledgerflow.domain.model import Event
from ledgerflow.store.rows import EVENT_COLUMNS, event_from_row

EVENTS = Table(
    "events",
    MetaData(),
    Column("position", BigInteger, primary_key=True),
    Column("tx_id", BigInteger),
    Column("event_id", UUID(as_uuid=False)),
    Column("type", Text),
    Column("account_id", Text),
    Column("version", BigInteger),
    Column("amount", BigInteger),
    Column("currency", Text),
    Column("balance_after", BigInteger),
    Column("occurred_at", DateTime(timezone=True)),
    Column("recorded_at", DateTime(timezone=True)),
    Column("region", Text),
    Column("initiated_by", Text),
    Column("transfer_id", Text),
    Column("leg", Text),
    Column("counterparty", Text),
    Column("description", Text),
    Column("metadata", JSONB),
    Column("prev_hash", Text),
    Column("hash", Text),
    Column("pending_after", BigInteger),
)


class Place(Protocol):
    """A place in the global order (`TailCursor`, or a reconciliation `Cursor`)."""

    @property
    def tx_id(self) -> int: ...

    @property
    def position(self) -> int: ...


#: Every column, as `event_from_row` reads them.
_ALL = [cast(EVENTS.c.event_id, Text).label("event_id")] + [
    c for c in EVENTS.c if c.name != "event_id"
]

#: Rows of transactions older than the oldest one still running: complete,
#: and nothing committing later can sort before them (`events_below_horizon`).
_BELOW_HORIZON = "tx_id < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"


def _global(cursor: Place) -> Any:
    return tuple_(EVENTS.c.tx_id, EVENTS.c.position) > tuple_(cursor.tx_id, cursor.position)


# -- one account -------------------------------------------------------------


async def account_amounts(
    conn: AsyncConnection, account_id: str, until: datetime
) -> list[tuple[int, int, str, int | None]]:
    """(version, amount, currency, pending_after) of the account's events
    recorded until `until`, in version order: what a replay folds. Read by
    the driver itself, whose records are built while it reads, so a caller
    in a snapshot can end it as soon as the rows are in (building a million
    events inside it idled the session past the server's timeout)."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    rows = await raw.fetch(
        "SELECT version, amount, currency, pending_after FROM events "
        "WHERE account_id = $1 AND recorded_at <= $2 ORDER BY version",
        account_id, until,
    )  # fmt: skip
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def account_events(
    conn: AsyncConnection,
    account_id: str,
    *,
    after_version: int = 0,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> list[Event]:
    """The account's hot events in version order: after `after_version`,
    recorded in [since, until] where given."""
    query = select(*_ALL).where(EVENTS.c.account_id == account_id)
    if after_version:
        query = query.where(EVENTS.c.version > after_version)
    if since is not None:
        query = query.where(EVENTS.c.recorded_at >= since)
    if until is not None:
        query = query.where(EVENTS.c.recorded_at <= until)
    query = query.order_by(EVENTS.c.version)
    if limit is not None:
        query = query.limit(limit)
    return [event_from_row(r) for r in await conn.execute(query)]


async def last_event_at(
    conn: AsyncConnection, account_id: str, instant: datetime, *, strict: bool = False
) -> tuple[int, int] | None:
    """(version, balance_after) of the account's last hot event recorded at
    or before `instant` (strictly before when `strict`).

    Per account, recorded_at grows with version (both are set under the
    account's row lock and never go back: PostingBatch.post), so the newest
    (recorded_at, version) at or before T is the last event at T: a single
    backward probe of the (account_id, recorded_at, version) index."""
    at = EVENTS.c.recorded_at < instant if strict else EVENTS.c.recorded_at <= instant
    row = (
        await conn.execute(
            select(EVENTS.c.version, EVENTS.c.balance_after)
            .where(EVENTS.c.account_id == account_id, at)
            .order_by(EVENTS.c.recorded_at.desc(), EVENTS.c.version.desc())
            .limit(1)
        )
    ).first()
    return (row.version, row.balance_after) if row is not None else None


#: What open holds toward an account reserve (as of :t, when given): each
#: hold placed toward it, less what its captures took, unless it ended.
#: (Here because the point-in-time probe asks it in its one statement.)
PENDING_IN_SQL = (
    "SELECT coalesce(sum(h.amount - coalesce(("
    "  SELECT sum(c.consumed) FROM hold_captures c WHERE c.hold_id = h.hold_id "
    "  AND c.status = 'captured' AND c.recorded_at <= coalesce(:t, c.recorded_at)), 0)), 0) "
    "FROM holds h WHERE h.to_account = :id AND h.status = 'placed' "
    "AND h.recorded_at <= coalesce(:t, h.recorded_at) "
    "AND NOT EXISTS (SELECT 1 FROM hold_releases r WHERE r.hold_id = h.hold_id "
    "  AND r.recorded_at <= coalesce(:t, r.recorded_at))"
)
_ACCOUNT_AS_OF = text(
    "SELECT a.currency, e.version, e.balance_after, e.pending_after, "
    f"({PENDING_IN_SQL}) AS pending_in FROM accounts AS a "
    "LEFT JOIN LATERAL (SELECT version, balance_after, pending_after FROM events "
    "  WHERE account_id = a.account_id AND recorded_at <= :t "
    "  ORDER BY recorded_at DESC, version DESC LIMIT 1) AS e ON true "
    "WHERE a.account_id = :id"
)


async def account_with_last_event(
    conn: AsyncConnection, account_id: str, instant: datetime
) -> Row[Any] | None:
    """The account's currency with `last_event_at` (version and
    balance_after, both None when nothing hot is at or before `instant`) and
    what open holds toward it reserved then (`pending_in`, as
    `views.pending_in` reads it), in one statement: one round trip and one
    snapshot. None when the account does not exist."""
    return (await conn.execute(_ACCOUNT_AS_OF, {"id": account_id, "t": instant})).first()


async def is_hot_past(conn: AsyncConnection, account_id: str, version: int, after: Place) -> bool:
    """Whether the account's `version` is in the hot store, past `after`."""
    row = (
        await conn.execute(
            select(EVENTS.c.position).where(
                EVENTS.c.account_id == account_id, EVENTS.c.version == version, _global(after)
            )
        )
    ).first()
    return row is not None


# -- the global order ----------------------------------------------------------


async def events_below_horizon(conn: AsyncConnection, after: Place, limit: int) -> list[Event]:
    """The global-order tail (docs/ARCHITECTURE.md, "Global order").

    Contract: every event is delivered exactly once, in one total order that
    every reader sees alike. That order is *not* each account's version order
    (a transaction's id is taken at its first lock, before it waits for the
    second): a consumer that needs per-account order sorts by (account_id,
    version) within what it has read.

    Only rows written by transactions older than the oldest one still running
    (`pg_snapshot_xmin`) are returned. Those transactions are all finished,
    and any transaction that commits later has an id at or above that horizon,
    so it sorts after everything returned here: ordering by (tx_id, position)
    and resuming after the last row read can never skip a late commit.
    """
    rows = await conn.execute(
        text(
            f"SELECT {EVENT_COLUMNS} FROM events "
            f"WHERE (tx_id, position) > (:tx_id, :position) AND {_BELOW_HORIZON} "
            "ORDER BY tx_id, position LIMIT :limit"
        ),
        {"tx_id": after.tx_id, "position": after.position, "limit": limit},
    )
    return [event_from_row(r) for r in rows]


async def places_below_horizon(conn: AsyncConnection, after: Place, limit: int) -> list[Row[Any]]:
    """(tx_id, position, recorded_at) of up to about `limit` events past
    `after` below the horizon, never ending inside a transaction: when the
    page is full, the rest of its last transaction follows (below the horizon
    it is complete). An archive segment and a reconciliation page both hold
    whole transactions, so both legs of a posting always land together."""
    page = list(
        await conn.execute(
            text(
                "SELECT tx_id, position, recorded_at FROM events "
                f"WHERE (tx_id, position) > (:tx, :pos) AND {_BELOW_HORIZON} "
                "ORDER BY tx_id, position LIMIT :limit"
            ),
            {"tx": after.tx_id, "pos": after.position, "limit": limit},
        )
    )
    if page and len(page) >= limit:
        tail = page[-1]
        page += await conn.execute(
            text(
                "SELECT tx_id, position, recorded_at FROM events "
                "WHERE tx_id = :tx AND position > :pos ORDER BY position"
            ),
            {"tx": tail.tx_id, "pos": tail.position},
        )
    return page


async def events_in_range(conn: AsyncConnection, after: Place, through: Place) -> list[Event]:
    """The events after `after` up to and including `through`, in the global order."""
    rows = await conn.execute(
        select(*_ALL)
        .where(
            _global(after),
            tuple_(EVENTS.c.tx_id, EVENTS.c.position) <= tuple_(through.tx_id, through.position),
        )
        .order_by(EVENTS.c.tx_id, EVENTS.c.position)
    )
    return [event_from_row(r) for r in rows]


async def event_hashes_in_range(
    conn: AsyncConnection, after: Place, through: Place
) -> list[tuple[str, str, int, str]]:
    """(event id, account, version, hash) of `events_in_range`'s events: what
    an archived copy is held to (its hash covers the rest)."""
    rows = await conn.execute(
        select(_ALL[0], EVENTS.c.account_id, EVENTS.c.version, EVENTS.c.hash).where(
            _global(after),
            tuple_(EVENTS.c.tx_id, EVENTS.c.position) <= tuple_(through.tx_id, through.position),
        )
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def hashes_digest(rows: Iterable[tuple[str, str, int, str]]) -> str:
    """SHA-256 over (event id, account, version, hash) rows in their order,
    one line each, the account length-prefixed so no two sequences of rows
    share the bytes: `event_hashes_digest` computes the same in PostgreSQL."""
    lines = "".join(f"{e} {len(a)}:{a} {v} {h}\n" for e, a, v, h in rows)
    return hashlib.sha256(lines.encode()).hexdigest()


async def event_hashes_digest(
    conn: AsyncConnection, after: Place, through: Place
) -> tuple[int, str]:
    """How many events `event_hashes_in_range` would return, and
    `hashes_digest` of their rows in the global order, computed where they
    are: two values cross the wire where the rows would be thousands. A
    verifier compares them with its own copy's and reads the rows only when
    they differ."""
    row = (
        await conn.execute(
            text(
                "SELECT count(*) AS n, encode(sha256(convert_to(coalesce(string_agg("
                "event_id::text || ' ' || length(account_id)::text || ':' || account_id "
                "|| ' ' || version::text || ' ' || hash || E'\\n', '' "
                "ORDER BY tx_id, position), ''), 'UTF8')), 'hex') AS digest "
                "FROM events WHERE (tx_id, position) > (:atx, :apos) "
                "AND (tx_id, position) <= (:ttx, :tpos)"
            ),
            {"atx": after.tx_id, "apos": after.position, "ttx": through.tx_id,
             "tpos": through.position},
        )
    ).one()  # fmt: skip
    return int(row.n), str(row.digest)


@dataclass(frozen=True)
class Backlog:
    """Events past a cursor: how many, and the oldest one's age by the
    database's clock (0 when there are none)."""

    events: int
    oldest: datetime | None
    age_seconds: float


async def backlog(
    conn: AsyncConnection, after: Place, *, older_than_s: float | None = None
) -> Backlog:
    """The events past `after` (only those at least `older_than_s` old, when given)."""
    age_filter = (
        "AND recorded_at <= now() - make_interval(secs => :age)" if older_than_s is not None else ""
    )
    row = (
        await conn.execute(
            text(
                "SELECT count(*) AS n, min(recorded_at) AS oldest, "
                "coalesce(extract(epoch FROM now() - min(recorded_at)), 0) AS age "
                f"FROM events WHERE (tx_id, position) > (:tx, :pos) {age_filter}"
            ),
            {"tx": after.tx_id, "pos": after.position, "age": older_than_s},
        )
    ).one()
    return Backlog(int(row.n), row.oldest, max(0.0, float(row.age)))


async def hot_events(conn: AsyncConnection) -> int:
    """How many events the hot store holds."""
    return int((await conn.execute(select(func.count()).select_from(EVENTS))).scalar_one())


# -- what other tables derive from the log -------------------------------------------


async def events_past_heads(conn: AsyncConnection, heads: str) -> list[Event]:
    """Every committed event past what `heads` (SQL: `account_id, version`
    rows, one per account) holds, up to each account's head, in (account_id,
    version) order: what a rebuilt view still lacks."""
    columns = ", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))
    rows = await conn.execute(
        text(
            f"SELECT {columns} "
            f"FROM accounts a LEFT JOIN ({heads}) h ON h.account_id = a.account_id "
            "JOIN events e ON e.account_id = a.account_id "
            "AND e.version > coalesce(h.version, 0) AND e.version <= a.version "
            "WHERE a.version > coalesce(h.version, 0) ORDER BY e.account_id, e.version"
        )
    )
    return [event_from_row(row) for row in rows]


async def index_segment_accounts(
    conn: AsyncConnection, segment_no: int, after: Place, through: Place
) -> None:
    """Record which accounts an archive segment (the events after `after`
    through `through`) holds, with their version range and last balance: what
    point-in-time reads need once the segment is pruned."""
    await conn.execute(
        text(
            "INSERT INTO archive_account_index (account_id, segment_no, events, "
            "first_version, last_version, first_recorded_at, last_recorded_at, "
            "last_balance, last_pending) "
            "SELECT account_id, :no, count(*), min(version), max(version), "
            "min(recorded_at), max(recorded_at), "
            "(array_agg(balance_after ORDER BY version DESC))[1], "
            "(array_agg(pending_after ORDER BY version DESC))[1] FROM events "
            "WHERE (tx_id, position) > (:ftx, :fpos) "
            "AND (tx_id, position) <= (:ttx, :tpos) "
            "GROUP BY account_id ON CONFLICT DO NOTHING"
        ),
        {
            "no": segment_no,
            "ftx": after.tx_id,
            "fpos": after.position,
            "ttx": through.tx_id,
            "tpos": through.position,
        },
    )


# -- sums as of a place in the global order ----------------------------------------

#: Events at or before (:t1, :p1) in the global order.
_AS_OF = "tx_id <= :t1 AND (tx_id, position) <= (:t1, :p1)"


async def totals_as_of(conn: AsyncConnection, upto: Place) -> dict[str, int]:
    """Postings per currency as of `upto`; pruned ones through their checkpoints."""
    rows = await conn.execute(
        text(
            "SELECT currency, sum(total)::bigint AS total FROM ("
            f"  SELECT currency, sum(amount) AS total FROM events WHERE {_AS_OF} "
            "   GROUP BY currency"
            "  UNION ALL SELECT currency, sum(balance) FROM account_checkpoints GROUP BY currency"
            ") t GROUP BY currency ORDER BY currency"
        ),
        {"t1": upto.tx_id, "p1": upto.position},
    )
    return {r.currency: int(r.total) for r in rows}


async def balances_as_of(
    conn: AsyncConnection, account_ids: list[str], upto: Place
) -> dict[str, int]:
    """The accounts' balances as of `upto` (checkpoint plus hot postings)."""
    if not account_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT a.account_id, coalesce(k.balance, 0) + coalesce(("
            "  SELECT sum(e.amount) FROM events e WHERE e.account_id = a.account_id "
            f"  AND {_AS_OF.replace('tx_id', 'e.tx_id').replace('position', 'e.position')}"
            "), 0) AS balance "
            "FROM unnest(CAST(:ids AS text[])) AS a (account_id) "
            "LEFT JOIN account_checkpoints k ON k.account_id = a.account_id"
        ),
        {"ids": account_ids, "t1": upto.tx_id, "p1": upto.position},
    )
    return {r.account_id: int(r.balance) for r in rows}


async def postings_in(
    conn: AsyncConnection, account_ids: list[str], after: Place, through: Place
) -> list[Row[Any]]:
    """The transfer postings on `account_ids` after `after` through
    `through`, in the global order, with the transfer's kind: (transfer_id,
    account_id, amount, currency, recorded_at, kind)."""
    if not account_ids:
        return []
    return list(
        await conn.execute(
            text(
                "SELECT e.transfer_id, e.account_id, e.amount, e.currency, e.recorded_at, t.kind "
                "FROM events e LEFT JOIN transfers t ON t.transfer_id = e.transfer_id "
                "WHERE e.account_id = ANY(:ids) AND e.tx_id BETWEEN :t0 AND :t1 "
                "AND (e.tx_id, e.position) > (:t0, :p0) AND (e.tx_id, e.position) <= (:t1, :p1) "
                "AND e.transfer_id IS NOT NULL ORDER BY e.tx_id, e.position"
            ),
            {
                "ids": account_ids,
                "t0": after.tx_id,
                "p0": after.position,
                "t1": through.tx_id,
                "p1": through.position,
            },
        )
    )
