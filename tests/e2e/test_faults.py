"""The fault suite's short form (`make faults` is the long one): transfers
from concurrent clients while workers are SIGKILLed (once exactly between a
posting's commit and its answer), PostgreSQL restarts under an append, the
Temporal dev server restarts and S3 freezes under an upload, on a ledger of
its own. Every counter of what can go wrong with money must stay at zero."""

from __future__ import annotations

from tests.tools.faults import run


async def test_faults_lose_nothing_and_post_nothing_twice() -> None:
    report = await run(transfers=200, clients=8, kills=1, seed=11, keep=False)
    assert report.faults == {
        "kill": 1, "kill-after-append": 1, "postgres": 1, "temporal": 1, "s3": 1,
    }  # fmt: skip
    assert report.counters.clean, report.counters
    assert report.submitted == 200 and report.client_errors == 0 and report.unknown == 0
    assert report.confirmed + report.rejected + report.reversed == 200
    assert report.rejected > 0, "the plan includes transfers too large to be allowed"
    assert report.reversed > 0, "the plan includes transfers their destination refuses"
    assert report.archive_completed and report.s3_froze_an_upload and report.failpoint_fired
    assert report.ok
