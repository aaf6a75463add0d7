"""The baseline's three activities: they do nothing (see workflows/baseline.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity


@activity.defn(name="baseline_withdraw")
async def withdraw(amount: int) -> int:
    return amount


@activity.defn(name="baseline_deposit")
async def deposit(amount: int) -> int:
    return amount


@activity.defn(name="baseline_notify")
async def notify(amount: int) -> int:
    return amount


ALL: list[Callable[..., Any]] = [withdraw, deposit, notify]
