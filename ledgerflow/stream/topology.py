"""The streams and how to reach them: a stream per region, placed in its
region's cluster, and the global stream, placed in the default region's,
sourcing every region's (docs/STREAM.md). Idempotent: `ensure_streams`
creates what is missing and leaves what exists."""

from __future__ import annotations

from datetime import timedelta

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import Placement, StorageType, StreamConfig, StreamSource
from nats.js.errors import NotFoundError

from ledgerflow.config import Settings
from ledgerflow.stream.subjects import GLOBAL_STREAM, region_stream, region_subjects

#: How long a relay's second copy of an event is recognised and dropped (it
#: resumes from the stream's end besides, so this is the second line).
DUPLICATE_WINDOW = timedelta(minutes=10)


async def connect(url: str, *, name: str = "ledgerflow") -> NatsClient:
    """A connection that reconnects for as long as it takes."""
    return await nats.connect(
        url, name=name, connect_timeout=2, allow_reconnect=True, max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )  # fmt: skip


def region_config(region: str, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=region_stream(region), subjects=[region_subjects(region)],
        storage=StorageType.FILE, num_replicas=replicas, placement=Placement(cluster=region),
        duplicate_window=DUPLICATE_WINDOW.total_seconds(),
        description=f"every event of region {region}, in its order (ledgerflow relay)",
    )  # fmt: skip


def global_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=GLOBAL_STREAM, storage=StorageType.FILE, num_replicas=settings.stream_replicas,
        placement=Placement(cluster=settings.stream_region),
        sources=[StreamSource(name=region_stream(r)) for r in settings.regions],
        description="every region's events: sourced from each region's stream",
    )  # fmt: skip


async def _ensure(js: JetStreamContext, config: StreamConfig) -> None:
    from ledgerflow.stream.consumer import jetstream_api

    name = config.name
    assert name is not None
    try:
        await jetstream_api(lambda: js.stream_info(name))
    except NotFoundError:
        await jetstream_api(lambda: js.add_stream(config))


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    for region in settings.regions:
        await _ensure(js, region_config(region, settings.stream_replicas))
    await _ensure(js, global_config(settings))
