"""GroupCommit without a database: who shares a batch, and whose error is whose."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ledgerflow.store.group_commit import CallerGone, GroupCommit, Pending


class Recorder:
    """A `write` that records its batches and holds each until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def write(self, batch: Sequence[Pending[int, int]]) -> list[int | Exception]:
        items = [p.item for p in batch]
        self.batches.append(items)
        await self.release.wait()
        if 13 in items and len(items) > 1:
            raise RuntimeError("a poisonous item fails its whole transaction")
        if items == [13]:
            raise RuntimeError("poison")
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_callers_that_arrive_while_writers_are_busy_share_the_next_batch() -> None:
    rec = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=3, writers=1)
    first = asyncio.create_task(commit.submit(0))
    await settle()
    assert rec.batches == [[0]], "a lone caller is written at once, without waiting"
    rest = [asyncio.create_task(commit.submit(i)) for i in (2, 4, 6, 8)]
    await settle()
    assert rec.batches == [[0]], "one writer: the others queue behind the batch in flight"
    rec.release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [20, 40, 60, 80]
    assert rec.batches == [[0], [2, 4, 6], [8]], "batches take what is queued, up to max_batch"


async def test_each_caller_gets_its_own_outcome() -> None:
    rec = Recorder()
    rec.release.set()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=10, writers=1)
    outcomes = await asyncio.gather(*(commit.submit(i) for i in range(4)), return_exceptions=True)
    assert outcomes[0] == 0 and outcomes[2] == 20
    assert [str(o) for o in outcomes[1::2]] == ["odd 1", "odd 3"]
    assert all(isinstance(o, ValueError) for o in outcomes[1::2])


async def test_a_failing_batch_is_retried_item_by_item_so_only_the_culprit_fails() -> None:
    rec = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=10, writers=1)
    blocker = asyncio.create_task(commit.submit(0))
    await settle()
    tasks = [asyncio.create_task(commit.submit(i)) for i in (2, 13, 4)]
    await settle()
    rec.release.set()
    await blocker
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert outcomes[0] == 20 and outcomes[2] == 40
    assert isinstance(outcomes[1], RuntimeError) and str(outcomes[1]) == "poison"
    assert rec.batches[1:] == [[2, 13, 4], [2], [13], [4]]


async def test_a_caller_that_gave_up_before_its_batch_started_is_not_written() -> None:
    rec = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=10, writers=1)
    blocker = asyncio.create_task(commit.submit(0))
    await settle()
    quitter = asyncio.create_task(commit.submit(2))
    stayer = asyncio.create_task(commit.submit(4))
    await settle()
    quitter.cancel()
    rec.release.set()
    await blocker
    assert await stayer == 40
    assert rec.batches == [[0], [4]]
    with pytest.raises(asyncio.CancelledError):
        await quitter


async def test_writers_bounds_the_transactions_in_flight() -> None:
    rec = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=1, writers=2)
    tasks = [asyncio.create_task(commit.submit(i)) for i in (0, 2, 4, 6)]
    await settle()
    assert rec.batches == [[0], [2]]
    rec.release.set()
    assert await asyncio.gather(*tasks) == [0, 20, 40, 60]
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(rec.write, max_batch=0, writers=1)


class Abandoning:
    """A `write` that holds each batch until released and records what it was
    still asked to write when it went ahead (the items whose callers wait)."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.gates: list[asyncio.Event] = []
        self.fail_batches = False

    async def write(self, batch: Sequence[Pending[int, int]]) -> list[int | Exception]:
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_batches and len(batch) > 1:
            raise RuntimeError("the batch fails as a whole")
        self.written += [p.item for p in batch if not p.abandoned]
        return [CallerGone() if p.abandoned else p.item for p in batch]

    async def open_gates(self) -> None:
        """Let every write waiting so far go ahead."""
        await settle()
        for gate in self.gates:
            gate.set()
        await settle()


async def test_an_item_whose_caller_gave_up_mid_batch_is_not_written() -> None:
    rec = Abandoning()
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=8, writers=1)
    blocker = asyncio.create_task(commit.submit(0))
    await settle()
    waiting = [asyncio.create_task(commit.submit(i)) for i in (1, 2, 3)]
    await rec.open_gates()
    assert await blocker == 0
    # The second batch (1, 2, 3) is in flight; the caller of 2 gives up.
    waiting[1].cancel()
    await rec.open_gates()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert rec.written == [0, 1, 3]
    assert results[0] == 1 and results[2] == 3


async def test_the_item_by_item_retry_skips_a_caller_that_gave_up() -> None:
    rec = Abandoning()
    rec.fail_batches = True
    commit: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=8, writers=1)
    blocker = asyncio.create_task(commit.submit(0))
    await settle()
    waiting = [asyncio.create_task(commit.submit(i)) for i in (1, 2, 3)]
    await rec.open_gates()  # the blocker is written; (1, 2, 3) then fails as a batch
    assert await blocker == 0
    await rec.open_gates()
    # The retry of 1 is in flight alone; the caller of 2 gives up before its turn.
    waiting[1].cancel()
    for _ in range(4):
        await rec.open_gates()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert rec.written == [0, 1, 3]
    assert results[0] == 1 and results[2] == 3
