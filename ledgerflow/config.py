"""Settings: what the ledger runs with, derived from the environment.

The variables themselves, their types, defaults and meanings are declared
once, in `ledgerflow.environment.Environment` (the README's configuration
table is generated from it). `Settings.from_env` validates the environment
against that declaration and derives what the code uses: one URL per region
and role, which endpoints were given (only endpoints that were *not* given
get an embedded server from `dev up`), and the Temporal connection, which
follows Temporal's own conventions (`TEMPORAL_*` variables and the client
configuration file's profiles, `temporalio.envconfig`) with the
`LEDGERFLOW_TEMPORAL_*` variables as overrides.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from ledgerflow.environment import Environment

if TYPE_CHECKING:
    from temporalio.envconfig import ClientConfigProfile

DEFAULT_REGIONS = ("us", "eu", "ap")
#: The embedded PostgreSQL's passwords, per role, next to its data directory
#: (`<state dir>/postgres/secrets.json`, mode 0600; written by `dev up`).
EMBEDDED_SECRETS_FILE = "secrets.json"
#: What an append batch carries by default (`LEDGERFLOW_GROUP_COMMIT_MAX`).
GROUP_COMMIT_MAX = Environment.model_fields["group_commit_max"].default
GROUP_COMMIT_WRITERS = Environment.model_fields["group_commit_writers"].default


def _per_region(env: Mapping[str, str], name: str, regions: tuple[str, ...]) -> dict[str, str]:
    """`<name>_<REGION>` for each region that sets it."""
    return {r: url for r in regions if (url := env.get(f"{name}_{r.upper()}"))}


@dataclass(frozen=True)
class Settings:
    """What the ledger runs with (built by `from_env`; the defaults and
    meanings are `Environment`'s).

    `*_given` flags record whether an endpoint came from the environment: only
    endpoints that were *not* given get an embedded server from `dev up`.
    """

    state_dir: Path
    regions: tuple[str, ...]
    default_region: str
    task_queue_prefix: str

    # Temporal
    temporal_address: str
    temporal_address_given: bool
    temporal_namespace: str
    temporal_ui_port: int
    #: Temporal Cloud or a secured cluster: an API key implies TLS.
    temporal_api_key: str | None = field(repr=False)
    temporal_tls: bool
    #: The whole connection (address, namespace, API key, TLS and mTLS) as
    #: Temporal's client configuration describes it.
    temporal_profile: ClientConfigProfile = field(repr=False)

    # PostgreSQL: one database per region. `{region}` in a URL template is
    # replaced by the region name; LEDGERFLOW_DATABASE_URL_<REGION> overrides
    # one region entirely.
    pg_port: int
    database_url_template: str
    migration_url_template: str
    reader_url_template: str
    pruner_url_template: str
    database_urls: Mapping[str, str]
    migration_urls: Mapping[str, str]
    reader_urls: Mapping[str, str]
    pruner_urls: Mapping[str, str]
    database_given: bool
    db_pool_size: int
    db_pool_timeout_s: float
    db_lock_timeout_ms: int
    db_statement_timeout_ms: int
    db_idle_in_transaction_timeout_ms: int
    #: Group commit of appends: up to this many concurrent postings share one
    #: transaction (1: each its own), with at most `db_group_commit_writers`
    #: such transactions in flight per worker and region. One writer measured
    #: best on the 2-core machine, where PostgreSQL and the worker share the
    #: CPUs (docs/PERFORMANCE.md); a database on its own host may want more.
    db_group_commit_max: int
    db_group_commit_writers: int

    # S3 (the archive). moto[server] by default.
    s3_endpoint_url: str
    s3_endpoint_given: bool
    s3_bucket: str
    s3_region: str
    #: Per request; an S3 that does not answer in time is "unavailable" and
    #: the archive step retries with backoff.
    s3_connect_timeout_s: float
    s3_read_timeout_s: float

    #: Prometheus metrics of the workers: region i serves on this port + i.
    metrics_port: int | None

    # The event stream: a NATS JetStream server per region (docs/STREAM.md).
    #: `{region}` is replaced; LEDGERFLOW_NATS_URL_<REGION> overrides one region.
    nats_url_template: str
    nats_urls: Mapping[str, str]
    nats_given: bool
    nats_port: int
    #: Workers publish their region's events (the relay).
    stream_relay: bool
    stream_replicas: int

    # Workers. (Activity timeouts and retries live in the workflow code: a
    # change to them is a change to the workflow.)
    worker_shutdown_grace: timedelta
    #: How long a starting worker waits for its database and Temporal.
    worker_start_wait: timedelta
    #: The workflow sandbox: `passthrough` or `strict` (workers/regional.py).
    workflow_sandbox: str

    # Payload encryption (ledgerflow/codec.py), off unless keys are given.
    #: `id:base64key,...` (32-byte AES-256 keys); every key opens old payloads.
    codec_keys: str | None = field(repr=False)
    #: The key new payloads are sealed with (default: the first one).
    codec_key_id: str | None
    #: Bearer token the codec server requires of the Web UI and CLI.
    codec_server_token: str | None = field(repr=False)
    codec_server_port: int
    api_port: int
    api_host: str
    api_max_body_bytes: int
    api_rate_per_s: int
    api_token_cache_s: float
    api_confirm_within: timedelta

    # The S3 archive (ArchiveWorkflow) and its schedule.
    #: How often each region's archive schedule runs.
    archive_interval: timedelta
    #: Only events at least this old are archived; never less than the
    #: reconciliation window, so reconciliation always reads the hot store.
    archive_min_age: timedelta
    #: The window a reconciliation run re-checks (ReconcileWorkflow).
    reconcile_window: timedelta
    #: Target events per segment (a transaction is never split across two).
    archive_segment_events: int
    #: Object lock (compliance mode) on every archive object; 0 days: no lock.
    archive_retention: timedelta
    #: Prune archived, verified events from the hot store after archiving.
    archive_prune: bool
    #: How long one archive step retries an unreachable S3 before the run fails.
    archive_retry_window: timedelta
    #: Create or update the archive schedules when a worker starts.
    schedules_on_worker_start: bool

    # Reconciliation (ReconcileWorkflow) and its schedule. It runs on the
    # default region's task queue and keeps its reports in that region's database.
    #: How often the `reconcile` schedule runs.
    reconcile_interval: timedelta
    #: A cross-region transfer may stay in transit this long before
    #: reconciliation reports it.
    in_transit_sla: timedelta
    #: How long a run waits for one region's worker before reporting it unreachable.
    reconcile_region_timeout: timedelta

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        e = Environment.read(env)
        regions = tuple(r.strip().lower() for r in e.regions.split(",") if r.strip())
        if not regions:
            raise ValueError("LEDGERFLOW_REGIONS names no region")
        default_region = (e.default_region or regions[0]).lower()
        if default_region not in regions:
            raise ValueError(
                f"LEDGERFLOW_DEFAULT_REGION={default_region!r} is not one of {regions}"
            )
        if e.archive_min_age_s < e.reconcile_window_s:
            raise ValueError(
                f"LEDGERFLOW_ARCHIVE_MIN_AGE_S ({e.archive_min_age_s:g}) must not be less than "
                f"LEDGERFLOW_RECONCILE_WINDOW_S ({e.reconcile_window_s:g}): events inside the "
                "reconciliation window stay in the hot store"
            )
        per_region = _per_region(env, "LEDGERFLOW_DATABASE_URL", regions)
        embedded = f"postgresql+asyncpg://{{role}}@127.0.0.1:{e.pg_port}/ledgerflow_{{{{region}}}}"
        # A given database has no owner or pruner to assume: only given ones.
        given_db = e.database_url is not None or bool(per_region)
        temporal = _temporal(env, e)
        nats_urls = _per_region(env, "LEDGERFLOW_NATS_URL", regions)
        return cls(
            state_dir=e.state_dir.absolute(),
            regions=regions,
            default_region=default_region,
            task_queue_prefix=e.task_queue_prefix,
            temporal_address=temporal.address or f"127.0.0.1:{e.temporal_port}",
            temporal_address_given=temporal.address is not None,
            temporal_namespace=temporal.namespace or "default",
            temporal_ui_port=e.temporal_ui_port,
            temporal_api_key=temporal.api_key,
            temporal_tls=temporal.tls is not None and not temporal.tls.disabled,
            temporal_profile=temporal,
            pg_port=e.pg_port,
            database_url_template=e.database_url or embedded.format(role="ledgerflow_app"),
            # Never the app role's URL: migrations run as the schema owner, and a
            # given database without a given owner URL has no owner to migrate as.
            migration_url_template=e.migration_database_url
            or ("" if given_db else embedded.format(role="ledgerflow_owner")),
            pruner_url_template=e.pruner_database_url
            or ("" if given_db else embedded.format(role="ledgerflow_pruner")),
            reader_url_template=e.reader_database_url
            or e.database_url
            or embedded.format(role="ledgerflow_reader"),
            database_urls=per_region,
            migration_urls=_per_region(env, "LEDGERFLOW_MIGRATION_DATABASE_URL", regions),
            reader_urls=_per_region(env, "LEDGERFLOW_READER_DATABASE_URL", regions),
            pruner_urls=_per_region(env, "LEDGERFLOW_PRUNER_DATABASE_URL", regions),
            # The embedded server is needed unless every region's database is given.
            database_given=e.database_url is not None or set(per_region) == set(regions),
            db_pool_size=e.db_pool_size,
            db_pool_timeout_s=e.db_pool_timeout_s,
            db_lock_timeout_ms=e.db_lock_timeout_ms,
            db_statement_timeout_ms=e.db_statement_timeout_ms,
            db_idle_in_transaction_timeout_ms=e.db_idle_in_transaction_timeout_ms,
            db_group_commit_max=e.group_commit_max,
            db_group_commit_writers=e.group_commit_writers,
            s3_endpoint_url=e.s3_endpoint_url or f"http://127.0.0.1:{e.s3_port}",
            s3_endpoint_given=e.s3_endpoint_url is not None,
            s3_bucket=e.s3_bucket,
            s3_region=e.s3_region,
            s3_connect_timeout_s=e.s3_connect_timeout_s,
            s3_read_timeout_s=e.s3_read_timeout_s,
            metrics_port=e.metrics_port or None,
            nats_url_template=e.nats_url or "",
            nats_urls=nats_urls,
            nats_given=e.nats_url is not None or set(nats_urls) == set(regions),
            nats_port=e.nats_port,
            stream_relay=e.stream_relay,
            stream_replicas=e.stream_replicas,
            worker_shutdown_grace=timedelta(seconds=e.worker_shutdown_grace_s),
            worker_start_wait=timedelta(seconds=e.worker_start_wait_s),
            workflow_sandbox=e.workflow_sandbox,
            codec_keys=e.codec_keys,
            codec_key_id=e.codec_key_id,
            codec_server_token=e.codec_server_token,
            codec_server_port=e.codec_server_port,
            api_port=e.api_port,
            api_host=e.api_host,
            api_max_body_bytes=e.api_max_body_bytes,
            api_rate_per_s=e.api_rate_per_s,
            api_token_cache_s=e.api_token_cache_s,
            api_confirm_within=timedelta(seconds=e.api_confirm_within_s),
            archive_interval=timedelta(seconds=e.archive_interval_s),
            archive_min_age=timedelta(seconds=e.archive_min_age_s),
            reconcile_window=timedelta(seconds=e.reconcile_window_s),
            archive_segment_events=e.archive_segment_events,
            archive_retention=timedelta(days=e.archive_retention_days),
            archive_prune=e.archive_prune,
            archive_retry_window=timedelta(seconds=e.archive_retry_window_s),
            schedules_on_worker_start=e.schedules,
            reconcile_interval=timedelta(seconds=e.reconcile_interval_s),
            in_transit_sla=timedelta(seconds=e.in_transit_sla_s),
            reconcile_region_timeout=timedelta(seconds=e.reconcile_region_timeout_s),
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

    def nats_url(self, region: str) -> str:
        """Region `region`'s NATS server: its own URL, the template's, or the
        embedded server's (`nats_port` + the region's index)."""
        self.require_region(region)
        if region in self.nats_urls:
            return self.nats_urls[region]
        if self.nats_url_template:
            return self.nats_url_template.format(region=region)
        return f"nats://127.0.0.1:{self.nats_port + self.regions.index(region)}"

    @property
    def stream_region(self) -> str:
        """Where the global stream is placed (and sources every region's)."""
        return self.default_region

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


def _temporal(env: Mapping[str, str], e: Environment) -> ClientConfigProfile:
    """The Temporal connection: Temporal's own profile and `TEMPORAL_*`
    variables, then the `LEDGERFLOW_TEMPORAL_*` overrides."""
    from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS

    try:
        profile = ClientConfigProfile.load(
            e.temporal_profile or env.get("TEMPORAL_PROFILE") or None,
            override_env_vars=dict(env),
        )
    except Exception as exc:  # the bridge's ConfigError: a bad file, an unknown profile
        raise ValueError(f"the Temporal client configuration: {exc}") from None
    if e.temporal_address is None and profile.address is None:
        # No server named anywhere: the embedded dev server, plain. An API key
        # or TLS settings lying around for another cluster must not reach it.
        embedded = ClientConfigProfile(namespace=e.temporal_namespace or profile.namespace)
        return embedded
    changes: dict[str, Any] = {}
    for name, value in (("address", e.temporal_address), ("namespace", e.temporal_namespace),
                        ("api_key", e.temporal_api_key)):  # fmt: skip
        if value is not None:
            changes[name] = value
    tls = profile.tls or ClientConfigTLS()
    tls_changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("client_cert", e.temporal_tls_client_cert),
            ("client_private_key", e.temporal_tls_client_key),
            ("server_root_ca_cert", e.temporal_tls_server_ca_cert),
            ("server_name", e.temporal_tls_server_name),
        )
        if value is not None
    }
    if e.temporal_tls is not None:
        if not e.temporal_tls and (e.temporal_api_key or profile.api_key):
            raise ValueError(
                "LEDGERFLOW_TEMPORAL_TLS is off but an API key is given: an API key is "
                "never sent without TLS"
            )
        tls_changes["disabled"] = not e.temporal_tls
    if tls_changes:
        changes["tls"] = replace(tls, **tls_changes)
    elif profile.tls is None and (changes.get("api_key") or profile.api_key):
        changes["tls"] = ClientConfigTLS()  # an API key implies TLS
    return replace(profile, **changes) if changes else profile
