"""The simulator's model of the ledger: independent of the code it checks.

It holds every account (home region, currency, overdraft limit, balance,
status) and every transfer id's and change id's first outcome, and decides
each operation's outcome from those alone, by the rules the README states:
the source account, then the target, must exist, not be closed (the source
not frozen either) and hold the currency; the source must be able to spend
the amount; across regions the destination refusing (closed, another
currency) pays the amount back; a freeze needs an open account, an unfreeze
a frozen one, a close an empty one that is not closed; a transfer id's outcome never changes, and
the same id with another payload is `DuplicateTransferMismatch`. Balances
are the model's own arithmetic, clearing accounts included.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Account:
    account_id: str
    region: str
    currency: str
    limit: int | None  # None: unlimited (a bank)
    balance: int = 0
    status: str = "open"  # open | frozen | closed
    #: what its open holds reserve
    pending: int = 0


@dataclass(frozen=True)
class Payload:
    source: str
    target: str
    amount: int
    currency: str

    def other(self) -> Payload:
        """Another payload under the same id (an id clash)."""
        return Payload(self.source, self.target, self.amount + 1, self.currency)


@dataclass(frozen=True)
class Change:
    """A status change of an account: freeze, unfreeze or close."""

    account_id: str
    action: str
    reason: str


#: (status before, action) -> status after; anything else is refused.
TRANSITIONS = {("open", "freeze"): "frozen", ("frozen", "unfreeze"): "open",
               ("open", "close"): "closed", ("frozen", "close"): "closed"}  # fmt: skip


@dataclass
class ModelHold:
    """A hold as the model sees it."""

    hold_id: str
    source: str
    target: str
    amount: int
    over: int
    status: str = "open"  # open | captured | voided | expired | refused
    captured: int = 0
    consumed: int = 0
    #: The target's region when it is not the hold's: captures travel there.
    to_region: str | None = None
    #: capture id -> (amount, its answer)
    captures: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return self.amount - self.consumed if self.status == "open" else 0


@dataclass(frozen=True)
class Outcome:
    status: str  # confirmed | rejected | reversed | DuplicateTransferMismatch
    reason_type: str | None = None


@dataclass
class Model:
    accounts: dict[str, Account] = field(default_factory=dict)
    #: transfer id -> (its payload, its outcome, where it ran, where it went)
    transfers: dict[str, tuple[Payload, Outcome, str, str | None]] = field(default_factory=dict)
    #: (account, change id) -> (its change, its answer: applied or the refusal's type)
    changes: dict[tuple[str, str], tuple[Change, str]] = field(default_factory=dict)
    #: hold id -> the hold, and its placement's payload and answer
    holds: dict[str, ModelHold] = field(default_factory=dict)
    placements: dict[str, tuple[Payload, str]] = field(default_factory=dict)
    #: transaction id -> its legs (account, side, amount, currency) and its answer
    txs: dict[str, tuple[tuple[tuple[str, str, int, str], ...], str]] = field(default_factory=dict)
    #: (home region, peer region, currency) -> clearing balance
    clearing: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: Holds toward another region placed, and their captures arrived or returned.
    abroad: Counter[str] = field(default_factory=Counter)
    #: Deliberately wrong (to show the simulator catches and shrinks it).
    sabotage: str | None = None

    def route(self, payload: Payload, default_region: str, raw_region: str | None = None
              ) -> tuple[str, str | None]:  # fmt: skip
        """Where a transfer runs and where it goes, as the SDK (or a raw start
        on `raw_region`'s queue with no `to_region`) would route it."""
        source = self.accounts.get(payload.source)
        target = self.accounts.get(payload.target)
        region = raw_region or (source.region if source else default_region)
        if raw_region is not None or target is None or target.region == region:
            return region, None
        return region, target.region

    def decide(self, tid: str, payload: Payload, region: str, to_region: str | None) -> Outcome:
        """The outcome of submitting `payload` under `tid`, by the rules alone."""
        known = self.transfers.get(tid)
        if known is not None:
            first, outcome, _, _ = known
            return outcome if first == payload else Outcome("DuplicateTransferMismatch")
        for account_id in (payload.source, payload.target):
            account = self.accounts.get(account_id)
            if account is None or (account.region != region and to_region is None):
                return Outcome("rejected", "AccountNotFound")
            if account_id == payload.target and to_region is not None:
                break  # the destination checks its own account, after the money left
            if account.status == "closed":
                return Outcome("rejected", "AccountClosed")
            if account.status == "frozen" and account_id == payload.source:
                return Outcome("rejected", "AccountFrozen")
            if account.currency != payload.currency:
                return Outcome("rejected", "CurrencyMismatch")
        source = self.accounts[payload.source]
        if not self.can_spend(source, payload.amount):
            return Outcome("rejected", "InsufficientFunds")
        if to_region is not None and self.accounts[payload.target].status == "closed":
            return Outcome("reversed", "AccountClosed")
        if to_region is not None and self.accounts[payload.target].currency != payload.currency:
            return Outcome("reversed", "CurrencyMismatch")
        return Outcome("confirmed")

    def can_spend(self, source: Account, amount: int, released: int = 0) -> bool:
        """Available (posted minus pending) after spending `amount`, of which
        `released` comes out of its own reservation, stays within the limit."""
        limit = source.limit
        if self.sabotage == "limit" and limit is not None:
            limit += 1
        available = source.balance - (source.pending - released) - amount
        return limit is None or available >= -limit

    # -- holds ------------------------------------------------------------

    def hold_route(self, payload: Payload) -> str | None:
        """The region a hold's captures travel to, as the SDK finds it (the
        target's home, if that is another region than the source's)."""
        source, target = self.accounts.get(payload.source), self.accounts.get(payload.target)
        if source is None or target is None or target.region == source.region:
            return None
        return target.region

    def decide_hold(self, payload: Payload) -> str:
        """`placed` or the refusal of a new hold. Toward another region only
        the source is checked: the target is its region's to judge, when a
        capture arrives there."""
        source, target = self.accounts.get(payload.source), self.accounts.get(payload.target)
        checked = [source] if self.hold_route(payload) is not None else [source, target]
        for account in checked:
            if account is None or source is None or account.region != source.region:
                return "AccountNotFound"
            if account.status == "closed":
                return "AccountClosed"
            if account.status == "frozen" and account is source:
                return "AccountFrozen"
            if account.currency != payload.currency:
                return "CurrencyMismatch"
        assert source is not None
        return "placed" if self.can_spend(source, payload.amount) else "InsufficientFunds"

    def place(self, hold_id: str, payload: Payload, over: int) -> str:
        known = self.placements.get(hold_id)
        if known is not None:
            return known[1] if known[0] == payload else "DuplicateHoldMismatch"
        answer = self.decide_hold(payload)
        self.placements[hold_id] = (payload, answer)
        hold = ModelHold(hold_id, payload.source, payload.target, payload.amount, over,
                         to_region=self.hold_route(payload))  # fmt: skip
        if answer != "placed":
            hold.status = "refused"
        else:
            self.accounts[payload.source].pending += payload.amount
            self.abroad["holds"] += hold.to_region is not None
        self.holds[hold_id] = hold
        return answer

    def capture(self, hold_id: str, capture_id: str, amount: int) -> str:
        hold = self.holds[hold_id]
        known = hold.captures.get(capture_id)
        if known is not None:
            return known[1] if known[0] == amount else "DuplicateCaptureMismatch"
        if hold.status != "open":
            # Its workflow has closed: nothing reaches the store, nothing is
            # recorded; the SDK answers from the store that the hold ended.
            return "HoldNotOpen"
        answer = self._capture(hold, amount)
        hold.captures[capture_id] = (amount, answer)
        return answer

    def _capture(self, hold: ModelHold, amount: int) -> str:
        if amount > hold.amount + hold.over - hold.captured:
            return "CaptureExceedsHold"
        source, target = self.accounts[hold.source], self.accounts[hold.target]
        if source.status == "closed":
            return "AccountClosed"
        if source.status == "frozen":
            return "AccountFrozen"
        if target.status == "closed" and hold.to_region is None:
            return "AccountClosed"
        consumed = min(amount, hold.remaining)
        if not self.can_spend(source, amount, consumed):
            return "InsufficientFunds"
        source.pending -= consumed
        hold.captured += amount
        hold.consumed += consumed
        if hold.consumed >= hold.amount:
            hold.status = "captured"
        if hold.to_region is not None:
            # The destination judges its account when the capture arrives;
            # refused, the amount comes back (posted, no longer held) and
            # the capture still counts against the hold.
            refusal = None
            if target.status == "closed":
                refusal = "AccountClosed"
            elif target.currency != source.currency:
                refusal = "CurrencyMismatch"
            self.abroad["returned" if refusal else "arrived"] += 1
            if refusal is not None:
                return refusal
            self.clearing[(source.region, hold.to_region, source.currency)] += amount
            self.clearing[(hold.to_region, source.region, source.currency)] -= amount
        source.balance -= amount
        target.balance += amount
        return "captured"

    def release(self, hold_id: str, ending: str) -> str:
        """A void (or an expiry the simulator waited for)."""
        hold = self.holds[hold_id]
        if hold.status == ending:
            return ending  # the same ending, asked again
        if hold.status == "expired":
            return "HoldExpired"
        if hold.status != "open":
            return "HoldNotOpen"
        self.accounts[hold.source].pending -= hold.remaining
        hold.status = ending
        return ending

    def extend(self, hold_id: str) -> str:
        # (A hold that ended has a closed workflow: the SDK says HoldNotOpen.)
        return "extended" if self.holds[hold_id].status == "open" else "HoldNotOpen"

    # -- multi-leg transactions --------------------------------------------------

    def transact(self, tid: str, legs: tuple[tuple[str, str, int, str], ...], region: str) -> str:
        """`confirmed` or the refusal, applied (a malformed one is refused
        before anything and records nothing)."""
        sums: Counter[str] = Counter()
        for _, side, amount, currency in legs:
            sums[currency] += -amount if side == "debit" else amount
        if any(sums.values()):
            return "InvalidAmount"
        known = self.txs.get(tid)
        if known is not None:
            return known[1] if known[0] == legs else "DuplicateTransactionMismatch"
        answer = self._transact(legs, region)
        self.txs[tid] = (legs, answer)
        return answer

    def _transact(self, legs: tuple[tuple[str, str, int, str], ...], region: str) -> str:
        for account_id, side, _, currency in legs:
            account = self.accounts.get(account_id)
            if account is None or account.region != region:
                return "AccountNotFound"
            if account.status == "closed":
                return "AccountClosed"
            if account.status == "frozen" and side == "debit":
                return "AccountFrozen"
            if account.currency != currency:
                return "CurrencyMismatch"
        for account_id, side, amount, _ in legs:
            if side == "debit" and not self.can_spend(self.accounts[account_id], amount):
                return "InsufficientFunds"
        for account_id, side, amount, _ in legs:
            self.accounts[account_id].balance += -amount if side == "debit" else amount
        return "confirmed"

    def decide_change(self, change_id: str, change: Change) -> str:
        """`applied`, or the refusal's type, by the rules alone."""
        known = self.changes.get((change.account_id, change_id))
        if known is not None:
            first, answer = known
            return answer if first == change else "DuplicateChangeMismatch"
        account = self.accounts.get(change.account_id)
        if account is None:
            return "AccountUnknown"
        if (account.status, change.action) not in TRANSITIONS:
            return "AccountStateConflict"
        if change.action == "close" and account.pending != 0:
            return "AccountHasOpenHolds"
        if change.action == "close" and account.balance != 0:
            return "AccountNotEmpty"
        return "applied"

    def record_change(self, change_id: str, change: Change, answer: str) -> None:
        key = (change.account_id, change_id)
        if key in self.changes or answer == "DuplicateChangeMismatch":
            return
        self.changes[key] = (change, answer)
        if answer == "applied":
            account = self.accounts[change.account_id]
            account.status = TRANSITIONS[(account.status, change.action)]

    def record(
        self, tid: str, payload: Payload, outcome: Outcome, region: str, to_region: str | None
    ) -> None:
        """Apply a new id's outcome to the balances (once)."""
        if tid in self.transfers or outcome.status == "DuplicateTransferMismatch":
            return
        self.transfers[tid] = (payload, outcome, region, to_region)
        if outcome.status != "confirmed":
            return  # rejected: nothing moved; reversed: paid out and back
        self.accounts[payload.source].balance -= payload.amount
        self.accounts[payload.target].balance += payload.amount
        if to_region is not None:
            self.clearing[(region, to_region, payload.currency)] += payload.amount
            self.clearing[(to_region, region, payload.currency)] -= payload.amount
