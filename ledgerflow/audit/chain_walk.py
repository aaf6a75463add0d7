"""The first check of `verify`, the hash-chain walk, over one range of
accounts: in the caller's transaction, or in a process of its own on the
caller's exported snapshot, so that the ranges of a large ledger are proved on
every core at once and all of them see the same ledger.

Each range reads its accounts' events in (account, version) order straight
from the driver, checks them with `AccountChain` (the hashed bytes built from
the columns), and holds the write model's rows of its accounts against the
replay. Memory is one batch of rows and the range's account rows.

Kept to asyncpg and the domain, so that a worker process starts in a blink.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
from asyncio.subprocess import PIPE
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from ledgerflow.domain.hashing import AccountChain, ChainBroken, canonical_content

#: Rows taken from the server at a time.
BATCH_ROWS = 5000


class ChainRow(NamedTuple):
    """An event as the chain needs it: the `Event` fields `AccountChain.feed`
    reads, under the same names, in the order `EVENT_SELECT` gives them."""

    account_id: str
    version: int
    prev_hash: str
    hash: str
    amount: int
    balance_after: int
    recorded_at: datetime
    type: str
    transfer_id: str | None
    metadata: dict[str, Any]
    pending_after: int
    event_id: str
    currency: str
    occurred_at: datetime
    region: str
    initiated_by: str
    leg: str | None
    counterparty: str | None
    description: str | None


_METADATA = ChainRow._fields.index("metadata")
_FIELDS = len(ChainRow._fields)


def instant_sql(column: str) -> str:
    """The instant as `hashing._instant` writes it (UTC, microseconds,
    `+00:00`), formatted by the server, which does it for less."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


EVENT_SELECT = (
    "SELECT account_id, version, prev_hash, hash, amount, balance_after, recorded_at, type, "
    "transfer_id, metadata::text, coalesce(pending_after, 0), event_id::text, currency, "
    "occurred_at, region, initiated_by, leg, counterparty, description, "
    f"{instant_sql('occurred_at')}, {instant_sql('recorded_at')} FROM events"
)

#: (check, account id, version, problem): a `Finding` without its region.
Found = tuple[str, str | None, int | None, str]


@dataclass(frozen=True)
class AccountRange:
    """The accounts with `low <= account_id < high` (an open end is None), in
    the server's own order of account ids."""

    low: str | None = None
    high: str | None = None

    def where(self) -> tuple[str, list[str]]:
        terms, args = [], []
        if self.low is not None:
            args.append(self.low)
            terms.append(f"account_id >= ${len(args)}")
        if self.high is not None:
            args.append(self.high)
            terms.append(f"account_id < ${len(args)}")
        return " AND ".join(terms) or "true", args


@dataclass
class Walked:
    """What one range's walk found."""

    events: int = 0
    accounts: int = 0
    found: list[Found] = field(default_factory=list)


def split(sizes: list[tuple[str, int]], parts: int) -> list[AccountRange]:
    """Cut the account ids (in the server's order, each with its event count)
    into at most `parts` ranges of about equal events. The ranges cover every
    id, also ids of events whose account row is missing."""
    total = sum(n for _, n in sizes)
    if parts <= 1 or not sizes:
        return [AccountRange()]
    cuts: list[str] = []
    seen = 0
    for account_id, n in sizes:
        if seen >= total * (len(cuts) + 1) / parts and len(cuts) < parts - 1:
            cuts.append(account_id)
        seen += n
    bounds: list[str | None] = [None, *cuts, None]
    return [AccountRange(lo, hi) for lo, hi in itertools.pairwise(bounds)]


