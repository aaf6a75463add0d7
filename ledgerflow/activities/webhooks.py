"""The webhook activities: the next events of a subscription from the global
stream, and one signed delivery over HTTP."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ledgerflow.config import Settings
from ledgerflow.domain.messages import DELIVER_WEBHOOK, FETCH_WEBHOOK_EVENTS
from ledgerflow.domain.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    SUBSCRIPTION_HEADER,
    DeliverInput,
    FetchInput,
    Pending,
    sign,
)

#: One delivery's HTTP timeout.
DELIVERY_TIMEOUT_S = 10.0


class WebhookActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._nc: Any = None

    async def _js(self) -> Any:
        from ledgerflow.stream.topology import connect

        if self._nc is None or self._nc.is_closed:
            self._nc = await connect(
                self.settings.nats_url(self.settings.stream_region), name="ledgerflow-webhooks"
            )
        return self._nc.jetstream()

    @activity.defn(name=FETCH_WEBHOOK_EVENTS)
    async def fetch(self, data: FetchInput) -> list[Pending]:
        from ledgerflow.stream.consumer import read_events

        sub = data.subscription
        found: list[Pending] = []
        reader = read_events(
            await self._js(), start=data.after + 1 if data.after else None, region=sub.region,
            account=sub.account, event_type=sub.event_type, batch=data.limit, wait_s=0.5,
        )  # fmt: skip
        async with aclosing(reader):
            async for item in reader:
                found.append(Pending(item.seq, item.event.event_id, item.body.decode()))
                if len(found) >= data.limit:
                    break
        return found

    @activity.defn(name=DELIVER_WEBHOOK)
    async def deliver(self, data: DeliverInput) -> None:
        body = data.event.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(data.subscription.secret, int(time.time()), body),
            EVENT_ID_HEADER: data.event.event_id,
            SUBSCRIPTION_HEADER: data.subscription.subscription_id,
            "User-Agent": "ledgerflow-webhooks",
        }
        request = urllib.request.Request(data.subscription.url, body, headers, method="POST")
        status = await asyncio.to_thread(_post, request)
        if not 200 <= status < 300:
            # Retried with backoff (the workflow's policy), then a dead letter.
            raise ApplicationError(f"{data.subscription.url} answered HTTP {status}")

    def all(self) -> list[Callable[..., Any]]:
        return [self.fetch, self.deliver]


def _post(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        raise ApplicationError(f"{request.full_url} unreachable: {exc}") from None
