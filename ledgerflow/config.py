"""Settings: the one declared place for configuration.

Every field is read from an environment variable (documented in the README,
"Configuration"). When an endpoint variable is not given, the embedded default
applies and `ledgerflow dev up` starts that server locally; when it is given,
nothing is started for it and the real endpoint is used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_REGIONS = ("us", "eu", "ap")
#: The embedded PostgreSQL's passwords, per role, next to its data directory
#: (`<state dir>/postgres/secrets.json`, mode 0600; written by `dev up`).
EMBEDDED_SECRETS_FILE = "secrets.json"


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _env(env, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    return (_env(env, name) or "").lower() in ("1", "true", "yes", "on")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _env(env, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _per_region(env: Mapping[str, str], name: str, regions: tuple[str, ...]) -> dict[str, str]:
    """`<name>_<REGION>` for each region that sets it."""
    return {r: url for r in regions if (url := _env(env, f"{name}_{r.upper()}"))}


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = _env(env, name)
    if raw is None:
        return default
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured, with its embedded default.

    `*_given` flags record whether an endpoint came from the environment: only
    endpoints that were *not* given get an embedded server from `dev up`.
    """

    state_dir: Path = Path(".ledgerflow")
    regions: tuple[str, ...] = DEFAULT_REGIONS
    default_region: str = "us"
    task_queue_prefix: str = "ledger"

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_address_given: bool = False
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    #: Temporal Cloud or a secured cluster: an API key implies TLS.
    temporal_api_key: str | None = None
    temporal_tls: bool = False

    # PostgreSQL: one database per region. `{region}` in a URL template is
    # replaced by the region name; LEDGERFLOW_DATABASE_URL_<REGION> overrides
    # one region entirely.
    pg_port: int = 55432
    database_url_template: str = (
        "postgresql+asyncpg://ledgerflow_app@127.0.0.1:55432/ledgerflow_{region}"
    )
    migration_url_template: str = (
        "postgresql+asyncpg://ledgerflow_owner@127.0.0.1:55432/ledgerflow_{region}"
    )
    reader_url_template: str = (
        "postgresql+asyncpg://ledgerflow_reader@127.0.0.1:55432/ledgerflow_{region}"
    )
    pruner_url_template: str = (
        "postgresql+asyncpg://ledgerflow_pruner@127.0.0.1:55432/ledgerflow_{region}"
    )
    database_urls: Mapping[str, str] = field(default_factory=dict)
    migration_urls: Mapping[str, str] = field(default_factory=dict)
    reader_urls: Mapping[str, str] = field(default_factory=dict)
    pruner_urls: Mapping[str, str] = field(default_factory=dict)
    database_given: bool = False
    db_pool_size: int = 10
    db_pool_timeout_s: float = 5.0
    db_lock_timeout_ms: int = 5_000
    db_statement_timeout_ms: int = 30_000
    db_idle_in_transaction_timeout_ms: int = 10_000
    #: Group commit of appends: up to this many concurrent postings share one
    #: transaction (1: each its own), with at most `db_group_commit_writers`
    #: such transactions in flight per worker and region. One writer measured
    #: best on the 2-core machine, where PostgreSQL and the worker share the
    #: CPUs (docs/PERFORMANCE.md); a database on its own host may want more.
    db_group_commit_max: int = 64
    db_group_commit_writers: int = 1

    # S3 (the archive). moto[server] by default.
    s3_endpoint_url: str = "http://127.0.0.1:55000"
    s3_endpoint_given: bool = False
    s3_bucket: str = "ledgerflow-archive"
    s3_region: str = "us-east-1"
    #: Per request; an S3 that does not answer in time is "unavailable" and
    #: the archive step retries with backoff.
    s3_connect_timeout_s: float = 2.0
    s3_read_timeout_s: float = 10.0

    #: Prometheus metrics of the workers: region i serves on this port + i.
    metrics_port: int | None = None

    # Workers. (Activity timeouts and retries live in the workflow code: a
    # change to them is a change to the workflow.)
    worker_shutdown_grace: timedelta = timedelta(seconds=10)
    #: The workflow sandbox: `passthrough` or `strict` (workers/regional.py).
    workflow_sandbox: str = "passthrough"

    # Payload encryption (ledgerflow/codec.py), off unless keys are given.
    #: `id:base64key,...` (32-byte AES-256 keys); every key opens old payloads.
    codec_keys: str | None = field(default=None, repr=False)
    #: The key new payloads are sealed with (default: the first one).
    codec_key_id: str | None = None
    #: Bearer token the codec server requires of the Web UI and CLI.
    codec_server_token: str | None = field(default=None, repr=False)
    codec_server_port: int = 8081

    # The S3 archive (ArchiveWorkflow) and its schedule.
    #: How often each region's archive schedule runs.
    archive_interval: timedelta = timedelta(hours=1)
    #: Only events at least this old are archived; never less than the
    #: reconciliation window, so reconciliation always reads the hot store.
    archive_min_age: timedelta = timedelta(hours=1)
    #: The window a reconciliation run re-checks (ReconcileWorkflow).
    reconcile_window: timedelta = timedelta(minutes=15)
    #: Target events per segment (a transaction is never split across two).
    archive_segment_events: int = 10_000
    #: Object lock (compliance mode) on every archive object; 0 days: no lock.
    archive_retention: timedelta = timedelta(days=2557)
    #: Prune archived, verified events from the hot store after archiving.
    archive_prune: bool = False
    #: How long one archive step retries an unreachable S3 before the run fails.
    archive_retry_window: timedelta = timedelta(minutes=10)
    #: Create or update the archive schedules when a worker starts.
    schedules_on_worker_start: bool = True

    # Reconciliation (ReconcileWorkflow) and its schedule. It runs on the
    # default region's task queue and keeps its reports in that region's database.
    #: How often the `reconcile` schedule runs.
    reconcile_interval: timedelta = timedelta(minutes=5)
    #: A cross-region transfer may stay in transit this long before
    #: reconciliation reports it.
    in_transit_sla: timedelta = timedelta(minutes=10)
    #: How long a run waits for one region's worker before reporting it unreachable.
    reconcile_region_timeout: timedelta = timedelta(minutes=2)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        regions = tuple(
            r.strip().lower()
            for r in (_env(env, "LEDGERFLOW_REGIONS") or ",".join(DEFAULT_REGIONS)).split(",")
            if r.strip()
        )
        if not regions:
            raise ValueError("LEDGERFLOW_REGIONS names no region")
        default_region = (_env(env, "LEDGERFLOW_DEFAULT_REGION") or regions[0]).lower()
        if default_region not in regions:
            raise ValueError(
                f"LEDGERFLOW_DEFAULT_REGION={default_region!r} is not one of {regions}"
            )
        pg_port = _int(env, "LEDGERFLOW_PG_PORT", cls.pg_port)
        db_template = _env(env, "LEDGERFLOW_DATABASE_URL")
        mig_template = _env(env, "LEDGERFLOW_MIGRATION_DATABASE_URL")
        per_region = _per_region(env, "LEDGERFLOW_DATABASE_URL", regions)
        per_region_mig = _per_region(env, "LEDGERFLOW_MIGRATION_DATABASE_URL", regions)
        reader_template = _env(env, "LEDGERFLOW_READER_DATABASE_URL")
        per_region_reader = _per_region(env, "LEDGERFLOW_READER_DATABASE_URL", regions)
        temporal = _env(env, "LEDGERFLOW_TEMPORAL_ADDRESS")
        s3 = _env(env, "LEDGERFLOW_S3_ENDPOINT_URL")
        s3_port = _int(env, "LEDGERFLOW_S3_PORT", 55000)
        return cls(
            state_dir=Path(_env(env, "LEDGERFLOW_STATE_DIR") or ".ledgerflow").absolute(),
            regions=regions,
            default_region=default_region,
            task_queue_prefix=_env(env, "LEDGERFLOW_TASK_QUEUE_PREFIX") or "ledger",
            temporal_address=temporal or f"127.0.0.1:{_int(env, 'LEDGERFLOW_TEMPORAL_PORT', 7233)}",
            temporal_address_given=temporal is not None,
            temporal_namespace=_env(env, "LEDGERFLOW_TEMPORAL_NAMESPACE") or "default",
            temporal_ui_port=_int(env, "LEDGERFLOW_TEMPORAL_UI_PORT", 8233),
            temporal_api_key=_env(env, "LEDGERFLOW_TEMPORAL_API_KEY"),
            temporal_tls=_flag(env, "LEDGERFLOW_TEMPORAL_TLS")
            or _env(env, "LEDGERFLOW_TEMPORAL_API_KEY") is not None,
            pg_port=pg_port,
            database_url_template=db_template
            or f"postgresql+asyncpg://ledgerflow_app@127.0.0.1:{pg_port}/ledgerflow_{{region}}",
            # Never the app role's URL: migrations run as the schema owner, and a
            # given database without a given owner URL has no owner to migrate as.
            migration_url_template=mig_template
            or (
                ""
                if db_template or per_region
                else f"postgresql+asyncpg://ledgerflow_owner@127.0.0.1:{pg_port}/ledgerflow_{{region}}"
            ),
            pruner_url_template=_env(env, "LEDGERFLOW_PRUNER_DATABASE_URL")
            or (
                ""
                if db_template or per_region
                else f"postgresql+asyncpg://ledgerflow_pruner@127.0.0.1:{pg_port}/ledgerflow_{{region}}"
            ),
            pruner_urls=_per_region(env, "LEDGERFLOW_PRUNER_DATABASE_URL", regions),
            reader_url_template=reader_template
            or db_template
            or f"postgresql+asyncpg://ledgerflow_reader@127.0.0.1:{pg_port}/ledgerflow_{{region}}",
            database_urls=per_region,
            migration_urls=per_region_mig,
            reader_urls=per_region_reader,
            # The embedded server is needed unless every region's database is given.
            database_given=db_template is not None or set(per_region) == set(regions),
            db_pool_size=_int(env, "LEDGERFLOW_DB_POOL_SIZE", cls.db_pool_size),
            db_pool_timeout_s=_float(env, "LEDGERFLOW_DB_POOL_TIMEOUT_S", cls.db_pool_timeout_s),
            db_lock_timeout_ms=_int(env, "LEDGERFLOW_DB_LOCK_TIMEOUT_MS", cls.db_lock_timeout_ms),
            db_statement_timeout_ms=_int(
                env, "LEDGERFLOW_DB_STATEMENT_TIMEOUT_MS", cls.db_statement_timeout_ms
            ),
            db_idle_in_transaction_timeout_ms=_int(
                env,
                "LEDGERFLOW_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                cls.db_idle_in_transaction_timeout_ms,
            ),
            db_group_commit_max=_int(env, "LEDGERFLOW_GROUP_COMMIT_MAX", cls.db_group_commit_max),
            db_group_commit_writers=_int(
                env, "LEDGERFLOW_GROUP_COMMIT_WRITERS", cls.db_group_commit_writers
            ),
            s3_endpoint_url=s3 or f"http://127.0.0.1:{s3_port}",
            s3_endpoint_given=s3 is not None,
            s3_bucket=_env(env, "LEDGERFLOW_S3_BUCKET") or cls.s3_bucket,
            s3_region=_env(env, "LEDGERFLOW_S3_REGION") or cls.s3_region,
            s3_connect_timeout_s=_float(
                env, "LEDGERFLOW_S3_CONNECT_TIMEOUT_S", cls.s3_connect_timeout_s
            ),
            s3_read_timeout_s=_float(env, "LEDGERFLOW_S3_READ_TIMEOUT_S", cls.s3_read_timeout_s),
            metrics_port=_int(env, "LEDGERFLOW_METRICS_PORT", 0) or None,
            codec_keys=_env(env, "LEDGERFLOW_CODEC_KEYS"),
            codec_key_id=_env(env, "LEDGERFLOW_CODEC_KEY_ID"),
            codec_server_token=_env(env, "LEDGERFLOW_CODEC_SERVER_TOKEN"),
            codec_server_port=_int(env, "LEDGERFLOW_CODEC_SERVER_PORT", cls.codec_server_port),
            workflow_sandbox=_choice(
                env, "LEDGERFLOW_WORKFLOW_SANDBOX", ("passthrough", "strict"), cls.workflow_sandbox
            ),
            worker_shutdown_grace=timedelta(
                seconds=_float(env, "LEDGERFLOW_WORKER_SHUTDOWN_GRACE_S", 10.0)
            ),
            **_archive_settings(env),
        )

    def archive_schedule_id(self, region: str) -> str:
        return f"archive-{region}"

    reconcile_schedule_id = "reconcile"

    @property
    def reconcile_region(self) -> str:
        """Where ReconcileWorkflow runs and its reports are kept."""
        return self.default_region

    def task_queue(self, region: str) -> str:
        return f"{self.task_queue_prefix}-{region}"

    def database_url(self, region: str) -> str:
        """URL the workers use (the app role: append, never rewrite)."""
        return self._url(self.database_urls, self.database_url_template, region)

    def reader_url(self, region: str) -> str:
        """URL read-only work uses (balances, statements, audit, verify,
        reports): the reader role, which can change nothing."""
        return self._url(self.reader_urls, self.reader_url_template, region)

    def migration_url(self, region: str) -> str:
        """URL migrations run with (the schema owner role); empty when none
        was given for a database that was (`ledgerflow migrate` then refuses)."""
        return self._url(self.migration_urls, self.migration_url_template, region, shared=False)

    def pruner_url(self, region: str) -> str:
        """URL of the role that may vouch for archived segments and prune
        (`ledgerflow_pruner`); empty when none was given for a given database."""
        return self._url(self.pruner_urls, self.pruner_url_template, region, shared=False)

    def _url(
        self, given: Mapping[str, str], template: str, region: str, *, shared: bool = True
    ) -> str:
        """A region's URL for one role: its own, else (`shared`) the region's
        database URL (one URL serving every role), else the role's template."""
        self.require_region(region)
        url = (
            given.get(region)
            or (self.database_urls.get(region) if shared else None)
            or template.format(region=region)
        )
        return self.with_embedded_password(url) if url else url

    @property
    def embedded_secrets_path(self) -> Path:
        return self.state_dir / "postgres" / EMBEDDED_SECRETS_FILE

    def embedded_url(self, role: str, database: str) -> str:
        """A URL for `role` on a database of the embedded server (benchmarks'
        scratch databases, the superuser's provisioning), with its password."""
        return self.with_embedded_password(
            f"postgresql+asyncpg://{role}@127.0.0.1:{self.pg_port}/{database}"
        )

    def with_embedded_password(self, url: str) -> str:
        """A URL to the embedded server that names no password gets its role's
        password from the embedded secrets file; any other URL is used as given."""
        parts = urlsplit(url)
        if (
            parts.password is not None
            or parts.username is None
            or parts.hostname != "127.0.0.1"
            or parts.port != self.pg_port
        ):
            return url
        try:
            known = json.loads(self.embedded_secrets_path.read_text())
        except (OSError, ValueError):
            return url
        password = known.get(parts.username) if isinstance(known, dict) else None
        if not isinstance(password, str):
            return url
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{quote(parts.username, safe='')}:{quote(password, safe='')}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))

    def require_region(self, region: str) -> None:
        if region not in self.regions:
            raise ValueError(f"unknown region {region!r}; configured regions: {self.regions}")


