"""Custom search attributes the ledger registers on the Temporal server.

They let an operator filter transfers in the Web UI, e.g.
`LedgerFromAccount = "acc-1" AND LedgerStatus = "rejected"`.
This module imports only the Temporal SDK, so workflows may use it.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

FROM_ACCOUNT = SearchAttributeKey.for_keyword("LedgerFromAccount")
TO_ACCOUNT = SearchAttributeKey.for_keyword("LedgerToAccount")
REGION = SearchAttributeKey.for_keyword("LedgerRegion")
CURRENCY = SearchAttributeKey.for_keyword("LedgerCurrency")
AMOUNT = SearchAttributeKey.for_int("LedgerAmount")
STATUS = SearchAttributeKey.for_keyword("LedgerStatus")
#: A hold's deadline: `LedgerDeadline < "2026-12-02T00:00:00Z" AND LedgerStatus = "open"`.
DEADLINE = SearchAttributeKey.for_datetime("LedgerDeadline")

ALL = (FROM_ACCOUNT, TO_ACCOUNT, REGION, CURRENCY, AMOUNT, STATUS, DEADLINE)


def server_flags() -> list[str]:
    """`--search-attribute NAME=Type` pairs for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}
    return [f"{key.name}={kinds[key.indexed_value_type.name]}" for key in ALL]
