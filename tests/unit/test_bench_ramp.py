"""`bench e2e`'s ramp: each workload climbs until it has missed two rates in
a row, and the others climb on without it."""

from __future__ import annotations

from collections.abc import Callable

from ledgerflow.bench.e2e import Load, LoadResult, ramp


def capped(name: str, limit: float, calls: list[tuple[str, float]]) -> Load:
    """A workload that completes whatever is offered up to `limit` per second."""

    async def load(
        rate: float, seconds: float, progress: Callable[[str], None] | None
    ) -> LoadResult:
        calls.append((name, rate))
        done = min(rate, limit)
        return LoadResult(name, rate, seconds, int(done * seconds), 0, done, 1.0, 1.0, 1.0, 1.0)

    return load


async def test_each_workload_leaves_after_two_misses_and_the_others_climb_on() -> None:
    calls: list[tuple[str, float]] = []
    loads = {
        "ledger": capped("ledger", 45, calls),
        "ceiling": capped("ceiling", 75, calls),
        "baseline": capped("baseline", 30, calls),
    }
    lines: list[str] = []
    results = await ramp(loads, [20, 40, 50, 60, 70, 80, 90, 100], 10.0, lines.append)
    offered = {name: [rate for who, rate in calls if who == name] for name in loads}
    assert offered["baseline"] == [20, 40, 50]  # missed 40 and 50
    assert offered["ledger"] == [20, 40, 50, 60]  # missed 50 and 60
    assert offered["ceiling"] == [20, 40, 50, 60, 70, 80, 90]  # missed 80 and 90; 100 not run
    assert [(r.workload, r.offered_per_s) for r in results] == calls
    assert lines[:3] == [
        "ledger at 20/s for 10 s",
        "ceiling at 20/s for 10 s",
        "baseline at 20/s for 10 s",
    ]


async def test_one_miss_between_sustained_rates_keeps_a_workload_in() -> None:
    calls: list[tuple[str, float]] = []
    noisy = capped("ledger", 1000, calls)

    async def once_noisy(
        rate: float, seconds: float, progress: Callable[[str], None] | None
    ) -> LoadResult:
        result = await noisy(rate, seconds, progress)
        if rate == 30:  # one overloaded sample
            return LoadResult("ledger", rate, seconds, 0, 0, 0.0, 1.0, 1.0, 1.0, 1.0)
        return result

    results = await ramp({"ledger": once_noisy}, [20, 30, 40, 50], 1.0, lambda _: None)
    assert [r.offered_per_s for r in results] == [20, 30, 40, 50]
    assert [r.sustained for r in results] == [True, False, True, True]