def _archive_settings(env: Mapping[str, str]) -> dict[str, Any]:
    def seconds(name: str, default: timedelta) -> timedelta:
        value = _float(env, name, default.total_seconds())
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
        return timedelta(seconds=value)

    min_age = seconds("LEDGERFLOW_ARCHIVE_MIN_AGE_S", Settings.archive_min_age)
    window = seconds("LEDGERFLOW_RECONCILE_WINDOW_S", Settings.reconcile_window)
    if min_age < window:
        raise ValueError(
            f"LEDGERFLOW_ARCHIVE_MIN_AGE_S ({min_age.total_seconds():g}) must not be less than "
            f"LEDGERFLOW_RECONCILE_WINDOW_S ({window.total_seconds():g}): events inside the "
            "reconciliation window stay in the hot store"
        )

    def at_least_one(name: str, default: timedelta) -> timedelta:
        value = seconds(name, default)
        if value.total_seconds() < 1:
            raise ValueError(f"{name} must be at least 1")
        return value

    interval = at_least_one("LEDGERFLOW_ARCHIVE_INTERVAL_S", Settings.archive_interval)
    segment = _int(env, "LEDGERFLOW_ARCHIVE_SEGMENT_EVENTS", Settings.archive_segment_events)
    if segment < 1:
        raise ValueError("LEDGERFLOW_ARCHIVE_SEGMENT_EVENTS must be at least 1")
    days = _float(env, "LEDGERFLOW_ARCHIVE_RETENTION_DAYS", Settings.archive_retention.days)
    return {
        "archive_interval": interval,
        "archive_min_age": min_age,
        "reconcile_window": window,
        "archive_segment_events": segment,
        "archive_retention": timedelta(days=max(days, 0)),
        "archive_prune": _flag(env, "LEDGERFLOW_ARCHIVE_PRUNE"),
        "archive_retry_window": seconds(
            "LEDGERFLOW_ARCHIVE_RETRY_WINDOW_S", Settings.archive_retry_window
        ),
        "schedules_on_worker_start": (_env(env, "LEDGERFLOW_SCHEDULES") or "on").lower()
        not in ("0", "false", "no", "off"),
        "reconcile_interval": at_least_one("LEDGERFLOW_RECONCILE_INTERVAL_S",
                                           Settings.reconcile_interval),
        "in_transit_sla": seconds("LEDGERFLOW_IN_TRANSIT_SLA_S", Settings.in_transit_sla),
        "reconcile_region_timeout": at_least_one("LEDGERFLOW_RECONCILE_REGION_TIMEOUT_S",
                                                 Settings.reconcile_region_timeout),
    }  # fmt: skip
