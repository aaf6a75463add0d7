"""What can really go wrong with money, counted across every region.

Shared by the fault suite and the simulator. `gather` reads, in every region,
the transfer records and posted legs of the ids in question, the sums per
currency, the read models against the write model, and `verify`; `judge`
compares them with what each id should have done, and counts:

- `lost`: an outcome that should be recorded (or a leg that should be
  posted) is not;
- `posted_twice`: an id posted in more places than its outcome allows (two
  regions, two paths, a local posting and a saga leg);
- `arrival_and_reversal`: a transfer both arrived and was paid back;
- `credited_without_debit`: an arrival whose source leg was never posted;
- `outcome_mismatch`: the recorded outcome is not the expected one;
- `read_model_diverged`: a balance view that, once caught up, disagrees with
  the write model;
- `double_entry`: a currency whose postings do not sum to zero over all
  regions;
- `verify_findings`: what `verify` found in any region.

Each counter can be made non-zero by planting that very state (the
simulator's planted faults do), so none of them is zero by construction.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import text

from ledgerflow.audit.verify import verify_region
from ledgerflow.config import Settings
from ledgerflow.domain.model import base_transfer_id, reversal_id
from ledgerflow.projections.projector import CatchUpProjector
from ledgerflow.store.postgres import create_engine
from ledgerflow.stream.verify import RegionStreamReport


@dataclass(frozen=True)
class Expected:
    """What one transfer id should have done."""

    outcome: str  # confirmed | rejected | reversed | refused (typed error, nothing recorded)
    region: str
    to_region: str | None = None  # None: local


@dataclass
class Facts:
    #: id -> {(region, kind): status} of its transfer records (reversals under the base id)
    records: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    #: id -> {(region, kind)} of postings with both legs posted
    posted: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    sums: Counter[str] = field(default_factory=Counter)
    diverged: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


@dataclass
class Counters:
    lost: int = 0
    posted_twice: int = 0
    arrival_and_reversal: int = 0
    credited_without_debit: int = 0
    outcome_mismatch: int = 0
    outcome_changed: int = 0
    read_model_diverged: int = 0
    double_entry: int = 0
    verify_findings: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return all(
            getattr(self, name) == 0
            for name in (
                "lost", "posted_twice", "arrival_and_reversal", "credited_without_debit",
                "outcome_mismatch", "outcome_changed", "read_model_diverged", "double_entry",
                "verify_findings",
            )
        )  # fmt: skip

    def count(self, name: str, example: str) -> None:
        setattr(self, name, getattr(self, name) + 1)
        if len(self.examples) < 20:
            self.examples.append(f"{name}: {example}")


async def gather(
    settings: Settings, ids: Iterable[str], *, catch_up_s: float = 60.0, verify: bool = True
) -> Facts:
    """Read every region (with fresh pools: a client's may hold connections
    from before a restart)."""
    wanted = sorted(set(ids))
    facts = Facts()
    for region in settings.regions:
        engine = create_engine(settings.database_url(region), settings, pool_size=2)
        try:
            await _caught_up(engine, catch_up_s)
            async with engine.connect() as conn:
                # A leg no longer hot was pruned to the archive if its account's
                # prune checkpoint reaches its instant (events are recorded in
                # order per account); otherwise it is gone (found by the
                # simulator's deleted leg in an account pruned before).
                rows = await conn.execute(
                    text(
                        "SELECT t.transfer_id, t.kind, t.status, "
                        "(SELECT count(*) FROM events e WHERE e.transfer_id = t.transfer_id) "
                        "+ (SELECT count(*) FROM (VALUES (t.from_account, t.debit_event_id), "
                        "   (t.to_account, t.credit_event_id)) AS leg (account_id, event_id) "
                        "   WHERE leg.event_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM events e "
                        "   WHERE e.event_id = leg.event_id) AND EXISTS (SELECT 1 FROM "
                        "   account_checkpoints k WHERE k.account_id = leg.account_id "
                        "   AND k.recorded_at >= t.recorded_at)) AS legs "
                        "FROM transfers t "
                        "WHERE t.transfer_id = ANY(:ids) OR t.transfer_id = ANY(:rev)"
                    ),
                    {"ids": wanted, "rev": [reversal_id(i) for i in wanted]},
                )
                for row in rows:
                    tid = base_transfer_id(row.transfer_id)
                    facts.records.setdefault(tid, {})[(region, row.kind)] = row.status
                    if row.status == "confirmed" and row.legs == 2:
                        facts.posted.setdefault(tid, set()).add((region, row.kind))
                for row in await conn.execute(
                    text("SELECT currency, sum(amount) AS s FROM events GROUP BY currency")
                ):
                    facts.sums[row.currency] += int(row.s)
                for row in await conn.execute(
                    text(
                        "SELECT a.account_id FROM accounts a "
                        "LEFT JOIN balance_view b ON b.account_id = a.account_id "
                        "WHERE (b.balance, b.version) IS DISTINCT FROM (a.balance, a.version)"
                    )
                ):
                    facts.diverged.append(f"{region}/{row.account_id}")
            if verify:
                report = await verify_region(engine, region)
                facts.findings += [str(f) for f in report.findings]
        finally:
            await engine.dispose()
    return facts


async def _caught_up(engine: object, within_s: float) -> None:
    """Wait until the region's catch-up projector has applied everything."""
    projector = CatchUpProjector(engine)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        status = await projector.status()
        if status is not None and status.lag_events == 0:
            return
        await asyncio.sleep(0.5)


