"""The fault suite's short form (`make faults` is the long one): transfers
from concurrent clients while a worker is SIGKILLed, PostgreSQL and the
Temporal dev server restart and S3 freezes during an archive run, on a stack
of its own. Nothing may be lost or posted twice."""

from __future__ import annotations

from infra.faults import run


async def test_faults_lose_nothing_and_post_nothing_twice() -> None:
    report = await run(transfers=200, clients=8, kills=1, seed=11, keep=False)
    assert report.faults == {"kill": 1, "postgres": 1, "temporal": 1, "s3": 1}
    assert (report.lost, report.duplicated, report.mismatched) == (0, 0, 0), report
    assert report.submitted == 200
    assert report.confirmed + report.rejected + report.reversed == 200
    assert report.rejected > 0, "the plan includes transfers too large to be allowed"
    assert report.double_entry_zero and report.verify_sound and report.archive_completed
    assert report.ok
