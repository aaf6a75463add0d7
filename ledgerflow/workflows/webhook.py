"""WebhookWorkflow: one subscription, delivering the global stream's events
that match its filter to its URL, each at least once, in stream order.

Its id is `webhook-<subscription id>`, on the default region's task queue.
It fetches the next events after its cursor (an activity reading the
global stream), POSTs each one signed (an activity retried with backoff,
`MAX_ATTEMPTS` times), and moves its cursor past it, delivered or, after
the last attempt, kept as a dead letter: visible in the Web UI
(`LedgerStatus = "dead-letters"` and the summary) and in the `status`
query, and delivered again by the `redeliver` update. The cursor and the
dead letters travel across continue-as-new. `cancel` ends it.

Deterministic code only; activities are called by name.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ledgerflow import search_attributes as sa
    from ledgerflow.domain.errors import LedgerError
    from ledgerflow.domain.messages import DELIVER_WEBHOOK, FETCH_WEBHOOK_EVENTS
    from ledgerflow.domain.webhooks import (
        DeadLetter,
        DeliverInput,
        FetchInput,
        Pending,
        Subscription,
        WebhookState,
        WebhookStatus,
    )
    from ledgerflow.temporal_errors import to_application_error
    from ledgerflow.workflow_names import WEBHOOK_CANCEL, WEBHOOK_REDELIVER, WEBHOOK_STATUS
    from ledgerflow.workflows.policies import RETRY_POLICY


def delivery_retry(subscription: Subscription) -> RetryPolicy:
    """Each event's delivery: the subscription's attempts, backoff doubling
    from its first delay, at most a minute apart."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=subscription.backoff_s), backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=60), maximum_attempts=subscription.max_attempts,
    )  # fmt: skip


#: How often an idle subscription looks for new events.
IDLE_POLL = timedelta(seconds=2)
#: Continue-as-new after this many loop turns (a bounded history).
TURNS_PER_RUN = 200


@workflow.defn
class WebhookWorkflow:
    def __init__(self) -> None:
        self._state: WebhookState | None = None

    @workflow.run
    async def run(self, state: WebhookState) -> WebhookStatus:
        try:
            state = replace(state, subscription=state.subscription.validated())
        except LedgerError as exc:
            raise to_application_error(exc) from None
        self._state = state
        self._show()
        for _ in range(TURNS_PER_RUN):
            if state.cancelled:
                break
            batch: list[Pending] = await workflow.execute_activity(
                FETCH_WEBHOOK_EVENTS, FetchInput(state.subscription, state.cursor),
                result_type=list[Pending], start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RETRY_POLICY,
            )  # fmt: skip
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(lambda: state.cancelled, timeout=IDLE_POLL)
                continue
            for pending in batch:
                if state.cancelled:
                    break
                error = await self._deliver(pending)
                if error is None:
                    state.delivered += 1
                else:
                    state.dead_letters.append(
                        DeadLetter(
                            pending.seq,
                            pending.event_id,
                            error,
                            state.subscription.max_attempts,
                            pending.body,
                        )
                    )
                state.cursor = pending.seq
                self._show()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not state.cancelled:
            workflow.continue_as_new(state)
        return self.status()

    async def _deliver(self, pending: Pending) -> str | None:
        """None once delivered; the last attempt's error otherwise."""
        assert self._state is not None
        try:
            await workflow.execute_activity(
                DELIVER_WEBHOOK, DeliverInput(self._state.subscription, pending),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=delivery_retry(self._state.subscription),
            )  # fmt: skip
        except ActivityError as err:
            cause = err.cause
            return str(cause.message if isinstance(cause, ApplicationError) else cause or err)
        return None

    def _show(self) -> None:
        state = self._state
        assert state is not None
        dead = len(state.dead_letters)
        status = "cancelled" if state.cancelled else "dead-letters" if dead else "delivering"
        if workflow.info().typed_search_attributes.get(sa.STATUS) != status:
            workflow.upsert_search_attributes([sa.STATUS.value_set(status)])
        workflow.set_current_details(
            f"{state.subscription.url}: {state.delivered} delivered, through stream position "
            f"{state.cursor}" + (f"; {dead} dead letter(s)" if dead else "")
        )

    @workflow.update(name=WEBHOOK_REDELIVER)
    async def redeliver(self, event_id: str | None = None) -> int:
        """Deliver dead letters again (all, or the one of `event_id`); how many arrived."""
        assert self._state is not None
        state = self._state
        chosen = [d for d in state.dead_letters if event_id in (None, d.event_id)]
        arrived = 0
        for letter in chosen:
            error = await self._deliver(Pending(letter.seq, letter.event_id, letter.body))
            state.dead_letters.remove(letter)
            if error is None:
                arrived += 1
                state.delivered += 1
            else:
                state.dead_letters.append(
                    replace(
                        letter,
                        error=error,
                        attempts=letter.attempts + state.subscription.max_attempts,
                    )
                )
            self._show()
        return arrived

    @workflow.update(name=WEBHOOK_CANCEL)
    async def cancel(self) -> WebhookStatus:
        assert self._state is not None
        self._state.cancelled = True
        self._show()
        return self.status()

    @workflow.query(name=WEBHOOK_STATUS)
    def status(self) -> WebhookStatus:
        assert self._state is not None
        s = self._state
        return WebhookStatus(s.subscription.subscription_id, s.subscription.url, s.cursor,
                             s.delivered, list(s.dead_letters), s.cancelled)  # fmt: skip
