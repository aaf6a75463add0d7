"""`ledgerflow dev run` (what `make run` calls): the whole system in the foreground.

Brings the embedded stack up, migrates every region, runs one worker process
per region and the HTTP API (restarting one that dies; the API's development
token is kept in the state directory), prints where to look, and waits for
Ctrl-C or SIGTERM. Then it stops the workers and only those servers that were
not already running when it started.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from ledgerflow.config import Settings
from ledgerflow.domain.errors import LedgerError
from ledgerflow.infra.stack import DevStack, ServiceStatus

WORKER_STOP_TIMEOUT_S = 20.0
RESTART_BACKOFF_S = 2.0


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _command(name: str) -> list[str]:
    """The process `name` stands for: `api`, or `worker-<region>`."""
    if name == "api":
        return [sys.executable, "-m", "ledgerflow", "api"]
    return [sys.executable, "-m", "ledgerflow", "worker", "--region", name.removeprefix("worker-")]


def _spawn(name: str, log_dir: Path) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{name}.log").open("ab")
    return subprocess.Popen(
        _command(name),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


async def dev_token(settings: Settings) -> str:
    """The development token (admin) kept in the state directory (0600),
    made on the first run and again whenever the database no longer knows it."""
    from ledgerflow.api.tokens import PostgresTokens, issue, parse
    from ledgerflow.store.postgres import create_engine

    path = settings.state_dir / "api-token"
    engine = create_engine(settings.migration_url(settings.default_region), settings, pool_size=1)
    try:
        tokens = PostgresTokens(engine)
        if path.exists():
            token = path.read_text().strip()
            try:
                record = await tokens.get(parse(token)[0])
            except LedgerError:
                record = None
            if record is not None and record.revoked_at is None:
                return token
        issued = issue("dev", ("admin",), created_by="make-run", rate_per_s=settings.api_rate_per_s)
        await tokens.add(issued.record)
    finally:
        await engine.dispose()
    path.touch(mode=0o600)
    path.write_text(issued.token + "\n")
    return issued.token


def _banner(settings: Settings, statuses: list[ServiceStatus], log_dir: Path) -> str:
    by_name = {s.name: s for s in statuses}
    api = f"http://{settings.api_host}:{settings.api_port}"
    ui = (
        f"http://127.0.0.1:{settings.temporal_ui_port}"
        if by_name["temporal"].state == "running"
        else f"(external Temporal at {settings.temporal_address})"
    )
    lines = [
        "",
        "Ledgerflow is running.",
        f"  Temporal Web UI : {ui}",
        f"  Temporal        : {settings.temporal_address}",
        f"  PostgreSQL      : {by_name['postgres'].endpoint} ({by_name['postgres'].detail})",
        f"  S3              : {by_name['s3'].endpoint}",
        "  Event stream    : "
        + ", ".join(f"{r} {settings.nats_url(r)}" for r in settings.regions)
        + " (NATS JetStream; `ledgerflow events tail --follow`)",
        f"  Workers         : {', '.join(settings.task_queue(r) for r in settings.regions)}"
        f" (logs in {log_dir})",
        f"  HTTP API        : {api} (token in {settings.state_dir / 'api-token'})",
        "",
        "Try, in another terminal:",
        "  .venv/bin/ledgerflow account open bank-us --currency USD --unlimited-overdraft",
        "  .venv/bin/ledgerflow account open alice --currency USD",
        "  .venv/bin/ledgerflow transfer --from bank-us --to alice --amount 12.50 --currency USD",
        f'  curl -H "Authorization: Bearer $(cat {settings.state_dir / "api-token"})" '
        f"{api}/v1/accounts/alice",
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def run_foreground(settings: Settings) -> int:
    stack = DevStack(settings)
    already_running = {s.name for s in stack.status() if s.state == "running"}
    log_dir = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    workers: dict[str, subprocess.Popen[bytes]] = {}
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print("starting the embedded stack ...", flush=True)
        statuses = stack.up()
        asyncio.run(stack.migrate())
        asyncio.run(dev_token(settings))
        names = [*(f"worker-{r}" for r in settings.regions), "api"]
        workers = {name: _spawn(name, log_dir) for name in names}
        print(_banner(settings, statuses, log_dir), flush=True)
        while True:
            time.sleep(1.0)
            for name, proc in list(workers.items()):
                if proc.poll() is not None:
                    print(
                        f"{name} exited with {proc.returncode}; restarting "
                        f"(see {log_dir / f'{name}.log'})",
                        flush=True,
                    )
                    time.sleep(RESTART_BACKOFF_S)
                    workers[name] = _spawn(name, log_dir)
    except _Stop:
        print("\nstopping ...", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_workers(workers)
        services = [
            ("temporal", stack.temporal),
            ("s3", stack.s3),
            *((f"nats-{n.region}", n) for n in stack.nats),
            ("postgres", stack.postgres),
        ]
        for name, service in services:  # fmt: skip
            if service is not None and name not in already_running:
                service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped.", flush=True)
    return 0


def _stop_workers(workers: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in workers.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
    for proc in workers.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