async def walk(conn: asyncpg.Connection, accounts: AccountRange) -> Walked:
    """Walk every account of the range, inside the connection's transaction."""
    where, args = accounts.where()
    heads = {
        row["account_id"]: row
        for row in await conn.fetch(
            "SELECT account_id, balance, version, head_hash, status, pending_out, "
            f"overdraft_limit FROM accounts WHERE {where}",
            *args,
        )
    }
    # Where a pruned account's hot history resumes (its archived part is
    # checked by `ledgerflow archive verify`).
    checkpoints = {
        row["account_id"]: row
        for row in await conn.fetch(
            "SELECT account_id, version, balance, hash, recorded_at, pending "
            f"FROM account_checkpoints WHERE {where}",
            *args,
        )
    }
    walked = Walked()
    found = walked.found
    broken: set[str] = set()

    def close(chain: AccountChain | None) -> None:
        if chain is None or chain.account_id in broken:
            return
        head = heads.pop(chain.account_id, None)
        if head is None:
            found.append(("write-model", chain.account_id, None,
                          "events exist for an account that is not in accounts"))  # fmt: skip
        elif (head["balance"], head["version"], head["head_hash"]) != (
            chain.balance, chain.version, chain.head,
        ):  # fmt: skip
            found.append(("write-model", chain.account_id, chain.version,
                          f"accounts row says balance {head['balance']} at version "
                          f"{head['version']}; the events replay to {chain.balance} at "
                          f"version {chain.version}"))  # fmt: skip
        elif head["pending_out"] != chain.pending:
            found.append(("write-model", chain.account_id, chain.version,
                          f"accounts row says {head['pending_out']} pending; the events say "
                          f"{chain.pending}"))  # fmt: skip
        elif chain.status is not None and head["status"] != chain.status:
            found.append(("write-model", chain.account_id, chain.version,
                          f"accounts row says {head['status']}; the events say "
                          f"{chain.status}"))  # fmt: skip

    def start_chain(account_id: str) -> AccountChain:
        cp = checkpoints.pop(account_id, None)
        head = heads.get(account_id)
        limit = head["overdraft_limit"] if head is not None else None
        if cp is None:
            return AccountChain(account_id, limit=limit)
        return AccountChain(account_id, cp["version"], cp["balance"], cp["hash"],
                            cp["recorded_at"], cp["pending"], limit)  # fmt: skip

    chain: AccountChain | None = None
    cursor = await conn.cursor(f"{EVENT_SELECT} WHERE {where} ORDER BY account_id, version", *args)
    while records := await cursor.fetch(BATCH_ROWS):
        walked.events += len(records)
        for record in records:
            values = list(record)
            text = values[_METADATA]
            values[_METADATA] = metadata = {} if text == "{}" else json.loads(text)
            row = ChainRow(*values[:_FIELDS])
            body = canonical_content(
                row.account_id, row.amount, row.balance_after, row.counterparty, row.currency,
                row.description, row.event_id, row.initiated_by, row.leg, metadata,
                values[_FIELDS], row.pending_after, values[_FIELDS + 1], row.region,
                row.transfer_id, row.type, row.version,
            )  # fmt: skip
            if chain is None or chain.account_id != row.account_id:
                close(chain)
                chain = start_chain(row.account_id)
                walked.accounts += 1
            if row.account_id in broken:
                continue
            try:
                chain.feed(row, body)
            except ChainBroken as exc:
                broken.add(row.account_id)
                heads.pop(row.account_id, None)
                found.append((exc.check, exc.account_id, exc.version, exc.problem))
    close(chain)
    for account_id in sorted(set(checkpoints) & set(heads)):
        # Every event of the account was pruned: its checkpoint is its state.
        close(start_chain(account_id))
    for account_id in sorted(heads):
        found.append(("write-model", account_id, None, "account has no events"))
    return walked


_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f-]+")


async def walk_elsewhere(dsn: str, snapshot: str, accounts: AccountRange) -> Walked:
    """`walk` in a process of its own (`python -m ledgerflow.audit.chain_walk`),
    on the exported `snapshot`. The job goes in on stdin (the DSN holds a
    password), the result comes back as JSON on stdout."""
    job = {"dsn": dsn, "snapshot": snapshot, "low": accounts.low, "high": accounts.high}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    try:
        out, err = await child.communicate(json.dumps(job).encode())
    except BaseException:
        child.kill()  # cancelled, or the other walks failed: stop this one too
        await child.wait()
        raise
    if child.returncode != 0:
        raise RuntimeError(f"a chain walker failed: {err.decode().strip()[-2000:]}")
    result = json.loads(out)
    return Walked(result["events"], result["accounts"], [tuple(f) for f in result["found"]])


async def _walk_snapshot(job: dict[str, Any]) -> Walked:
    snapshot = job["snapshot"]
    if not _SNAPSHOT_ID.fullmatch(snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    conn = await asyncpg.connect(
        job["dsn"], server_settings={"application_name": "ledgerflow-verify"}
    )
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            return await walk(conn, AccountRange(job["low"], job["high"]))
    finally:
        await conn.close()


if __name__ == "__main__":
    try:
        walked = asyncio.run(_walk_snapshot(json.loads(sys.stdin.read())))
    except Exception as exc:  # the parent raises it, with this line as the reason
        sys.exit(f"{type(exc).__name__}: {exc}")
    json.dump({"events": walked.events, "accounts": walked.accounts, "found": walked.found},
              sys.stdout)  # fmt: skip
