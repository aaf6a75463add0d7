"""`ledgerflow api`: the HTTP API (and, later in issue 18, the console) on
one port, served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ledgerflow.api.app import build_app
from ledgerflow.api.tokens import Authenticator, PostgresTokens
from ledgerflow.domain.errors import LedgerError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
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
    try:
        await require_token_table(engine)
    except BaseException:
        await engine.dispose()
        raise
    ledger = await LedgerClient.connect(settings)
    try:
        auth = Authenticator(PostgresTokens(engine), settings.api_token_cache_s)
        yield build_app(settings, ledger, auth)
    finally:
        await ledger.close()
        await engine.dispose()


class ApiMisconfigured(LedgerError):
    """The API cannot do its work with the configuration it was given."""

    type = "ApiMisconfigured"
    exit_code = 2


async def require_token_table(engine: AsyncEngine) -> None:
    """Refuse to start, in words, when the tokens cannot be read (a database
    URL given for every role but no reader URL: the app role may not see
    them), rather than answer 500 to every request."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1 FROM api_tokens LIMIT 0"))
    except DBAPIError as exc:
        raise ApiMisconfigured(
            "the API cannot read its tokens (api_tokens in the default region) with the reader "
            "URL: give LEDGERFLOW_READER_DATABASE_URL[_<REGION>] for the ledgerflow_reader role, "
            f"and run `ledgerflow migrate` ({str(exc.orig).strip().splitlines()[0]})"
        ) from None


#: Open connections (event streams included) one API process serves at once.
API_MAX_CONNECTIONS = 2048


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
            # Beyond this many open connections uvicorn answers 503 at once,
            # rather than letting a flood of slow clients exhaust the process.
            limit_concurrency=API_MAX_CONNECTIONS,
            # SIGTERM waits for requests in flight, but not for ever: every
            # write answers within its deadline, and event streams that
            # follow are cut.
            timeout_graceful_shutdown=math.ceil(settings.api_confirm_within.total_seconds()) + 5,
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
