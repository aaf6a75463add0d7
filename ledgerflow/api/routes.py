"""The HTTP API's endpoints, declared once: each route's method, path, scope,
body and handler. The app serves them and the OpenAPI document is built from
them (`ledgerflow/api/openapi.py`), so the two cannot differ.

Every write goes through `LedgerClient`, exactly as the SDK's do (so an id
used over HTTP and over the SDK is one operation); its `Idempotency-Key` is
the operation's id in the ledger (the transfer's, the hold's, the
capture's...), with the transfer id's rules: the same key with the same body
answers the same, with another body `409`. The token's principal is the
`initiated_by` of everything it writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.responses import Response, StreamingResponse

from ledgerflow.api.body import Fields
from ledgerflow.api.tokens import Forbidden
from ledgerflow.domain.errors import HoldNotFound, InvalidRequest, LedgerError, error_from_type
from ledgerflow.domain.transactions import LegRequest
from ledgerflow.wire import plain

if TYPE_CHECKING:
    from ledgerflow.api.tokens import ApiToken
    from ledgerflow.client import LedgerClient
    from ledgerflow.config import Settings


@dataclass
class Call:
    """One request, as a handler sees it."""

    token: ApiToken
    path: Mapping[str, str]
    query: Mapping[str, str]
    body: dict[str, Any]
    key: str | None
    ledger: LedgerClient
    settings: Settings
    accept: str = ""
    #: an EventSource's `Last-Event-ID` (it resumes after that position)
    last_event_id: str | None = None
    #: authenticates the request's token again (raises once it is revoked):
    #: a stream that follows re-checks it while it stays open
    recheck: Callable[[], Awaitable[object]] | None = None
    #: how often a long-lived answer calls `recheck`
    recheck_s: float = 5.0

    def fields(self, known: set[str]) -> Fields:
        return Fields(self.body, known)

    @property
    def principal(self) -> str:
        return self.token.principal


Handler = Callable[[Call], Awaitable[Any]]
DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    summary: str
    handler: Handler
    #: the request body's JSON schema (writes); None: no body
    body: dict[str, Any] | None = None
    #: whether the route takes (and requires) an `Idempotency-Key`
    keyed: bool = False
    query: tuple[tuple[str, str, str], ...] = ()  # (name, JSON type, description)
    #: a larger body limit than the API's (the codec's)
    max_body: int | None = None
    #: the console's sign-in cookie may stand for the bearer token (the codec:
    #: the Web UI sends cookies, not tokens; the cookie is SameSite=Strict)
    cookie_ok: bool = False
    tags: tuple[str, ...] = field(default=())


def _refused(result: Any, kind: str) -> Any:
    """The result, or its recorded refusal raised as its typed error (the
    same key answers the same refusal again)."""
    if getattr(result, "reason_type", None):
        raise error_from_type(result.reason_type, result.reason or "", **{kind: plain(result)})
    return result


def _instant(call: Call, name: str, *, required: bool = False) -> datetime | None:
    text = call.query.get(name)
    if text is None:
        if required:
            raise InvalidRequest(f"the query parameter {name} is required", field=name)
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{name} is not an ISO 8601 instant: {text!r}", field=name) from None
    if value.tzinfo is None:
        raise InvalidRequest(f"{name} {text!r} has no time zone (add Z or +00:00)", field=name)
    if not 1970 <= value.year <= 9000:
        raise InvalidRequest(f"{name} must be between the years 1970 and 9000", field=name)
    return value


def _digits(text: str) -> bool:
    """ASCII digits only (`str.isdigit` also takes `²` and `⑨`)."""
    return DIGITS.fullmatch(text) is not None


def _whole(call: Call, name: str, default: int, *, low: int, high: int) -> int:
    text = call.query.get(name)
    if text is None:
        return default
    if not _digits(text) or not low <= int(text) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}", field=name)
    return int(text)


def _key(call: Call) -> str:
    assert call.key is not None  # (the app requires it on keyed routes)
    return call.key


# -- accounts ---------------------------------------------------------------------


async def open_account(call: Call) -> Any:
    account_id = _key(call)
    call.token.require("write", account_id)
    f = call.fields({"currency", "region", "overdraft_limit", "unlimited_overdraft", "metadata"})
    unlimited = f.data.get("unlimited_overdraft", False)
    if not isinstance(unlimited, bool):
        raise InvalidRequest(
            "unlimited_overdraft must be true or false", field="unlimited_overdraft"
        )
    limit = f.integer("overdraft_limit")
    if unlimited or limit:
        # An overdraft is credit the ledger extends: an administrator's call.
        call.token.require("admin", account_id)
    if unlimited and limit is not None:
        raise InvalidRequest(
            "give overdraft_limit or unlimited_overdraft, not both", field="overdraft_limit"
        )
    return await call.ledger.open_account(
        account_id,
        f.required_text("currency"),
        region=f.text("region", required=False),
        overdraft_limit=None if unlimited else (limit or 0),
        initiated_by=call.principal,
        metadata=f.mapping("metadata"),
    )


async def show_account(call: Call) -> Any:
    account_id = call.path["account_id"]
    call.token.require("read", account_id)
    account = await call.ledger.account(account_id)
    return plain(account) | {"available": account.balance - account.pending_out}


def _change(action: str) -> Handler:
    async def change(call: Call) -> Any:
        account_id = call.path["account_id"]
        call.token.require("admin", account_id)
        f = call.fields({"reason"})
        result = await call.ledger.change_account(
            account_id,
            action,
            reason=f.required_text("reason") or "",
            change_id=_key(call),
            initiated_by=call.principal,
        )
        return _refused(result, "change")

    return change


async def balance(call: Call) -> Any:
    account_id = call.path["account_id"]
    call.token.require("read", account_id)
    as_of = _instant(call, "as_of")
    if as_of is None:
        return await call.ledger.balance(account_id)
    return await call.ledger.balance_as_of(account_id, as_of)


async def statement(call: Call) -> Any:
    account_id = call.path["account_id"]
    call.token.require("read", account_id)
    after = _whole(call, "after_version", 0, low=0, high=2**62)
    limit = _whole(call, "limit", 100, low=1, high=1000)
    lines = await call.ledger.statement(account_id, after_version=after, limit=limit)
    following = lines[-1].version if len(lines) == limit else None
    return {"lines": lines, "next_after_version": following}


async def audit(call: Call) -> Any:
    account_id = call.path["account_id"]
    call.token.require("read", account_id)
    start = _instant(call, "start", required=True)
    end = _instant(call, "end", required=True)
    assert start is not None and end is not None
    if end <= start:
        raise InvalidRequest("end must be after start", field="end")
    trail = await call.ledger.audit(account_id, start, end)
    fmt = call.query.get("format") or ("csv" if "text/csv" in call.accept else "json")
    if fmt not in ("json", "csv"):
        raise InvalidRequest("format must be json or csv", field="format")
    if fmt == "csv":
        from ledgerflow.audit.export import trail_csv

        return Response(trail_csv(trail), media_type="text/csv; charset=utf-8")
    return trail


# -- the event stream ----------------------------------------------------------


async def _close(stream: AsyncGenerator[Any, None], pending: asyncio.Future[Any]) -> None:
    """Stop a stream whose next item is being asked for: the ask is cancelled
    and awaited first (closing a generator that is running fails)."""
    pending.cancel()
    with contextlib.suppress(BaseException):
        await pending
    await stream.aclose()


async def events(call: Call) -> Any:
    """Server-sent events from the global stream: `id` is the stream
    position (a reconnecting EventSource resumes after `Last-Event-ID`),
    `event` the event's type, `data` the message as the stream holds it
    (with its hash and previous hash). Without `follow` it ends once caught
    up (a long poll); with it, it stays open, a comment every 15 s."""
    account = call.query.get("account")
    call.token.require("read", *([account] if account else []))
    if call.token.account_prefix is not None and account is None:
        raise Forbidden(
            f"a token fenced to {call.token.account_prefix!r} must name its account",
            field="account",
        )
    start: int | datetime | None = None
    resume = call.last_event_id or call.query.get("from_seq")
    if resume is not None:
        if not _digits(resume) or int(resume) > 2**62:
            raise InvalidRequest("from_seq must be a stream position", field="from_seq")
        start = int(resume) + (1 if call.last_event_id else 0)
        if start < 1:
            raise InvalidRequest("from_seq starts at 1", field="from_seq")
    elif call.query.get("since"):
        start = _instant(call, "since")
    follow = call.query.get("follow", "false").lower()
    if follow not in ("true", "false"):
        raise InvalidRequest("follow must be true or false", field="follow")
    region = call.query.get("region")
    if region is not None:
        call.settings.require_region(region)
    ledger = call.ledger
    stream = ledger.events(start=start, region=region, account=account,
                           event_type=call.query.get("type"), follow=follow == "true")  # fmt: skip

    # The first item is asked for before answering, so a bad filter or an
    # unreachable stream is a problem, not a 200 cut short.
    pending: asyncio.Future[Any] = asyncio.ensure_future(anext(stream))
    try:
        await asyncio.wait({pending}, timeout=5)
        if pending.done() and pending.exception() is not None:
            error = pending.exception()
            if not isinstance(error, StopAsyncIteration):
                raise error  # type: ignore[misc]
    except BaseException:
        await _close(stream, pending)
        raise

    async def messages() -> AsyncIterator[bytes]:
        nonlocal pending
        checked = sent = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=min(15, call.recheck_s))
                now = time.monotonic()
                if call.recheck is not None and now - checked >= call.recheck_s:
                    # A revoked token's stream ends (its reconnection is a 401).
                    try:
                        await call.recheck()
                    except LedgerError:
                        yield b": the token is no longer valid\n\n"
                        return
                    checked = now
                if not done:
                    if now - sent >= 15:
                        yield b": still here\n\n"
                        sent = now
                    continue
                sent = now
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                yield (f"id: {item.seq}\nevent: {item.event.type}\n".encode()
                       + b"data: " + item.body + b"\n\n")  # fmt: skip
                pending = asyncio.ensure_future(anext(stream))
        finally:
            await _close(stream, pending)

    return StreamingResponse(messages(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})  # fmt: skip


# -- transfers and transactions --------------------------------------------------


async def transfer(call: Call) -> Any:
    f = call.fields({"from_account", "to_account", "amount", "currency", "description", "metadata"})
    source, target = f.required_text("from_account"), f.required_text("to_account")
    call.token.require("write", source, target)
    result = await call.ledger.transfer(
        _key(call),
        source,
        target,
        f.amount(),
        f.required_text("currency"),
        initiated_by=call.principal,
        description=f.text("description", required=False),
        metadata=f.mapping("metadata"),
        raise_on_rejection=False,
        confirm_within=call.settings.api_confirm_within.total_seconds(),
    )
    return _refused(result, "transfer")


async def transaction(call: Call) -> Any:
    f = call.fields({"legs", "description", "metadata", "region"})
    legs = []
    for n, item in enumerate(f.items("legs")):
        if not isinstance(item, dict):
            raise InvalidRequest(f"legs[{n}] must be an object", field="legs")
        leg = Fields(item, {"account_id", "side", "amount", "currency"})
        legs.append(
            LegRequest(
                leg.required_text("account_id"),
                leg.required_text("side"),
                leg.amount(),
                leg.required_text("currency"),
            )
        )
    call.token.require("write", *(leg.account_id for leg in legs))
    result = await call.ledger.transaction(
        _key(call),
        legs,
        initiated_by=call.principal,
        description=f.text("description", required=False),
        metadata=f.mapping("metadata"),
        region=f.text("region", required=False),
        raise_on_rejection=False,
    )
    return _refused(result, "transaction")


# -- holds ------------------------------------------------------------------------


async def _held(call: Call, scope: str) -> Any:
    """The hold named in the path, once the token may act on its account."""
    call.token.require(scope)  # before the lookup: what exists is not told
    state = await call.ledger.hold_state(call.path["hold_id"])
    call.token.require(scope, state.from_account, state.to_account)
    return state


async def place_hold(call: Call) -> Any:
    f = call.fields(
        {"from_account", "to_account", "amount", "currency", "expires_in", "over_capture",
         "description", "metadata"}
    )  # fmt: skip
    source, target = f.required_text("from_account"), f.required_text("to_account")
    call.token.require("write", source, target)
    result = await call.ledger.hold(
        _key(call),
        source,
        target,
        f.amount(),
        f.required_text("currency"),
        expires_in=f.required_integer("expires_in"),
        initiated_by=call.principal,
        over_capture=f.integer("over_capture") or 0,
        description=f.text("description", required=False),
        metadata=f.mapping("metadata"),
        raise_on_refusal=False,
    )
    return _refused(result, "hold")


async def show_hold(call: Call) -> Any:
    return await _held(call, "read")


async def show_capture(call: Call) -> Any:
    await _held(call, "read")
    hold_id, capture_id = call.path["hold_id"], call.path["capture_id"]
    recorded = await call.ledger.reads.capture(hold_id, capture_id)
    if recorded is None:
        raise HoldNotFound(f"hold {hold_id!r} has no capture {capture_id!r}", hold_id=hold_id)
    return recorded


async def show_release(call: Call) -> Any:
    await _held(call, "read")
    released = await call.ledger.reads.release(call.path["hold_id"])
    if released is None:
        raise HoldNotFound(f"hold {call.path['hold_id']!r} was not voided or expired")
    return released


async def capture(call: Call) -> Any:
    f = call.fields({"amount"})
    amount = f.amount()
    await _held(call, "write")
    return await call.ledger.capture(
        call.path["hold_id"], amount, capture_id=_key(call), initiated_by=call.principal
    )


async def void(call: Call) -> Any:
    call.fields(set())
    await _held(call, "write")
    return await call.ledger.void(call.path["hold_id"], initiated_by=call.principal)


async def extend(call: Call) -> Any:
    f = call.fields({"expires_in"})
    expires_in = f.required_integer("expires_in")
    await _held(call, "write")
    return await call.ledger.extend(
        call.path["hold_id"], expires_in, change_id=_key(call), initiated_by=call.principal
    )


# -- the routes -------------------------------------------------------------------

_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"}
_AMOUNT = {
    "oneOf": [{"type": "integer"}, {"type": "string", "pattern": r"^\d+(\.\d+)?$"}],
    "description": "integer minor units, or a decimal string in major units (`12.50`)",
}
_TEXT = {"type": "string"}
_OBJECT = {"type": "object"}


def _schema(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/accounts", "write", "Open an account (its id is the Idempotency-Key)",
          open_account, keyed=True, tags=("accounts",),
          body=_schema(["currency"], currency=_TEXT, region=_TEXT,
                       overdraft_limit={"type": "integer", "minimum": 0},
                       unlimited_overdraft={"type": "boolean"}, metadata=_OBJECT)),
    Route("GET", "/v1/accounts/{account_id}", "read",
          "An account: posted balance, pending out and in, available, status",
          show_account, tags=("accounts",)),
    *(
        Route("POST", f"/v1/accounts/{{account_id}}/{action}", "admin",
              f"{action.capitalize()} an account (the change id is the Idempotency-Key)",
              _change(action), keyed=True, tags=("accounts",),
              body=_schema(["reason"], reason=_TEXT))
        for action in ("freeze", "unfreeze", "close")
    ),
    Route("GET", "/v1/accounts/{account_id}/balance", "read",
          "The balance now (the read model), or at `as_of` (reconstructed from the events)",
          balance, tags=("balances",),
          query=(("as_of", "string", "an ISO 8601 instant with a time zone"),)),
    Route("GET", "/v1/accounts/{account_id}/statement", "read",
          "The account's postings in order, a page at a time", statement,
          tags=("balances",),
          query=(("after_version", "integer", "the last version of the previous page (0)"),
                 ("limit", "integer", "lines per page, 1-1000 (100)"))),
    Route("GET", "/v1/accounts/{account_id}/audit", "read",
          "The account's audit trail between two instants (JSON, or CSV with format=csv "
          "or Accept: text/csv)", audit, tags=("audit",),
          query=(("start", "string", "ISO 8601 instant"), ("end", "string", "ISO 8601 instant"),
                 ("format", "string", "json or csv"))),
    Route("GET", "/v1/events", "read",
          "Every region's events as server-sent events, from a position or a time, by region, "
          "account or type", events, tags=("events",),
          query=(("from_seq", "integer", "after this stream position (or Last-Event-ID)"),
                 ("since", "string", "from this instant"), ("region", "string", ""),
                 ("account", "string", ""), ("type", "string", "e.g. Debited, HoldPlaced"),
                 ("follow", "boolean", "stay open for new events (false: end once caught up)"))),
    Route("POST", "/v1/transfers", "write",
          "Move money between two accounts (the transfer id is the Idempotency-Key)",
          transfer, keyed=True, tags=("transfers",),
          body=_schema(["from_account", "to_account", "amount", "currency"],
                       from_account=_ID, to_account=_ID, amount=_AMOUNT, currency=_TEXT,
                       description=_TEXT, metadata=_OBJECT)),
    Route("POST", "/v1/transactions", "write",
          "Post N legs at once, or none (the transaction id is the Idempotency-Key)",
          transaction, keyed=True, tags=("transfers",),
          body=_schema(["legs"], legs={"type": "array", "minItems": 2, "items": _schema(
              ["account_id", "side", "amount", "currency"], account_id=_ID,
              side={"enum": ["debit", "credit"]}, amount=_AMOUNT, currency=_TEXT)},
              description=_TEXT, metadata=_OBJECT, region=_TEXT)),
    Route("POST", "/v1/holds", "write",
          "Reserve an amount toward an account until a deadline (the hold id is the "
          "Idempotency-Key)", place_hold, keyed=True, tags=("holds",),
          body=_schema(["from_account", "to_account", "amount", "currency", "expires_in"],
                       from_account=_ID, to_account=_ID, amount=_AMOUNT, currency=_TEXT,
                       expires_in={"type": "integer", "minimum": 1},
                       over_capture={"type": "integer", "minimum": 0},
                       description=_TEXT, metadata=_OBJECT)),
    Route("GET", "/v1/holds/{hold_id}", "read", "Where a hold stands", show_hold,
          tags=("holds",)),
    Route("GET", "/v1/holds/{hold_id}/captures/{capture_id}", "read",
          "A capture's recorded outcome", show_capture, tags=("holds",)),
    Route("GET", "/v1/holds/{hold_id}/release", "read",
          "The hold's void or expiry, if it ended so", show_release, tags=("holds",)),
    Route("POST", "/v1/holds/{hold_id}/captures", "write",
          "Capture part or all of an open hold (the capture id is the Idempotency-Key)",
          capture, keyed=True, tags=("holds",), body=_schema(["amount"], amount=_AMOUNT)),
    Route("POST", "/v1/holds/{hold_id}/void", "write",
          "Release what the hold still reserves (a second void answers the first's)",
          void, tags=("holds",), body=_schema([])),
    Route("POST", "/v1/holds/{hold_id}/extend", "write",
          "Move an open hold's deadline (the change id is the Idempotency-Key)", extend,
          keyed=True, tags=("holds",),
          body=_schema(["expires_in"], expires_in={"type": "integer", "minimum": 1})),
)  # fmt: skip
