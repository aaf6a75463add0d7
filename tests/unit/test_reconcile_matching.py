"""The cross-region checks of reconciliation, as pure logic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledgerflow.domain.model import clearing_account_id, parse_clearing_account
from ledgerflow.reconcile.matching import (
    check_pairs,
    global_totals,
    itemise_pair,
    judge_orphans,
    match_legs,
    orphans,
    settle,
)
from ledgerflow.reconcile.messages import ClearingLeg, InTransit, SourceRecord

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SLA = timedelta(minutes=10)


def leg(tid: str, region: str, peer: str, amount: int, kind: str, at: datetime = T0) -> ClearingLeg:
    return ClearingLeg(tid, region, peer, "USD", amount, kind, at)


def test_a_transfer_settles_when_its_legs_net_to_zero_in_any_order_across_runs() -> None:
    items: dict[str, InTransit] = {}
    match_legs(items, [leg("t1", "us", "eu", 500, "outbound")])
    still, wrong = settle(items, T0 + timedelta(minutes=1), SLA)
    assert [i.transfer_id for i in still] == ["t1"] and not wrong
    carried = {i.transfer_id: i for i in still}
    match_legs(carried, [leg("t1", "eu", "us", -500, "inbound")])
    assert settle(carried, T0 + timedelta(minutes=2), SLA) == ([], [])
    # The destination read before the source: the inbound waits for its outbound.
    early: dict[str, InTransit] = {}
    match_legs(early, [leg("t2", "eu", "us", -300, "inbound")])
    still, wrong = settle(early, T0, SLA)
    assert len(still) == 1 and not wrong


def test_a_reversal_settles_the_source_leg() -> None:
    items: dict[str, InTransit] = {}
    match_legs(items, [leg("t", "us", "ap", 70, "outbound"), leg("t/reversal", "us", "ap", -70,
                                                                   "reversal")])  # fmt: skip
    assert settle(items, T0, SLA) == ([], [])


def test_overdue_and_mismatched_legs_are_discrepancies_named_by_transfer() -> None:
    items: dict[str, InTransit] = {}
    match_legs(
        items,
        [
            leg("late", "us", "eu", 100, "outbound"),
            leg("odd", "us", "eu", 100, "outbound"),
            leg("odd", "eu", "us", -90, "inbound"),
        ],
    )
    still, wrong = settle(items, T0 + SLA + timedelta(seconds=1), SLA)
    assert {i.transfer_id for i in still} == {"late", "odd"}
    assert {(d.kind, d.transfer_id) for d in wrong} == {
        ("in-transit-overdue", "late"),
        ("leg-mismatch", "odd"),
    }


def test_overdue_is_not_judged_while_a_region_of_its_pair_is_behind() -> None:
    items: dict[str, InTransit] = {}
    match_legs(items, [leg("early", "eu", "us", -100, "inbound")])
    still, wrong = settle(items, T0 + 2 * SLA, SLA, up_to_date={"eu", "ap"})
    assert [i.transfer_id for i in still] == ["early"] and wrong == []
    _, wrong = settle(items, T0 + 2 * SLA, SLA, up_to_date={"eu", "us"})
    assert [(d.kind, d.transfer_id) for d in wrong] == [("in-transit-overdue", "early")]


def test_a_region_that_is_down_does_not_hide_a_stranded_transfer_between_two_others() -> None:
    """Issue 13, finding 7: ap unreachable, a us → eu transfer stranded."""
    items: dict[str, InTransit] = {}
    match_legs(items, [leg("stranded", "us", "eu", 100, "outbound"),
                       leg("to-ap", "us", "ap", 100, "outbound")])  # fmt: skip
    _, wrong = settle(items, T0 + 2 * SLA, SLA, up_to_date={"us", "eu"})
    assert [(d.kind, d.transfer_id) for d in wrong] == [("in-transit-overdue", "stranded")]


def test_clearing_pairs_must_equal_what_is_in_transit() -> None:
    us_eu, eu_us = clearing_account_id("us", "eu", "USD"), clearing_account_id("eu", "us", "USD")
    in_transit = [InTransit("t", "USD", T0, net=40, legs=["outbound@us"], pair="eu|us")]
    [ok] = check_pairs({"us": {us_eu: 140}, "eu": {eu_us: -100}}, in_transit)
    assert ok.ok and ok.regions == ["eu", "us"]
    [bad] = check_pairs({"us": {us_eu: 140}, "eu": {eu_us: -100}}, [])
    assert not bad.ok
    # A pair is only checked when both regions answered.
    assert check_pairs({"us": {us_eu: 140}}, []) == []


def test_itemising_a_pair_names_the_transfer_whose_leg_is_missing() -> None:
    us_eu = clearing_account_id("us", "eu", "USD")
    [check] = check_pairs({"us": {us_eu: 150}, "eu": {}}, [])
    legs = [
        leg("fine", "us", "eu", 100, "outbound"),
        leg("fine", "eu", "us", -100, "inbound"),
        leg("broken", "us", "eu", 50, "outbound"),
    ]
    [found] = itemise_pair(check, legs, [])
    assert (found.kind, found.transfer_id) == ("missing-leg", "broken")


def test_global_totals_and_clearing_ids() -> None:
    assert global_totals([{"USD": 5, "EUR": 0}, {"USD": -5}]) == {"EUR": 0, "USD": 0}
    assert parse_clearing_account(clearing_account_id("us", "eu", "JPY")) == ("us", "eu", "JPY")
    assert parse_clearing_account("alice") is None


def record(tid: str, status: str = "confirmed", kind: str = "outbound", amount: int = 500,
           currency: str = "USD") -> SourceRecord:  # fmt: skip
    return SourceRecord(tid, status, kind, "eu", amount, currency)


def test_arrivals_without_their_source_leg_are_asked_of_the_source_region() -> None:
    items: dict[str, InTransit] = {}
    match_legs(
        items,
        [
            leg("arrived", "eu", "us", -500, "inbound"),
            leg("returned/reversal", "us", "ap", -70, "reversal"),
            leg("left", "us", "eu", 500, "outbound"),
        ],
    )
    found = orphans(items)
    assert {r: [i.transfer_id for i in its] for r, its in found.items()} == {
        "us": ["arrived", "returned"],
    }


def test_an_orphan_is_in_transit_only_if_the_source_posted_a_matching_leg() -> None:
    items: dict[str, InTransit] = {}
    tids = ["posted", "nowhere", "refused", "local", "other-amount"]
    match_legs(items, [leg(t, "eu", "us", -500, "inbound") for t in tids])
    records = {
        "posted": record("posted"),
        "refused": record("refused", status="rejected"),
        "local": record("local", kind="local"),
        "other-amount": record("other-amount", amount=400),
    }
    wrong = judge_orphans("us", [items[t] for t in tids], records)
    assert {(d.kind, d.transfer_id) for d in wrong} == {
        ("inbound-without-outbound", "nowhere"),
        ("leg-contradiction", "refused"),
        ("leg-contradiction", "local"),
        ("leg-contradiction", "other-amount"),
    }
    assert all(d.region == "us" for d in wrong)


# -- the findings, word for word (what the report and the console show) ---------

US_EU = clearing_account_id("us", "eu", "USD")
EU_US = clearing_account_id("eu", "us", "USD")


def test_settle_names_a_mismatch_and_each_kind_of_overdue_transfer() -> None:
    from ledgerflow.reconcile.messages import Discrepancy

    items: dict[str, InTransit] = {}
    match_legs(items, [
        leg("a-settled", "us", "eu", 500, "outbound"),
        leg("a-settled", "eu", "us", -500, "inbound"),
        leg("b-mismatch", "us", "eu", 500, "outbound"),
        leg("b-mismatch", "eu", "us", -400, "inbound"),
        leg("c-left", "us", "eu", 70, "outbound"),
        leg("d-arrived", "eu", "us", -30, "inbound"),
    ])  # fmt: skip
    at_sla = settle(dict(items), T0 + SLA, SLA)
    assert [i.transfer_id for i in at_sla[0]] == ["b-mismatch", "c-left", "d-arrived"]
    assert at_sla[1] == [
        Discrepancy("leg-mismatch", "legs (outbound@us, inbound@eu) net to 100 USD, not zero",
                    transfer_id="b-mismatch"),
    ]  # fmt: skip
    late = T0 + SLA + timedelta(microseconds=1)
    _, wrong = settle(dict(items), late, SLA)
    assert wrong[1:] == [
        Discrepancy("in-transit-overdue",
                    "source leg posted, destination leg missing for 0:10:00.000001 "
                    "(SLA 0:10:00); legs: outbound@us", transfer_id="c-left"),
        Discrepancy("in-transit-overdue",
                    "destination or reversing leg without a source leg for 0:10:00.000001 "
                    "(SLA 0:10:00); legs: inbound@eu", transfer_id="d-arrived"),
    ]  # fmt: skip
    # Not judged while one region of its pair is behind; judged when both are read.
    assert settle(dict(items), late, SLA, up_to_date={"us"})[1] == at_sla[1]
    assert len(settle(dict(items), late, SLA, up_to_date={"us", "eu"})[1]) == 3


def test_an_orphan_is_judged_against_its_source_regions_record_word_for_word() -> None:
    from ledgerflow.reconcile.messages import Discrepancy

    items: dict[str, InTransit] = {}
    match_legs(items, [
        leg("t-none", "eu", "us", -500, "inbound"),
        leg("t-wrong", "eu", "us", -500, "inbound"),
        leg("t-back", "us", "eu", -20, "reversal"),
        leg("t-whole", "us", "eu", 9, "outbound"), leg("t-whole", "eu", "us", -9, "inbound"),
    ])  # fmt: skip
    found = orphans(items)
    assert {region: [i.transfer_id for i in listed] for region, listed in found.items()} == {
        "us": ["t-back", "t-none", "t-wrong"]}  # fmt: skip
    records = {
        "t-wrong": SourceRecord("t-wrong", "rejected", "local", None, 400, "USD"),
        # (a reversal of what its source region recorded: consistent)
        "t-back": SourceRecord("t-back", "confirmed", "outbound", "eu", 20, "USD"),
    }
    assert judge_orphans("us", found["us"], records) == [
        Discrepancy("inbound-without-outbound",
                    "legs (inbound@eu) moved 500 USD, but region us has no record of the "
                    "transfer: money from nowhere", region="us", transfer_id="t-none"),
        Discrepancy("leg-contradiction",
                    "legs (inbound@eu) contradict region us's record: its source leg is "
                    "rejected there; the id stands for a local posting there; it recorded 400 "
                    "USD, the legs moved 500 USD", region="us", transfer_id="t-wrong"),
    ]  # fmt: skip
    both: dict[str, InTransit] = {}
    match_legs(both, [leg("t2", "eu", "us", -5, "inbound"), leg("t2", "us", "eu", -5, "reversal")])
    [(_, [item])] = orphans(both).items()
    [contradiction] = judge_orphans("us", [item], {
        "t2": SourceRecord("t2", "confirmed", "outbound", "eu", 5, "USD")})  # fmt: skip
    assert contradiction.detail == (
        "legs (inbound@eu, reversal@us) contradict region us's record: it recorded 5 USD, the "
        "legs moved 10 USD"
    )
    fine = {"t-none": SourceRecord("t-none", "confirmed", "outbound", "eu", 500, "USD")}
    assert judge_orphans("us", [items["t-none"]], fine) == []


def test_orphans_read_regions_whose_ids_hold_an_at_sign() -> None:
    items: dict[str, InTransit] = {}
    match_legs(items, [leg("t1", "eu@2", "us@1", -5, "inbound"),
                       leg("t2", "us@1", "eu@2", -5, "reversal")])  # fmt: skip
    found = orphans(items)
    assert {r: [i.transfer_id for i in v] for r, v in found.items()} == {"us@1": ["t1", "t2"]}


def test_pairs_add_up_both_regions_accounts_and_everything_in_transit() -> None:
    from ledgerflow.reconcile.messages import PairCheck

    clearing = {
        "us": {"acct-not-clearing": 999, clearing_account_id("eu", "us", "USD"): 5,
               clearing_account_id("us", "ap", "USD"): 7, US_EU: 300},
        "eu": {EU_US: -100, clearing_account_id("eu", "us", "EUR"): 4},
    }  # fmt: skip
    in_transit = [
        InTransit("t1", "USD", T0, net=150, pair="eu|us"),
        InTransit("t2", "USD", T0, net=50, pair="eu|us"),
        InTransit("t3", "EUR", T0, net=1, pair="ap|us"),
    ]
    assert check_pairs(clearing, in_transit) == [
        PairCheck(["eu", "us"], "EUR", 4, 0),
        PairCheck(["eu", "us"], "USD", 200, 200),
    ]


def test_a_pair_that_does_not_add_up_names_each_transfer_that_does_not_net_out() -> None:
    from ledgerflow.reconcile.messages import Discrepancy, PairCheck

    check = PairCheck(["eu", "us"], "USD", 530, 500)
    legs = [
        leg("t-open", "us", "eu", 500, "outbound"),
        leg("t-short", "us", "eu", 40, "outbound"), leg("t-short", "eu", "us", -10, "inbound"),
        leg("t-done", "us", "eu", 8, "outbound"), leg("t-done/reversal", "us", "eu", -8,
                                                      "reversal"),
    ]  # fmt: skip
    open_ = [InTransit("t-open", "USD", T0, net=500, pair="eu|us")]
    assert itemise_pair(check, legs, open_) == [
        Discrepancy("missing-leg",
                    "clearing legs (outbound@us, inbound@eu) between eu and us net to 30 USD, "
                    "not zero: a leg is missing or altered", transfer_id="t-short"),
    ]  # fmt: skip
    assert itemise_pair(check, legs[:1], []) == [
        Discrepancy("missing-leg",
                    "clearing legs (outbound@us) between eu and us net to 500 USD, not zero: a "
                    "leg is missing or altered", transfer_id="t-open"),
    ]  # fmt: skip
    assert itemise_pair(check, legs[:1], open_) == [
        Discrepancy("clearing-pair",
                    "clearing accounts between eu and us hold 530 USD but 500 is in transit, "
                    "and no transfer in the hot store explains it (an archived leg, or a "
                    "posting without a transfer id)"),
    ]  # fmt: skip
    assert global_totals([{"USD": 5, "EUR": 1}, {"USD": -5}, {}]) == {"EUR": 1, "USD": 0}
