"""One contract, two token stores (`ledgerflow/api/tokens.py`): the
PostgreSQL one the API reads (a real server, as the owner writes and the
reader reads) and the in-memory one unit tests use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.api.tokens import MemoryTokens, PostgresTokens, TokenStore, issue, parse
from ledgerflow.config import Settings
from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.store.postgres import create_engine


@pytest_asyncio.fixture(scope="session")
async def token_owner(migrated: Settings) -> AsyncIterator[AsyncEngine]:
    """The owner of the default region (who creates and revokes tokens)."""
    owner = create_engine(migrated.migration_url(migrated.default_region), migrated, pool_size=1)
    yield owner
    await owner.dispose()


@pytest.fixture(params=["memory", "postgres"])
def tokens(request: pytest.FixtureRequest) -> TokenStore:
    if request.param == "memory":
        return MemoryTokens()
    return PostgresTokens(request.getfixturevalue("token_owner"))


async def test_a_token_is_stored_as_its_hash_and_found_by_its_id(
    tokens: TokenStore, uid: Callable[[str], str]
) -> None:
    issued = issue(uid("svc"), ("write", "read"), created_by="ops", rate_per_s=7,
                   account_prefix="team-")  # fmt: skip
    stored = await tokens.add(issued.record)
    assert stored.created_at is not None and stored.revoked_at is None
    found = await tokens.get(issued.record.token_id)
    assert found is not None
    assert (found.principal, found.scopes, found.rate_per_s, found.account_prefix) == (
        issued.record.principal, ("read", "write"), 7, "team-",
    )  # fmt: skip
    assert parse(issued.token)[1] not in repr(found)  # the secret (which may hold "_") is nowhere
    assert found.secret_sha256 == issued.record.secret_sha256
    assert await tokens.get("000000000000") is None
    assert issued.record.token_id in {t.token_id for t in await tokens.all()}


async def test_revoking_is_idempotent_and_an_unknown_id_is_refused(
    tokens: TokenStore, uid: Callable[[str], str]
) -> None:
    issued = issue(uid("svc"), ("read",), created_by="ops", rate_per_s=1)
    await tokens.add(issued.record)
    first = await tokens.revoke(issued.record.token_id)
    again = await tokens.revoke(issued.record.token_id)
    assert first.revoked_at is not None and again.revoked_at == first.revoked_at
    with pytest.raises(InvalidRequest):
        await tokens.revoke("000000000000")


async def test_the_reader_role_reads_tokens_and_cannot_write_them(
    migrated: Settings, uid: Callable[[str], str]
) -> None:
    reader = create_engine(migrated.reader_url(migrated.default_region), migrated, pool_size=1)
    app = create_engine(migrated.database_url(migrated.default_region), migrated, pool_size=1)
    try:
        issued = issue(uid("svc"), ("read",), created_by="ops", rate_per_s=1)
        with pytest.raises(DBAPIError, match="permission denied"):
            await PostgresTokens(reader).add(issued.record)
        with pytest.raises(DBAPIError, match="permission denied"):  # workers: no access at all
            await PostgresTokens(app).get(issued.record.token_id)
        assert await PostgresTokens(reader).get(issued.record.token_id) is None
    finally:
        await reader.dispose()
        await app.dispose()
