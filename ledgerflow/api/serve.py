"""`ledgerflow api`: the HTTP API (and, later in issue 18, the console) on
one port, served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ledgerflow.api.app import build_app
from ledgerflow.api.tokens import Authenticator, PostgresTokens

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ledgerflow.config import Settings


@contextlib.asynccontextmanager
async def api_app(settings: Settings) -> AsyncIterator[Starlette]:
    """The app with its ledger client and token store, closed afterwards.
    Tokens are read as the reader role from the default region's database."""
    from ledgerflow.client import LedgerClient
    from ledgerflow.store.postgres import create_engine

    engine = create_engine(
        settings.reader_url(settings.default_region), settings, pool_size=2, pre_ping=True
    )
    ledger = await LedgerClient.connect(settings)
    try:
        auth = Authenticator(PostgresTokens(engine), settings.api_token_cache_s)
        yield build_app(settings, ledger, auth)
    finally:
        await ledger.close()
        await engine.dispose()


async def serve(settings: Settings, port: int | None = None) -> None:
    import uvicorn

    async with api_app(settings) as app:
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=port or settings.api_port,
            log_level="warning",
            access_log=False,
            # The API's own limits come first; these bound what reaches them.
            h11_max_incomplete_event_size=16 * 1024,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn sets a flag
            await asyncio.sleep(0.05)
        if server.started:  # (said once it listens: a supervisor may wait for the line)
            print(
                f"ledgerflow api on http://{settings.api_host}:{config.port} "
                "(OpenAPI at /openapi.json)",
                flush=True,
            )
        await serving
