"""The HTTP API as an ASGI app (Starlette), served by `ledgerflow api`.

Every request is, in this order: authenticated (a bearer token; nothing is
reachable without one), rate limited per token, its body read within the
size limit and parsed strictly, its `Idempotency-Key` checked on writes, and
only then handed to its route (`ledgerflow/api/routes.py`). Every error is
`application/problem+json` with the ledger's stable type
(`ledgerflow/api/problems.py`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledgerflow.api.body import IDEMPOTENCY_KEY, idempotency_key, read_json
from ledgerflow.api.console import COOKIE as CONSOLE_COOKIE
from ledgerflow.api.console import console_routes
from ledgerflow.api.operations import API_ROUTES
from ledgerflow.api.problems import (
    PROBLEM_JSON,
    RETRY_LATER,
    InternalError,
    MethodNotAllowed,
    RouteNotFound,
    problem,
)
from ledgerflow.api.routes import Call, Route
from ledgerflow.api.tokens import ApiToken, Authenticator, RateLimited
from ledgerflow.domain.errors import ConfirmationTimeout, LedgerError
from ledgerflow.wire import plain

if TYPE_CHECKING:
    from ledgerflow.client import LedgerClient
    from ledgerflow.config import Settings

log = logging.getLogger("ledgerflow.api")


@dataclass
class RateLimiter:
    """A token bucket per API token: `rate_per_s` on average, bursts of up to
    twice that. In-process: several API processes each allow the rate."""

    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def admit(self, token: ApiToken, now: float | None = None) -> float:
        """0 if the request may go ahead, else how many seconds to wait."""
        now = time.monotonic() if now is None else now
        capacity = 2.0 * token.rate_per_s
        level, last = self.buckets.get(token.token_id, (capacity, now))
        level = min(capacity, level + (now - last) * token.rate_per_s)
        if level >= 1.0:
            self.buckets[token.token_id] = (level - 1.0, now)
            return 0.0
        self.buckets[token.token_id] = (level, now)
        return (1.0 - level) / token.rate_per_s


#: How much longer than `api_confirm_within` a write may take before the
#: pipeline answers for it (transfers time out on their own first).
WRITE_DEADLINE_GRACE_S = 2.0


def _unobserved(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.info("a write answered after its deadline failed: %r", done.exception())


def problem_response(exc: LedgerError, **extra: Any) -> Response:
    status, body = problem(exc, **extra)
    headers = {"Retry-After": "1"} if exc.type in RETRY_LATER else {}
    if "retry_after_s" in body:
        headers["Retry-After"] = str(max(1, math.ceil(float(body["retry_after_s"]))))
    return Response(
        json.dumps(body, sort_keys=True), status, headers=headers, media_type=PROBLEM_JSON
    )


def json_response(value: Any) -> Response:
    if isinstance(value, Response):
        return value
    return Response(json.dumps(plain(value), sort_keys=True), media_type="application/json")


@dataclass
class Api:
    """What the endpoints share."""

    settings: Settings
    ledger: LedgerClient
    auth: Authenticator
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @staticmethod
    def credentials(request: Request, *, cookie: bool = False) -> str | None:
        """The request's Authorization header (with `cookie`, the console's
        sign-in cookie stands in for a missing one: the Web UI, told to include
        credentials, sends it to the codec endpoints)."""
        header = request.headers.get("authorization")
        if header is None and cookie and request.cookies.get(CONSOLE_COOKIE):
            header = f"Bearer {request.cookies[CONSOLE_COOKIE]}"
        return header

    async def token_of(self, request: Request, *, cookie: bool = False) -> ApiToken:
        """The request's token, authenticated and admitted by its rate."""
        token = await self.auth.authenticate(self.credentials(request, cookie=cookie))
        wait = self.limiter.admit(token)
        if wait > 0:
            raise RateLimited(
                f"the token of {token.principal!r} allows {token.rate_per_s} requests a second",
                retry_after_s=round(wait, 3),
            )
        return token

    def endpoint(self, route: Route) -> Any:
        async def serve(request: Request) -> Response:
            try:
                token = await self.token_of(request, cookie=route.cookie_ok)
                # The route's scope, whatever its handler checks besides
                # (accounts): a handler that forgot cannot open its route.
                token.require(route.scope)
                body: dict[str, Any] = {}
                if route.body is not None:
                    body = await read_json(
                        request.headers.get("content-type"),
                        request.headers.get("content-length"),
                        request.stream(),
                        route.max_body or self.settings.api_max_body_bytes,
                    )
                key = idempotency_key(request.headers.get(IDEMPOTENCY_KEY)) if route.keyed else None
                call = Call(
                    token=token,
                    path=request.path_params,
                    query=request.query_params,
                    body=body,
                    key=key,
                    ledger=self.ledger,
                    settings=self.settings,
                    accept=request.headers.get("accept", ""),
                    last_event_id=request.headers.get("last-event-id"),
                    recheck=functools.partial(
                        self.auth.authenticate, self.credentials(request, cookie=route.cookie_ok)
                    ),
                    recheck_s=max(0.5, self.auth.cache_s),
                )
                return json_response(await self._within_deadline(route, call))
            except LedgerError as exc:
                return problem_response(exc)
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)
                return problem_response(InternalError("the request failed unexpectedly"))

        return serve

    async def _within_deadline(self, route: Route, call: Call) -> Any:
        """A write's answer, or `ConfirmationTimeout` once the API's
        confirmation deadline (and a little) has passed: a write that no worker
        answers must not hold its connection, nor the server's shutdown, for
        ever. The handler is not cancelled (cancelling an SDK call in flight is
        what `LedgerClient.transfer` avoids too); it finishes unobserved, and
        the same Idempotency-Key later answers its outcome."""
        handling = asyncio.ensure_future(route.handler(call))
        if route.method != "POST":
            return await handling
        within = self.settings.api_confirm_within.total_seconds()
        await asyncio.wait([handling], timeout=within + WRITE_DEADLINE_GRACE_S)
        if not handling.done():
            handling.add_done_callback(_unobserved)
            raise ConfirmationTimeout(
                f"no answer within {within:g} s (are the region's workers running?); it may "
                "still complete: send it again with the same Idempotency-Key to learn its outcome"
            )
        return handling.result()

    async def not_routed(self, request: Request, exc: Exception) -> Response:
        """A path or method that does not exist: still 401 without a token
        (what exists is not told to strangers)."""
        try:
            await self.token_of(request)
        except LedgerError as refused:
            return problem_response(refused)
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return problem_response(MethodNotAllowed(f"{request.method} is not allowed here"))
        return problem_response(RouteNotFound(f"no route {request.url.path}"))


