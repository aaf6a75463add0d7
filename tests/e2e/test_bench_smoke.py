"""The bench command runs (its numbers are reported, never asserted)."""

from ledgerflow.bench.latency import percentile, sequential_latency
from ledgerflow.client import LedgerClient


async def test_latency_bench_runs_and_reports_consistent_numbers(ledger: LedgerClient) -> None:
    report = await sequential_latency(ledger, count=3, region="eu", warmup=1)
    assert report.count == 3 and report.region == "eu"
    assert 0 < report.p50_ms <= report.p99_ms <= report.max_ms


def test_percentiles_are_observed_samples() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert (percentile(samples, 50), percentile(samples, 99), percentile(samples, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([7.0], 99) == 7.0
