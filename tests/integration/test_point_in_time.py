"""Point-in-time truth (invariant 6): the indexed answer equals the replay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from ledgerflow.audit.point_in_time import balance_as_of
from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.store.postgres import PostgresEventStore

Ids = Callable[[str], str]


async def test_an_instant_needs_a_time_zone(store: PostgresEventStore) -> None:
    with pytest.raises(InvalidRequest):
        await balance_as_of(store.engine, "any", datetime(2026, 1, 1))
