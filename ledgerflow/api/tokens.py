"""API tokens: who may call the HTTP API, for what, on which accounts.

A token reads `lft_<token_id>_<secret>`: the id names its row, the secret
(32 random bytes, URL-safe) proves it. Only the secret's SHA-256 is stored:
the secret has 256 bits of entropy, so a slow password hash would buy
nothing and cost milliseconds on every request. Comparison is constant-time.

Scopes nest: `read` (balances, statements, the trail, reports, the stream),
`write` (everything `read` may, plus transfers, holds, transactions and
opening accounts without an overdraft), `admin` (everything, plus
overdrafts, closing, freezing and unfreezing accounts). A token may be
limited to accounts whose id starts with a prefix: it then reads and moves
only those (both accounts of a transfer or a hold, every leg of a
transaction); any other account is refused `Forbidden`, whether it exists
or not, so the answer tells nothing of it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from ledgerflow.domain.errors import InvalidRequest, LedgerError
from ledgerflow.domain.model import require_id

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

SCOPES = ("read", "write", "admin")
TOKEN_PREFIX = "lft_"
_TOKEN = re.compile(r"^lft_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")


#: One answer for an unknown, forged or revoked token: which it was is not told.
NOT_VALID = "the token is not valid (unknown, revoked, or its secret does not match)"


class Unauthorized(LedgerError):
    """No token, a token that is malformed, unknown, revoked or forged (401)."""

    type = "Unauthorized"


class Forbidden(LedgerError):
    """A valid token without the scope, or outside its account prefix (403)."""

    type = "Forbidden"


class RateLimited(LedgerError):
    """The token made more requests than its rate allows, or too many
    requests came with unknown tokens (429, `Retry-After`)."""

    type = "RateLimited"


@dataclass(frozen=True)
class ApiToken:
    """A token's record (never its secret)."""

    token_id: str
    principal: str
    scopes: tuple[str, ...]
    rate_per_s: int
    secret_sha256: str
    created_by: str
    account_prefix: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    def may(self, scope: str) -> bool:
        """Whether the token's scopes include `scope` (they nest)."""
        return any(SCOPES.index(s) >= SCOPES.index(scope) for s in self.scopes)

    def covers(self, account_id: str) -> bool:
        return self.account_prefix is None or account_id.startswith(self.account_prefix)

    def require(self, scope: str, *accounts: str) -> None:
        if not self.may(scope):
            raise Forbidden(f"the token of {self.principal!r} has no {scope!r} scope", scope=scope)
        for account in accounts:
            if not self.covers(account):
                raise Forbidden(
                    f"the token of {self.principal!r} is limited to accounts starting "
                    f"with {self.account_prefix!r}",
                    account_id=account,
                )


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: the only time its secret exists outside the caller."""

    token: str
    record: ApiToken


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str]:
    """(token id, secret) of a token's text, or `Unauthorized`."""
    match = _TOKEN.match(token)
    if match is None:
        raise Unauthorized("the token is malformed")
    return match.group(1), match.group(2)


def issue(
    principal: str,
    scopes: tuple[str, ...],
    *,
    created_by: str,
    rate_per_s: int,
    account_prefix: str | None = None,
) -> IssuedToken:
    """A new token and its record (validated: bad input raises, nothing made)."""
    require_id(principal, "principal")
    require_id(created_by, "created_by")
    if not scopes or any(s not in SCOPES for s in scopes):
        raise InvalidRequest(f"scopes must be some of {', '.join(SCOPES)}", field="scopes")
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, int) or rate_per_s < 1:
        raise InvalidRequest("rate_per_s must be a positive integer", field="rate_per_s")
    if account_prefix is not None:
        require_id(account_prefix, "account_prefix")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = ApiToken(
        token_id=token_id,
        principal=principal,
        scopes=tuple(sorted(set(scopes), key=SCOPES.index)),
        rate_per_s=rate_per_s,
        secret_sha256=hash_secret(secret),
        created_by=created_by,
        account_prefix=account_prefix,
    )
    return IssuedToken(f"{TOKEN_PREFIX}{token_id}_{secret}", record)


class TokenStore(Protocol):
    """Where token records live."""

    async def add(self, record: ApiToken) -> ApiToken: ...

    async def get(self, token_id: str) -> ApiToken | None: ...

    async def all(self) -> list[ApiToken]: ...

    async def revoke(self, token_id: str) -> ApiToken:
        """Mark revoked (idempotent); `InvalidRequest` for an unknown id."""
        ...


@dataclass
class MemoryTokens:
    """Token records in memory (unit tests)."""

    records: dict[str, ApiToken] = field(default_factory=dict)

    async def add(self, record: ApiToken) -> ApiToken:
        stored = replace(record, created_at=datetime.now(UTC))
        self.records[record.token_id] = stored
        return stored

    async def get(self, token_id: str) -> ApiToken | None:
        return self.records.get(token_id)

    async def all(self) -> list[ApiToken]:
        return sorted(self.records.values(), key=lambda r: r.token_id)

    async def revoke(self, token_id: str) -> ApiToken:
        record = self.records.get(token_id)
        if record is None:
            raise InvalidRequest(f"no token {token_id!r}", field="token_id")
        if record.revoked_at is None:
            record = self.records[token_id] = replace(record, revoked_at=datetime.now(UTC))
        return record


