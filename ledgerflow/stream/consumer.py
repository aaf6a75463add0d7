"""Reading the global stream: every region's events, filtered by subject,
from a position (the global stream's sequence), a time, or the start; with
a durable named consumer, from where it last acknowledged.

Each event arrives with its hash and previous hash (`StreamEvent.verified`
recomputes the one from the other), its sequence in the global stream and
the time the stream stored it. A durable consumer's events must be
acknowledged (`ack`); one not acknowledged within `ack_wait` comes again,
so a consumer that crashes before acknowledging misses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError

from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.model import Event
from ledgerflow.stream.subjects import GLOBAL_STREAM, decode, filter_subject, hash_matches

#: How long a durable consumer's event may stay unacknowledged before it comes again.
ACK_WAIT = timedelta(seconds=30)


@dataclass(frozen=True)
class StreamEvent:
    event: Event
    #: Its sequence in the global stream (a position to start from).
    seq: int
    subject: str
    #: When the global stream stored it.
    stored_at: datetime
    #: Deliveries so far (more than 1: it came again, unacknowledged).
    delivered: int = 1
    _msg: Msg | None = field(default=None, repr=False, compare=False)

    @property
    def body(self) -> bytes:
        """The message as the stream holds it (what a webhook POSTs)."""
        return self._msg.data if self._msg is not None else b""

    @property
    def verified(self) -> bool:
        """Its hash is its content's, chained to its previous hash."""
        return hash_matches(self.event)

    async def ack(self) -> None:
        """Done with it (a durable consumer's events must be acknowledged)."""
        if self._msg is not None:
            await self._msg.ack()


T = TypeVar("T")

#: How long a JetStream API call is retried while the supercluster elects a
#: leader (a region's server just went away or came back).
API_PATIENCE_S = 30.0


async def jetstream_api(call: Callable[[], Awaitable[T]], patience_s: float = API_PATIENCE_S) -> T:
    """A JetStream API call, retried while the cluster cannot answer yet."""
    deadline = asyncio.get_running_loop().time() + patience_s
    while True:
        try:
            return await call()
        except (NatsTimeout, TimeoutError, ServiceUnavailableError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


def _stream_event(msg: Msg) -> StreamEvent:
    meta = msg.metadata
    return StreamEvent(
        event=decode(msg.data), seq=meta.sequence.stream, subject=msg.subject,
        stored_at=meta.timestamp.astimezone(UTC), delivered=meta.num_delivered, _msg=msg,
    )  # fmt: skip


def consumer_config(
    start: int | datetime | None, subject: str, durable: str | None
) -> ConsumerConfig:
    if isinstance(start, bool) or (isinstance(start, int) and start < 1):
        raise InvalidRequest("a stream position starts at 1", field="from")
    if isinstance(start, datetime) and start.tzinfo is None:
        raise InvalidRequest("a start time needs a time zone", field="since")
    config = ConsumerConfig(
        durable_name=durable, filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT if durable else AckPolicy.NONE,
        ack_wait=ACK_WAIT.total_seconds() if durable else None,
        inactive_threshold=None if durable else 60.0,
        deliver_policy=DeliverPolicy.ALL,
    )  # fmt: skip
    if isinstance(start, int):
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, start
    elif isinstance(start, datetime):
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = start.astimezone(UTC)
    return config


async def read_events(
    js: JetStreamContext,
    *,
    start: int | datetime | None = None,
    region: str | None = None,
    account: str | None = None,
    event_type: str | None = None,
    durable: str | None = None,
    follow: bool = False,
    batch: int = 256,
    wait_s: float = 1.0,
) -> AsyncGenerator[StreamEvent, None]:
    """The global stream's events, in its order. Without `follow`, it ends
    once it has delivered everything stored when it caught up."""
    subject = filter_subject(region, account, event_type)
    config = consumer_config(start, subject, durable)
    sub = await jetstream_api(
        lambda: js.pull_subscribe(subject, durable=durable, stream=GLOBAL_STREAM, config=config)
    )
    try:
        while True:
            try:
                messages = await sub.fetch(batch, timeout=wait_s)
            except (NatsTimeout, TimeoutError, ServiceUnavailableError):
                # Nothing yet, or the cluster electing a leader: ask again
                # (the consumer's state, below, is asked with patience).
                messages = []
            for msg in messages:
                yield _stream_event(msg)
            if len(messages) < batch and not follow:
                info = await jetstream_api(sub.consumer_info)
                if info.num_pending == 0:  # (unacknowledged ones come again later)
                    return
    finally:
        # (A connection already closed took the subscription with it; an
        # ephemeral consumer not deleted in time goes once it is idle.)
        with contextlib.suppress(ConnectionClosedError, NatsTimeout, TimeoutError):
            await sub.unsubscribe()
