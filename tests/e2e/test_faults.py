"""The fault suite's short form (`make faults` is the long one): transfers
from concurrent clients while workers are SIGKILLed (once exactly between a
posting's commit and its answer), PostgreSQL restarts under an append, the
Temporal dev server restarts, S3 freezes under an upload and a region's NATS
server stops and starts again (with a durable stream consumer that crashes
before acknowledging), on a ledger of its own. Every counter of what can go
wrong with money must stay at zero, and every event must be in the global
stream once."""

from __future__ import annotations

from tests.tools.faults import run


async def test_faults_lose_nothing_and_post_nothing_twice() -> None:
    report = await run(transfers=200, clients=8, kills=1, seed=11, keep=False, give_up_s=180)
    assert report.faults == {
        "kill": 1, "kill-after-append": 1, "postgres": 1, "temporal": 1, "s3": 1, "nats": 1,
    }  # fmt: skip
    assert report.counters.clean, report.counters
    assert report.submitted == 200 and report.client_errors == 0 and report.unknown == 0
    assert report.confirmed + report.rejected + report.reversed == 200
    assert report.rejected > 0, "the plan includes transfers too large to be allowed"
    assert report.reversed > 0, "the plan includes transfers their destination refuses"
    assert report.archive_completed and report.s3_froze_an_upload and report.failpoint_fired
    assert report.stream_events > 0 and report.stream_unsound == []
    assert (report.stream_missing, report.stream_duplicates, report.consumer_missed) == (0, 0, 0)
    assert report.consumer_redelivered > 0, "the consumer crashed holding a batch"
    assert report.ok
