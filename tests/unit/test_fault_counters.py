"""The fault suite's and the simulator's counters can fail: each one, fed
the state a particular broken build would leave behind, counts it (and a
correct ledger's state counts nothing)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.tools.checks import Expected, Facts, judge

LOCAL = Expected("confirmed", "us")
CROSS = Expected("confirmed", "us", "eu")
REVERSED = Expected("reversed", "us", "eu")
REJECTED = Expected("rejected", "us")


def facts(records: dict[tuple[str, str], str], posted: set[tuple[str, str]]) -> Facts:
    return Facts(records={"t": records}, posted={"t": posted} if posted else {})


def test_a_correct_ledgers_state_counts_nothing() -> None:
    cases = [
        (LOCAL, facts({("us", "local"): "confirmed"}, {("us", "local")})),
        (CROSS, facts({("us", "outbound"): "confirmed", ("eu", "inbound"): "confirmed"},
                      {("us", "outbound"), ("eu", "inbound")})),
        (REVERSED, facts({("us", "outbound"): "confirmed", ("eu", "inbound"): "rejected",
                          ("us", "reversal"): "confirmed"},
                         {("us", "outbound"), ("us", "reversal")})),
        (REJECTED, facts({("us", "local"): "rejected"}, set())),
        (Expected("refused", "us"), Facts()),
    ]  # fmt: skip
    for want, state in cases:
        counters = judge(state, {"t": want}, {"t": [want.outcome] * 3})
        assert counters.clean, (want, counters)


@pytest.mark.parametrize(
    ("broken_build", "want", "state", "observed", "counter"),
    [
        ("answers before it commits", LOCAL, facts({}, set()), None, "lost"),
        ("forgets to record a rejection", REJECTED, facts({}, set()), None, "lost"),
        ("posts a resubmission again in another region", LOCAL,
         facts({("us", "local"): "confirmed", ("eu", "local"): "confirmed"},
               {("us", "local"), ("eu", "local")}), None, "posted_twice"),
        ("takes a local posting for a source leg (issue 12)", LOCAL,
         facts({("us", "local"): "confirmed", ("eu", "inbound"): "confirmed"},
               {("us", "local"), ("eu", "inbound")}), None, "posted_twice"),
        ("reverses a transfer that arrived late", CROSS,
         facts({("us", "outbound"): "confirmed", ("eu", "inbound"): "confirmed",
                ("us", "reversal"): "confirmed"},
               {("us", "outbound"), ("eu", "inbound"), ("us", "reversal")}), None,
         "arrival_and_reversal"),
        ("credits the far side after a refused source leg (issue 12)", REJECTED,
         facts({("us", "outbound"): "rejected", ("eu", "inbound"): "confirmed"},
               {("eu", "inbound")}), None, "credited_without_debit"),
        ("records confirmed but answers rejected", REJECTED,
         facts({("us", "local"): "confirmed"}, {("us", "local")}), None, "outcome_mismatch"),
        ("answers a re-run with another outcome", REJECTED,
         facts({("us", "local"): "rejected"}, set()), {"t": ["rejected", "confirmed"]},
         "outcome_changed"),
    ],
)  # fmt: skip
def test_each_counter_counts_what_its_broken_build_leaves(
    broken_build: str,
    want: Expected,
    state: Facts,
    observed: dict[str, list[str]] | None,
    counter: str,
) -> None:
    counters = judge(state, {"t": want}, observed)
    assert getattr(counters, counter) >= 1, (broken_build, counters)
    assert not counters.clean and any(e.startswith(f"{counter}: ") for e in counters.examples)


def test_the_ledger_wide_counters() -> None:
    finding = "us: account 'alice', version 3: hash does not match content"
    state = Facts(sums=Counter({"USD": 5, "EUR": 0}), diverged=["us/alice"], findings=[finding])
    counters = judge(state, {})
    assert (counters.double_entry, counters.read_model_diverged, counters.verify_findings) == (
        1, 1, 1)  # fmt: skip
    assert "double_entry: USD sums to 5" in counters.examples