def valid_postings(expected: Expected) -> set[tuple[str, str]]:
    """The (region, kind) postings an outcome consists of."""
    if expected.outcome in ("rejected", "refused"):
        return set()
    if expected.to_region is None:
        return {(expected.region, "local")}
    if expected.outcome == "confirmed":
        return {(expected.region, "outbound"), (expected.to_region, "inbound")}
    return {(expected.region, "outbound"), (expected.region, "reversal")}


def judge(
    facts: Facts,
    expected: Mapping[str, Expected],
    observed: Mapping[str, Iterable[str]] | None = None,
) -> Counters:
    """Count what went wrong. `observed`: every outcome each id answered
    with, through every path (they must all be the same)."""
    counters = Counters()
    for tid, want in sorted(expected.items()):
        posted = facts.posted.get(tid, set())
        records = facts.records.get(tid, {})
        valid = valid_postings(want)
        kinds = {kind for _, kind in posted}
        if "inbound" in kinds and "reversal" in kinds:
            counters.count("arrival_and_reversal", tid)
        if "inbound" in kinds and "outbound" not in kinds:
            counters.count("credited_without_debit", tid)
        if posted - valid:
            counters.count("posted_twice", f"{tid}: {sorted(posted)} beyond {sorted(valid)}")
        if valid - posted:
            counters.count("lost", f"{tid}: {sorted(valid - posted)} not posted")
        elif want.outcome == "rejected" and (want.region, _source_kind(want)) not in records:
            counters.count("lost", f"{tid}: its rejection is not recorded")
        recorded = _recorded_outcome(want, records)
        if want.outcome != "refused" and recorded != want.outcome:
            counters.count("outcome_mismatch", f"{tid}: recorded {recorded}, wanted {want.outcome}")
    for tid, seen in sorted((observed or {}).items()):
        distinct = set(seen)
        if len(distinct) > 1:
            counters.count("outcome_changed", f"{tid}: answered {sorted(distinct)}")
    for account in facts.diverged:
        counters.count("read_model_diverged", account)
    for currency, total in sorted(facts.sums.items()):
        if total:
            counters.count("double_entry", f"{currency} sums to {total}")
    for finding in facts.findings:
        counters.count("verify_findings", finding)
    return counters


def _source_kind(want: Expected) -> str:
    return "local" if want.to_region is None else "outbound"


def _recorded_outcome(want: Expected, records: Mapping[tuple[str, str], str]) -> str | None:
    source = records.get((want.region, _source_kind(want)))
    if source is None:
        return None
    if source == "rejected":
        return "rejected"
    if want.to_region is None:
        return "confirmed"
    if records.get((want.region, "reversal")) == "confirmed":
        return "reversed"
    if records.get((want.to_region, "inbound")) == "confirmed":
        return "confirmed"
    return "in_transit"


def by_id(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for tid, outcome in pairs:
        grouped[tid].append(outcome)
    return dict(grouped)


async def stream_reports(settings: Settings, patience_s: float = 120.0) -> list[RegionStreamReport]:
    """Every region's part of the global stream verified against its store,
    once its relay has caught up and the global stream has sourced it all
    (the workers' relays run all along). Raises if one does not catch up."""
    from ledgerflow.stream.status import stream_status
    from ledgerflow.stream.topology import connect
    from ledgerflow.stream.verify import verify_region_stream

    nc = await connect(settings.nats_url(settings.stream_region), name="checks")
    try:
        js = nc.jetstream()
        reports = []
        for region in settings.regions:
            reader = create_engine(settings.reader_url(region), settings, pool_size=1)
            try:
                deadline = asyncio.get_running_loop().time() + patience_s
                while True:
                    status = await stream_status(reader, region, js)
                    if status.lag_events == 0 and status.global_messages == status.region_messages:
                        break
                    if asyncio.get_running_loop().time() > deadline:
                        raise AssertionError(f"the stream of {region} did not catch up: {status}")
                    await asyncio.sleep(0.5)
                reports.append(await verify_region_stream(reader, region, js))
            finally:
                await reader.dispose()
        return reports
    finally:
        await nc.close()
