"""The HTTP API served for tests (tests/e2e/test_api.py, tests/browser):
the real app on a real port, over the test servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp
from temporalio.client import Client

from ledgerflow.api.app import build_app
from ledgerflow.api.tokens import Authenticator, PostgresTokens, issue
from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.infra.process import find_free_port
from ledgerflow.store.postgres import create_engine


class Api:
    """The served API and a way to mint tokens."""

    def __init__(self, url: str, tokens: PostgresTokens, settings: Settings) -> None:
        self.url = url
        self.tokens = tokens
        self.settings = settings

    async def token(
        self, principal: str, *scopes: str, prefix: str | None = None, rate: int = 1000
    ) -> str:
        issued = issue(principal, scopes, created_by="test", rate_per_s=rate, account_prefix=prefix)
        await self.tokens.add(issued.record)
        return issued.token

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60)


@contextlib.asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free loopback port (its URL) until the
    block ends."""
    port = find_free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn sets a flag
        await asyncio.sleep(0.05)
    if serving.done():
        serving.result()  # (its reason for not starting)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@contextlib.asynccontextmanager
async def serve_api(settings: Settings, temporal: Client) -> AsyncIterator[Api]:
    """The API app on a free port, over the given Temporal client and the
    settings' databases, until the block ends."""
    owner = create_engine(settings.migration_url(settings.default_region), settings, pool_size=1)
    reader: AsyncEngine = create_engine(
        settings.reader_url(settings.default_region), settings, pool_size=2
    )
    ledger = LedgerClient(temporal, settings)
    # A short cache: the revocation test waits it out.
    app = build_app(settings, ledger, Authenticator(PostgresTokens(reader), cache_s=0.5))
    try:
        async with served(app) as url:
            yield Api(url, PostgresTokens(owner), settings)
    finally:
        await ledger.close()
        await owner.dispose()
        await reader.dispose()
