"""The HTTP API served for tests (tests/e2e/test_api.py, tests/browser):
the real app on a real port, over the test servers."""

from __future__ import annotations

import asyncio
import contextlib
import sys
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
from tests.support import stop_process


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


class ApiProcess:
    """`ledgerflow api` as its own process (as deployed), on a port of its
    own; `kill` is SIGKILL, mid-request or not, and `start` brings a new one
    up on the same port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = find_free_port()
        self.env = env | {"LEDGERFLOW_API_PORT": str(self.port)}
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None
        self.kills = 0

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ledgerflow", "api", env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if f":{self.port}" not in line.decode():
            raise RuntimeError(f"`ledgerflow api` did not start: {line!r}")

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
            self.kills += 1

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await stop_process(self.process, 30)
