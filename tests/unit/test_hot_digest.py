"""`hashes_digest`: what `archive verify` holds a segment's hot rows to at
once (PostgreSQL computes the same, `event_hashes_digest`; the contract is
tests/integration/test_archive.py)."""

from __future__ import annotations

import hashlib

from ledgerflow.store.log import hashes_digest


def test_the_hot_rows_digest_changes_with_every_field_and_every_boundary() -> None:
    row = ("0b6c3f1e-0000-4000-8000-000000000001", "acct", 3, "ab" * 32)
    base = hashes_digest([row])
    changed = [
        ("0b6c3f1e-0000-4000-8000-000000000002", "acct", 3, "ab" * 32),
        ("0b6c3f1e-0000-4000-8000-000000000001", "acce", 3, "ab" * 32),
        ("0b6c3f1e-0000-4000-8000-000000000001", "acct", 4, "ab" * 32),
        ("0b6c3f1e-0000-4000-8000-000000000001", "acct", 3, "ac" * 32),
    ]
    assert all(hashes_digest([other]) != base for other in changed)
    # Where one field ends and the next begins is part of what is hashed.
    assert hashes_digest([("e", "a 1", 2, "h")]) != hashes_digest([("e", "a", 12, "h")])
    assert hashes_digest([row, changed[0]]) != hashes_digest([changed[0], row])  # order
    assert hashes_digest([]) == hashlib.sha256(b"").hexdigest()
