"""`make run` as a newcomer uses it: `ledgerflow dev run` brings up the whole
system from nothing, a second terminal confirms a transfer, Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ledgerflow.infra.nats import port_offsets
from ledgerflow.infra.process import find_free_base, port_free
from tests.support import distinct_free_ports


def ledgerflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerflow", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_dev_run_serves_transfers_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    temporal, ui, pg, s3, api = distinct_free_ports(5)
    env = os.environ | {
        "LEDGERFLOW_STATE_DIR": str(tmp_path / "state"),
        "LEDGERFLOW_TEMPORAL_PORT": str(temporal),
        "LEDGERFLOW_TEMPORAL_UI_PORT": str(ui),
        "LEDGERFLOW_PG_PORT": str(pg),
        "LEDGERFLOW_S3_PORT": str(s3),
        "LEDGERFLOW_API_PORT": str(api),
        "LEDGERFLOW_NATS_PORT": str(find_free_base(port_offsets(3))),
    }
    log = (tmp_path / "run.log").open("w+")
    run = subprocess.Popen(
        [sys.executable, "-m", "ledgerflow", "dev", "run"],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "Press Ctrl-C" not in Path(log.name).read_text():
            assert run.poll() is None, Path(log.name).read_text()
            assert time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.2)
        banner = Path(log.name).read_text()
        assert f"http://127.0.0.1:{ui}" in banner

        for args in (
            ["account", "open", "bank-eu", "--currency", "EUR", "--region", "eu",
             "--unlimited-overdraft"],
            ["account", "open", "anna", "--currency", "EUR", "--region", "eu"],
            ["account", "open", "aiko", "--currency", "EUR", "--region", "ap"],
        ):  # fmt: skip
            opened = ledgerflow(env, *args)
            assert opened.returncode == 0, opened.stderr
        sent = ledgerflow(env, "transfer", "--from", "bank-eu", "--to", "anna",
                          "--amount", "9.99", "--currency", "EUR")  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        assert "confirmed" in sent.stdout and "9.99 EUR" in sent.stdout
        # All three regional workers run: eu → ap crosses regions.
        crossed = ledgerflow(env, "transfer", "--from", "anna", "--to", "aiko",
                             "--amount", "1.50", "--currency", "EUR")  # fmt: skip
        assert crossed.returncode == 0, crossed.stderr
        assert "confirmed" in crossed.stdout

        # The HTTP API runs too, with the development token the banner points at.
        token = (tmp_path / "state" / "api-token").read_text().strip()
        assert (tmp_path / "state" / "api-token").stat().st_mode & 0o077 == 0
        assert f"http://127.0.0.1:{api}" in banner
        shown = _api_get(f"http://127.0.0.1:{api}/v1/accounts/anna", token)
        assert (shown["balance"], shown["region"]) == (999 - 150, "eu")

        # The workers created the archive and reconcile Schedules at start: the Web UI's
        # Schedules page lists them (this is the UI server's own API).
        url = f"http://127.0.0.1:{ui}/api/v1/namespaces/default/schedules"
        with urllib.request.urlopen(url, timeout=10) as response:
            listed = json.load(response)["schedules"]
        assert {s["scheduleId"] for s in listed} >= {
            "archive-us",
            "archive-eu",
            "archive-ap",
            "reconcile",
        }
        assert {s["info"]["workflowType"]["name"] for s in listed} == {
            "ArchiveWorkflow",
            "ReconcileWorkflow",
        }
    finally:
        run.send_signal(signal.SIGINT)
        code = run.wait(timeout=60)
    output = Path(log.name).read_text()
    assert code == 0, output
    assert output.rstrip().endswith("stopped.")
    assert all(port_free(port) for port in (temporal, ui, pg, s3, api))


def _api_get(url: str, token: str, within_s: float = 30) -> dict[str, object]:
    """GET with the token, waiting for the API to listen (it starts beside the workers)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + within_s
    while True:
        try:
            with opener.open(request, timeout=10) as response:
                answer: dict[str, object] = json.load(response)
                return answer
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
