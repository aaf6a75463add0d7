"""Webhooks and stream consumers, the pure parts: bad input refused with its
field before anything starts; signatures that check and ones that do not."""

from __future__ import annotations

from datetime import datetime

import pytest

from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.webhooks import Subscription, sign, signature_valid
from ledgerflow.stream.consumer import consumer_config

GOOD = Subscription("s1", "https://hooks.example/x", "sixteen-chars-ok")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subscription_id": "no spaces"}, "subscription_id"),
        ({"url": "ftp://hooks.example/x"}, "url"),
        ({"url": "https://"}, "url"),
        ({"secret": "short"}, "secret"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"backoff_s": 0.01}, "backoff_s"),
        ({"region": "e u"}, "region"),
        ({"account": "*"}, "account"),
        ({"event_type": ""}, "event_type"),
    ],
)
def test_a_bad_subscription_is_refused_with_its_field(
    changes: dict[str, object], field: str
) -> None:
    from dataclasses import replace

    with pytest.raises(InvalidRequest) as caught:
        replace(GOOD, **changes).validated()  # type: ignore[arg-type]
    assert caught.value.details == {"field": field}


def test_a_signature_checks_only_with_its_secret_and_body() -> None:
    assert GOOD.validated() == GOOD
    header = sign("the-secret-of-it", 1700000000, b'{"a":1}')
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert signature_valid("the-secret-of-it", header, b'{"a":1}')
    assert not signature_valid("the-secret-of-it", header, b'{"a":2}')
    assert not signature_valid("another-secret!!", header, b'{"a":1}')
    for forged in ("", "v1=abc", "t=x,v1=abc", header.replace("t=17", "t=18")):
        assert not signature_valid("the-secret-of-it", forged, b'{"a":1}')


def test_a_consumer_start_that_cannot_be_is_refused() -> None:
    for start, field in ((0, "from"), (-3, "from"), (True, "from"),
                         (datetime(2026, 1, 1), "since")):  # fmt: skip
        with pytest.raises(InvalidRequest) as caught:
            consumer_config(start, "ledger.>", None)  # type: ignore[arg-type]
        assert caught.value.details == {"field": field}
    durable = consumer_config(5, "ledger.us.*.*", "risk")
    assert (durable.opt_start_seq, durable.durable_name, durable.filter_subject) == (
        5, "risk", "ledger.us.*.*")  # fmt: skip
