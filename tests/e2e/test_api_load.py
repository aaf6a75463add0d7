"""The short form of the API load run (`python -m tests.tools.api_load` is
the long one), on a ledger of its own so its counters judge only this run:
concurrent writers over HTTP while the API process is killed and started
again, a third of the keys sent twice at once, some again with another body,
one in ten too large; lost, posted twice, outcome mismatch, read model
diverged, double entry and verify all zero."""

from __future__ import annotations

from tests.tools.api_load import run_own


async def test_a_load_through_the_api_loses_nothing_and_posts_nothing_twice() -> None:
    """With the API process SIGKILLed a third of the way through (requests in
    flight) and started again: the clients ask again with the same keys."""
    report = await run_own(transfers=150, clients=8, seed=3, latency_samples=5, kill_api=True)
    assert report.api_kills == 1 and report.cut > 0, report
    assert report.counters.clean, report.counters
    assert (report.errors, report.answers_changed) == (0, 0), report.examples
    assert report.confirmed + report.rejected + report.reversed == 150
    assert report.duplicates > 0 and report.conflicts > 0 and report.rejected > 0
    assert report.ok
