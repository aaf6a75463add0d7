"""The SDK's read side over the HTTP API (`ReadSide` of ledgerflow/reads.py).

    reads = HttpReads("https://ledger.example/", token)
    ledger = await LedgerClient.connect(reads=reads)

An application then needs a token and Temporal, and no database
credentials: `LedgerClient` writes through Temporal as ever and reads here.
A problem the API answers comes back as the same typed error the database
read side raises (`AccountNotFound`, `StoreUnavailable`...), so code written
against one read side runs against the other (tests/e2e/test_api_reads.py
holds both to one contract).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from ledgerflow.audit.point_in_time import BalanceAsOf
from ledgerflow.audit.trail import AuditTrail
from ledgerflow.domain.errors import LedgerError, StoreUnavailable, error_from_type
from ledgerflow.domain.holds import CaptureResult, HoldState, ReleaseResult
from ledgerflow.domain.model import Account, require_id
from ledgerflow.projections.views import Balance, StatementLine
from ledgerflow.wire import revive

T = TypeVar("T")


class HttpReads:
    """Reads through `ledgerflow api` with a read-scoped token."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            trust_env=False,
        )

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = await self.client.get(path, params=params)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"cannot reach the ledger's API: {exc}") from exc
        if response.status_code == 200:
            return response.json()
        try:
            problem = response.json()
            error = error_from_type(problem["error"], problem.get("detail", ""))
        except (ValueError, KeyError, TypeError):
            raise LedgerError(f"the API answered {response.status_code}") from None
        raise error

    async def _maybe(self, path: str) -> Any | None:
        try:
            return await self._get(path)
        except LedgerError as exc:
            if exc.type == "HoldNotFound":
                return None
            raise

    @staticmethod
    def _account_path(account_id: str) -> str:
        return f"/v1/accounts/{quote(require_id(account_id, 'account_id'), safe='')}"

    async def locate(self, account_id: str) -> str:
        return (await self.account(account_id)).region

    async def account(self, account_id: str) -> Account:
        return revive(Account, await self._get(self._account_path(account_id)))

    async def balance(self, account_id: str) -> Balance:
        return revive(Balance, await self._get(self._account_path(account_id) + "/balance"))

    async def balance_as_of(self, account_id: str, as_of: datetime) -> BalanceAsOf:
        answer = await self._get(
            self._account_path(account_id) + "/balance", {"as_of": as_of.isoformat()}
        )
        return revive(BalanceAsOf, answer)

    async def audit(self, account_id: str, start: datetime, end: datetime) -> AuditTrail:
        answer = await self._get(
            self._account_path(account_id) + "/audit",
            {"start": start.isoformat(), "end": end.isoformat()},
        )
        return revive(AuditTrail, answer)

    async def statement(
        self, account_id: str, *, after_version: int = 0, limit: int = 100
    ) -> list[StatementLine]:
        answer = await self._get(
            self._account_path(account_id) + "/statement",
            {"after_version": after_version, "limit": limit},
        )
        return [revive(StatementLine, line) for line in answer["lines"]]

    @staticmethod
    def _hold_path(hold_id: str) -> str:
        return f"/v1/holds/{quote(require_id(hold_id, 'hold_id'), safe='')}"

    async def hold(self, hold_id: str) -> HoldState | None:
        answer = await self._maybe(self._hold_path(hold_id))
        return None if answer is None else revive(HoldState, answer)

    async def capture(self, hold_id: str, capture_id: str) -> CaptureResult | None:
        path = f"{self._hold_path(hold_id)}/captures/{quote(require_id(capture_id, 'capture_id'))}"
        answer = await self._maybe(path)
        return None if answer is None else revive(CaptureResult, answer)

    async def release(self, hold_id: str) -> ReleaseResult | None:
        answer = await self._maybe(self._hold_path(hold_id) + "/release")
        return None if answer is None else revive(ReleaseResult, answer)

    async def close(self) -> None:
        await self.client.aclose()