_COLUMNS = (
    "token_id, principal, scopes, rate_per_s, secret_sha256, created_by, account_prefix, "
    "created_at, revoked_at"
)


class PostgresTokens:
    """Token records in the default region's `api_tokens` (migration 0010).
    The API reads them as the reader role; `ledgerflow token` writes them as
    the owner."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @staticmethod
    def _record(row: object) -> ApiToken:
        m = row._mapping  # type: ignore[attr-defined]
        return ApiToken(
            token_id=m["token_id"],
            principal=m["principal"],
            scopes=tuple(m["scopes"]),
            rate_per_s=m["rate_per_s"],
            secret_sha256=m["secret_sha256"],
            created_by=m["created_by"],
            account_prefix=m["account_prefix"],
            created_at=m["created_at"],
            revoked_at=m["revoked_at"],
        )

    async def add(self, record: ApiToken) -> ApiToken:
        from sqlalchemy import text

        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO api_tokens (token_id, principal, scopes, rate_per_s, "
                        "secret_sha256, created_by, account_prefix) VALUES (:token_id, "
                        ":principal, :scopes, :rate_per_s, :secret_sha256, :created_by, "
                        f":account_prefix) RETURNING {_COLUMNS}"
                    ),
                    {
                        "token_id": record.token_id,
                        "principal": record.principal,
                        "scopes": list(record.scopes),
                        "rate_per_s": record.rate_per_s,
                        "secret_sha256": record.secret_sha256,
                        "created_by": record.created_by,
                        "account_prefix": record.account_prefix,
                    },
                )
            ).one()
        return self._record(row)

    async def get(self, token_id: str) -> ApiToken | None:
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_id = :id"),
                    {"id": token_id},
                )
            ).one_or_none()
        return None if row is None else self._record(row)

    async def all(self) -> list[ApiToken]:
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            rows = await conn.execute(text(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY token_id"))
            return [self._record(row) for row in rows]

    async def revoke(self, token_id: str) -> ApiToken:
        from sqlalchemy import text

        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) "
                        f"WHERE token_id = :id RETURNING {_COLUMNS}"
                    ),
                    {"id": token_id},
                )
            ).one_or_none()
        if row is None:
            raise InvalidRequest(f"no token {token_id!r}", field="token_id")
        return self._record(row)


#: Store lookups a second, per API process, that may find no token (bursts of
#: twice that): beyond them a request with an id never seen is told to wait.
UNKNOWN_IDS_PER_S = 20.0
#: Unknown ids remembered (each for the token cache's time).
UNKNOWN_IDS_KEPT = 4096


class Authenticator:
    """Turns an `Authorization: Bearer` header into the token's record,
    caching a verified record for `cache_s` seconds (so a revocation takes
    effect within that long, and a request costs no query)."""

    def __init__(
        self, store: TokenStore, cache_s: float, *, misses_per_s: float = UNKNOWN_IDS_PER_S
    ) -> None:
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, ApiToken]] = {}
        # Ids the store did not know, for `cache_s` (bounded), and a budget of
        # store lookups that find nothing: random ids cannot turn every
        # request into a query on the reader pool the API's reads share.
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self.misses_per_s = misses_per_s
        self._miss_budget = (2.0 * misses_per_s, time.monotonic())

    async def authenticate(self, header: str | None) -> ApiToken:
        if not header:
            raise Unauthorized("no token: send `Authorization: Bearer <token>`")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be `Bearer <token>`")
        token_id, secret = parse(token.strip())
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(token_id)
        if cached is None or now - cached[0] > self.cache_s:
            missed = self._unknown.get(token_id)
            if missed is not None and now - missed <= self.cache_s:
                raise Unauthorized(NOT_VALID)
            level = self._miss_level(now)
            if cached is None and level < 1.0:
                raise RateLimited(
                    "too many requests with unknown tokens; try again shortly",
                    retry_after_s=round((1.0 - level) / self.misses_per_s, 3),
                )
            record = await self.store.get(token_id)
            if record is None:
                self._cache.pop(token_id, None)
                self._miss_budget = (self._miss_level(time.monotonic()) - 1.0, time.monotonic())
                self._unknown[token_id] = now
                self._unknown.move_to_end(token_id)
                while len(self._unknown) > UNKNOWN_IDS_KEPT:
                    self._unknown.popitem(last=False)
                raise Unauthorized(NOT_VALID)
            self._unknown.pop(token_id, None)
            cached = self._cache[token_id] = (now, record)
        record = cached[1]
        # Constant-time: a forged secret for a real id learns nothing from timing.
        if not hmac.compare_digest(record.secret_sha256, digest):
            raise Unauthorized(NOT_VALID)
        if record.revoked_at is not None:
            raise Unauthorized(NOT_VALID)
        return record

    def _miss_level(self, now: float) -> float:
        level, last = self._miss_budget
        return min(2.0 * self.misses_per_s, level + (now - last) * self.misses_per_s)
