"""`bench api`: what the HTTP API adds to a transfer's latency over the SDK.

Against the running API (`make run` starts it; the token is its development
token in the state directory, or `--token`), one caller at a time, the same
transfer is posted alternately over HTTP (`POST /v1/transfers`, answered once
confirmed) and through `LedgerClient.transfer`, so both meet the same
machine at the same moment. The overhead is the difference of the medians.

    .venv/bin/ledgerflow bench api --count 200
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ledgerflow.bench.latency import percentile
from ledgerflow.bench.progress import bar
from ledgerflow.client import LedgerClient


@dataclass(frozen=True)
class ApiBenchReport:
    count: int
    api_p50_ms: float
    api_p99_ms: float
    sdk_p50_ms: float
    sdk_p99_ms: float
    added_p50_ms: float
    ratio_p50: float


async def api_bench(
    ledger: LedgerClient, url: str, token: str, count: int, progress: Callable[[str], None]
) -> ApiBenchReport:
    run = uuid.uuid4().hex[:6]
    bank, payee = f"api-{run}-bank", f"api-{run}-payee"
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(payee, "USD")
    samples: dict[str, list[float]] = {"api": [], "sdk": []}
    body = {"from_account": bank, "to_account": payee, "amount": 1, "currency": "USD"}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        for i in range(-10, count):  # ten of each to warm up, not counted
            began = time.perf_counter()
            answer = await http.post(
                "/v1/transfers", json=body, headers={"Idempotency-Key": f"api-{run}-h{i}"}
            )
            took = time.perf_counter() - began
            if answer.status_code != 200 or answer.json().get("status") != "confirmed":
                raise RuntimeError(f"the API answered {answer.status_code}: {answer.text[:300]}")
            began = time.perf_counter()
            await ledger.transfer(f"api-{run}-s{i}", bank, payee, 1, "USD", initiated_by="bench")
            if i >= 0:
                samples["api"].append(took * 1000)
                samples["sdk"].append((time.perf_counter() - began) * 1000)
            if i % 20 == 0:
                progress(f"  {bar(max(i, 0) / count)} {max(i, 0):,} of each")
    api50, sdk50 = percentile(samples["api"], 50), percentile(samples["sdk"], 50)
    return ApiBenchReport(
        count=count,
        api_p50_ms=api50,
        api_p99_ms=percentile(samples["api"], 99),
        sdk_p50_ms=sdk50,
        sdk_p99_ms=percentile(samples["sdk"], 99),
        added_p50_ms=api50 - sdk50,
        ratio_p50=api50 / sdk50,
    )