class WebUiCors:
    """CORS for the codec endpoints, for the Temporal Web UI's origins only:
    the browser's preflight (OPTIONS, which carries no token) is answered
    here, and the answers carry the headers that let the UI read them."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.origins = origins

    def _allowed(self, scope: Scope) -> str | None:
        if scope["type"] != "http" or not scope["path"].startswith("/codec/"):
            return None
        origin = Headers(scope=scope).get("origin")
        return origin if origin in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = self._allowed(scope)
        if origin is None:
            await self.app(scope, receive, send)
            return
        cors = [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (b"access-control-allow-headers", b"Content-Type, X-Namespace, Authorization"),
            (b"vary", b"Origin"),
        ]
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": cors})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, with_cors)


def web_ui_origins(settings: Settings) -> tuple[str, ...]:
    ui = settings.temporal_ui_port
    return (f"http://127.0.0.1:{ui}", f"http://localhost:{ui}")


def build_app(settings: Settings, ledger: LedgerClient, auth: Authenticator) -> Starlette:
    api = Api(settings, ledger, auth)
    routes = [
        StarletteRoute(route.path, api.endpoint(route), methods=[route.method])
        for route in API_ROUTES
    ]

    async def openapi(request: Request) -> Response:
        from ledgerflow.api.openapi import document

        try:
            await api.token_of(request)
        except LedgerError as exc:
            return problem_response(exc)
        return JSONResponse(document())

    routes.append(StarletteRoute("/openapi.json", openapi, methods=["GET"]))
    routes += console_routes(api)
    app = Starlette(
        routes=routes,
        exception_handlers={404: api.not_routed, 405: api.not_routed},
        middleware=[Middleware(WebUiCors, origins=web_ui_origins(settings))],
    )
    app.state.api = api
    return app
