"""Webhooks: subscriptions to the global event stream, delivered over HTTP.

A subscription has a filter (region, account, event type, each optional), a
URL and a secret. Each event that matches is POSTed to the URL as the
event's JSON (the stream's message body), signed: the header
`Ledgerflow-Signature` is `t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the secret>`; `Ledgerflow-Event-Id` is the event id, the
idempotency key a receiver deduplicates on (delivery is at least once).
Pure standard-library code: the workflow passes it through its sandbox.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.model import require_id

SIGNATURE_HEADER = "Ledgerflow-Signature"
EVENT_ID_HEADER = "Ledgerflow-Event-Id"
SUBSCRIPTION_HEADER = "Ledgerflow-Subscription"
#: How many times one event is tried before it becomes a dead letter.
MAX_ATTEMPTS = 6


def webhook_workflow_id(subscription_id: str) -> str:
    return f"webhook-{subscription_id}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def signature_valid(secret: str, header: str, body: bytes) -> bool:
    """What a receiver checks (constant time)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts or not parts["t"].isdigit():
        return False
    return hmac.compare_digest(sign(secret, int(parts["t"]), body), header)


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    url: str
    secret: str = field(repr=False)
    region: str | None = None
    account: str | None = None
    event_type: str | None = None
    created_by: str = "sdk"
    #: Attempts per event before it becomes a dead letter, and the first
    #: retry's delay (doubling, at most a minute).
    max_attempts: int = MAX_ATTEMPTS
    backoff_s: float = 1.0

    def validated(self) -> Subscription:
        require_id(self.subscription_id, "subscription_id")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidRequest(f"url must be an http(s) URL, got {self.url!r}", field="url")
        if not isinstance(self.secret, str) or len(self.secret) < 16:
            raise InvalidRequest("secret must be at least 16 characters", field="secret")
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or not (1 <= self.max_attempts <= 100)
        ):
            raise InvalidRequest("max_attempts must be 1 to 100", field="max_attempts")
        if not isinstance(self.backoff_s, int | float) or not 0.1 <= self.backoff_s <= 3600:
            raise InvalidRequest("backoff_s must be 0.1 to 3600 seconds", field="backoff_s")
        for name in ("region", "account", "event_type"):
            value = getattr(self, name)
            if value is not None:
                require_id(value, name)
        return self


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    event_id: str
    error: str
    attempts: int
    #: The message body, to deliver again.
    body: str = field(repr=False, default="")


@dataclass
class WebhookState:
    """A subscription's progress: what the workflow carries across runs."""

    subscription: Subscription
    #: The global stream's sequence delivered (or dead-lettered) through.
    cursor: int = 0
    delivered: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    cancelled: bool = False


@dataclass(frozen=True)
class FetchInput:
    subscription: Subscription
    after: int
    limit: int = 100


@dataclass(frozen=True)
class Pending:
    seq: int
    event_id: str
    #: The message body, as the stream holds it (what is POSTed).
    body: str


@dataclass(frozen=True)
class DeliverInput:
    subscription: Subscription
    event: Pending


@dataclass(frozen=True)
class WebhookStatus:
    subscription_id: str
    url: str
    cursor: int
    delivered: int
    dead_letters: list[DeadLetter]
    cancelled: bool
