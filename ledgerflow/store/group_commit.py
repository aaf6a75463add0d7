"""Group commit: concurrent callers' items written in one transaction.

Each caller awaits its own outcome. At most `writers` batches are in flight;
an item that arrives meanwhile waits for the next batch, which takes
everything queued (up to `max_batch`). There is no timer: a lone caller on an
idle store is written at once, and batches grow only when the database is
the bottleneck, which is when sharing a commit (one WAL flush, one round trip
per statement) pays.

`write` returns one outcome per item, in order: a result, or the exception
that item alone raises (a refused transfer does not fail its neighbours). If
`write` itself raises, the items of a batch of several are written again one
by one, so that one poisonous item cannot keep failing the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class GroupCommit(Generic[I, R]):
    def __init__(
        self,
        write: Callable[[Sequence[I]], Awaitable[Sequence[R | Exception]]],
        max_batch: int,
        writers: int,
    ) -> None:
        if max_batch < 1 or writers < 1:
            raise ValueError("group commit needs max_batch >= 1 and writers >= 1")
        self._write = write
        self.max_batch = max_batch
        self.writers = writers
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def submit(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while self._queue and len(self._in_flight) < self.writers:
            batch = [(i, f) for i, f in self._queue[: self.max_batch] if not f.cancelled()]
            del self._queue[: self.max_batch]
            if not batch:
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._start_batches()

    async def _run(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._outcomes([item for item, _ in batch])
        except BaseException as exc:  # cancelled (the loop is closing): callers learn of it
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the caller gave up; what was written stays written
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _outcomes(self, items: list[I]) -> list[R | Exception]:
        try:
            return list(await self._write(items))
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        outcomes: list[R | Exception] = []
        for item in items:
            try:
                outcomes += list(await self._write([item]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
