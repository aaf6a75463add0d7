"""The simulator's short form (`make simulate` is the long one): a seeded run
of every kind of operation and fault against a ledger of its own, checked
after every round against the independent model; the planted faults at the
end must all be found. And a deliberately wrong model must make a run fail
and shrink to a shorter sequence that still fails."""

from __future__ import annotations

from tests.tools.simulate import FAULTS, run_seeds


async def test_a_seeded_simulation_finds_nothing_wrong_and_every_planted_fault() -> None:
    [report] = await run_seeds([7], ops=90, sabotage=None, keep=False)
    assert report.failure is None, report.failure
    assert set(report.faults) == set(FAULTS), report.faults
    assert report.maintenance >= 1
    assert report.planted_found and all(report.planted_found.values()), report.planted_found
    assert report.ok


async def test_a_wrong_model_fails_the_run_and_the_sequence_is_shrunk() -> None:
    [report] = await run_seeds([8], ops=40, sabotage="limit", keep=False)
    assert report.failure is not None and "the model says" in report.failure
    assert report.shrunk is not None
    shrunk_ops = sum(len(r["ops"]) for r in report.shrunk)
    assert 1 <= shrunk_ops < report.operations, (shrunk_ops, report.operations)
