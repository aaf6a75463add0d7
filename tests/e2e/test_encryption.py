"""Payload encryption end to end: with codec keys configured, no account id,
amount, principal or description reaches Temporal in clear (histories,
failures, search attributes), and the codec still reads everything back."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ledgerflow import search_attributes as sa
from ledgerflow.client import LedgerClient
from ledgerflow.codec import ENCODING, new_key
from ledgerflow.config import Settings
from ledgerflow.converter import data_converter
from ledgerflow.domain.errors import InsufficientFunds
from ledgerflow.domain.model import TransferRequest
from ledgerflow.workers.regional import build_worker


@pytest_asyncio.fixture(scope="module")
async def sealed(
    temporal_env: WorkflowEnvironment, migrated: Settings, engines: dict[str, AsyncEngine]
) -> AsyncIterator[LedgerClient]:
    """A client and a `us` worker with encryption on, on task queues of their own."""
    settings = dataclasses.replace(
        migrated, task_queue_prefix="sealed", codec_keys=f"k1:{new_key()}", codec_key_id="k1"
    )
    config = temporal_env.client.config()
    config["data_converter"] = data_converter(settings)
    client = Client(**config)
    async with (
        build_worker(client, settings, "us", engines["us"]),
        LedgerClient(client, settings) as ledger,
    ):
        yield ledger


async def test_no_ledger_data_reaches_temporal_in_clear(
    sealed: LedgerClient, temporal_env: WorkflowEnvironment
) -> None:
    run = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{run}", f"bob-{run}"
    await sealed.open_account(alice, "USD", overdraft_limit=None)
    await sealed.open_account(bob, "USD")
    paid, refused = f"paid-{run}", f"refused-{run}"
    result = await sealed.transfer(
        paid, alice, bob, "12.34", "USD", initiated_by=f"principal-{run}",
        description=f"memo-{run}",
    )  # fmt: skip
    assert result.status == "confirmed" and result.to_balance_after == 1234
    with pytest.raises(InsufficientFunds, match=bob):  # the client still reads the reason
        await sealed.transfer(refused, bob, alice, "99.00", "USD", initiated_by="t")

    plain = temporal_env.client  # no codec: what Temporal stores and shows
    secrets = [alice.encode(), bob.encode(), b"1234", f"memo-{run}".encode(),
               f"principal-{run}".encode()]  # fmt: skip
    for transfer_id in (paid, refused):
        handle = plain.get_workflow_handle(f"transfer-{transfer_id}")
        history = await handle.fetch_history()
        raw = b"".join(event.SerializeToString() for event in history.events)
        leaked = [s for s in secrets if s in raw]
        assert leaked == [], f"in clear in {transfer_id}'s history: {leaked}"
        started = history.events[0].workflow_execution_started_event_attributes
        [payload] = started.input.payloads
        assert payload.metadata["encoding"] == ENCODING
        # The codec reads it back.
        [request] = await sealed.temporal.data_converter.decode([payload], [TransferRequest])
        assert (request.from_account, request.transfer_id) == (
            (alice, paid) if transfer_id == paid else (bob, refused)
        )
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(sa.FROM_ACCOUNT) is None and attributes.get(sa.AMOUNT) is None
        assert attributes.get(sa.STATUS) in ("confirmed", "rejected")
