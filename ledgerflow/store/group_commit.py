"""Group commit: concurrent callers' items written in one transaction.

Each caller awaits its own outcome. At most `writers` batches are in flight;
an item that arrives meanwhile waits for the next batch, which takes
everything queued (up to `max_batch`). There is no timer: a lone caller on an
idle store is written at once, and batches grow only when the database is
the bottleneck, which is when sharing a commit (one WAL flush, one round trip
per statement) pays.

`write` gets the batch as `Pending` items and returns one outcome per item,
in order: a result, or the exception that item alone raises (a refused
transfer does not fail its neighbours). If `write` itself raises, the items
of a batch of several are written again one by one, so that one poisonous
item cannot keep failing the others.

A caller that gives up (its task is cancelled: an activity past its
timeout) must not be written afterwards, because a later attempt may already
have answered with another outcome (issue 12, finding 5). Its item is
dropped while queued, skipped by the one-by-one retry, and `write` checks
`Pending.abandoned` at its last moment before writing (for the store: after
the account locks are taken, which is where a batch waits longest) and
answers `CallerGone` for it instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class CallerGone(Exception):
    """The outcome of an item whose caller gave up before it was written: nothing was."""


@dataclass(frozen=True)
class Pending(Generic[I, R]):
    item: I
    future: asyncio.Future[R]

    @property
    def abandoned(self) -> bool:
        """The caller is no longer waiting (cancelled, or answered already)."""
        return self.future.done()


class GroupCommit(Generic[I, R]):
    def __init__(
        self,
        write: Callable[[Sequence[Pending[I, R]]], Awaitable[Sequence[R | Exception]]],
        max_batch: int,
        writers: int,
    ) -> None:
        if max_batch < 1 or writers < 1:
            raise ValueError("group commit needs max_batch >= 1 and writers >= 1")
        self._write = write
        self.max_batch = max_batch
        self.writers = writers
        self._queue: list[Pending[I, R]] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def submit(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(Pending(item, future))
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while self._queue and len(self._in_flight) < self.writers:
            batch = [p for p in self._queue[: self.max_batch] if not p.abandoned]
            del self._queue[: self.max_batch]
            if not batch:
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._start_batches()

    async def _run(self, batch: list[Pending[I, R]]) -> None:
        try:
            outcomes = await self._outcomes(batch)
        except BaseException as exc:  # cancelled (the loop is closing): callers learn of it
            for pending in batch:
                if pending.abandoned:
                    continue
                if isinstance(exc, Exception):
                    pending.future.set_exception(exc)
                else:
                    pending.future.cancel()
            raise
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.abandoned:  # the caller gave up while its item was written
                continue
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    async def _outcomes(self, batch: list[Pending[I, R]]) -> list[R | Exception]:
        try:
            return list(await self._write(batch))
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
        outcomes: list[R | Exception] = []
        for pending in batch:
            if pending.abandoned:
                outcomes.append(CallerGone())
                continue
            try:
                outcomes += list(await self._write([pending]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
