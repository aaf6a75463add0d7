# ruff: noqa: E501 - one variable per line: the declaration reads as the table it generates
"""Every `LEDGERFLOW_*` environment variable, declared once.

`Environment` is the declaration: each field is one variable (its name is
`LEDGERFLOW_` + the field's name in capitals), with its type, its default and
what it means. `Settings.from_env` (ledgerflow/config.py) validates the
environment against it and derives the runtime settings (URLs per region and
role, which endpoints were given). The README's configuration table is
generated from it (`python -m ledgerflow.environment`), and a test fails when
the two differ.

Per-region variables (`LEDGERFLOW_DATABASE_URL_<REGION>` and the like) cannot
be fields, since the regions are themselves configured: they are listed in
`PER_REGION` and read by `Settings.from_env`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PREFIX = "LEDGERFLOW_"


class Environment(BaseSettings):
    """What can be configured, with its default (the embedded stack)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    # -- the ledger --------------------------------------------------------------
    regions: str = Field(
        "us,eu,ap", description="regions; each has a database, a task queue and a worker"
    )
    default_region: str | None = Field(
        None, description="where accounts open when no region is given (default: the first region)"
    )
    task_queue_prefix: str = Field("ledger", description="task queues are `<prefix>-<region>`")
    state_dir: Path = Field(
        Path(".ledgerflow"), description="data, logs and pid files of the embedded servers"
    )

    # -- Temporal ----------------------------------------------------------------
    temporal_address: str | None = Field(
        None,
        description="a Temporal cluster or Temporal Cloud frontend (default: `TEMPORAL_ADDRESS` or the profile's, else the embedded dev server)",
    )
    temporal_namespace: str | None = Field(
        None,
        description="namespace (default: `TEMPORAL_NAMESPACE` or the profile's, else `default`)",
    )
    temporal_profile: str | None = Field(
        None,
        description="profile of the Temporal client configuration file (default: `TEMPORAL_PROFILE`, else `default`)",
    )
    temporal_api_key: str | None = Field(
        None,
        repr=False,
        description="API key (Temporal Cloud); implies TLS (default: `TEMPORAL_API_KEY`)",
    )
    temporal_tls: bool | None = Field(
        None,
        description="`1` to connect with TLS (default: the profile's, on with an API key or a client certificate)",
    )
    temporal_tls_client_cert: Path | None = Field(
        None, description="mTLS client certificate (PEM file)"
    )
    temporal_tls_client_key: Path | None = Field(
        None, description="mTLS client private key (PEM file)"
    )
    temporal_tls_server_ca_cert: Path | None = Field(
        None, description="CA certificate to verify the server by (PEM file)"
    )
    temporal_tls_server_name: str | None = Field(None, description="server name to verify (SNI)")
    temporal_port: int = Field(7233, ge=1, le=65535, description="port of the embedded dev server")
    temporal_ui_port: int = Field(
        8233, ge=1, le=65535, description="port of the embedded dev server's Web UI"
    )

    # -- PostgreSQL --------------------------------------------------------------
    database_url: str | None = Field(
        None,
        description="app-role URL template; `{region}` is replaced, e.g. `postgresql+asyncpg://app@db/ledgerflow_{region}` (default: embedded)",
    )
    migration_database_url: str | None = Field(
        None,
        description="URL of the schema owner, used by `ledgerflow migrate`, never the app role's (default: the embedded owner role; none if the database URL is given)",
    )
    pruner_database_url: str | None = Field(
        None,
        description="URL of the pruner role: `archive prune`, and workers with `LEDGERFLOW_ARCHIVE_PRUNE=1` (default: the embedded pruner role; none if the database URL is given)",
    )
    reader_database_url: str | None = Field(
        None,
        description="URL of the read-only role: the SDK's reads, `balance`, `statement`, `audit`, `verify`, `archive status|verify`, `reconcile report`; a replica works (default: the embedded reader role, else the database URL)",
    )
    pg_port: int = Field(55432, ge=1, le=65535, description="port of the embedded PostgreSQL")
    db_pool_size: int = Field(10, ge=1, description="connections per worker process and region")
    db_pool_timeout_s: float = Field(
        5.0, gt=0, description="wait for a pooled connection (kept below the 10 s activity timeout)"
    )
    group_commit_max: int = Field(
        64,
        ge=1,
        description="most transfers one append transaction carries (`1`: one transaction each)",
    )
    group_commit_writers: int = Field(
        1,
        ge=1,
        description="append transactions in flight per worker and region (one measured best on 2 cores shared with PostgreSQL)",
    )
    db_lock_timeout_ms: int = Field(5_000, ge=0, description="`lock_timeout` of every session")
    db_statement_timeout_ms: int = Field(
        30_000, ge=0, description="`statement_timeout` of every session"
    )
    db_idle_in_transaction_timeout_ms: int = Field(
        10_000, ge=0, description="`idle_in_transaction_session_timeout` of every session"
    )

    # -- S3 ----------------------------------------------------------------------
    s3_endpoint_url: str | None = Field(
        None,
        description="S3 or MinIO endpoint; credentials are the usual `AWS_*` variables (default: embedded)",
    )
    s3_port: int = Field(55000, ge=1, le=65535, description="port of the embedded S3 server")
    s3_bucket: str = Field("ledgerflow-archive", description="the archive's bucket")
    s3_region: str = Field("us-east-1", description="the bucket's AWS region")
    s3_connect_timeout_s: float = Field(
        2.0,
        gt=0,
        description="per S3 request; past it S3 counts as unavailable and the step retries",
    )
    s3_read_timeout_s: float = Field(
        10.0,
        gt=0,
        description="per S3 request; past it S3 counts as unavailable and the step retries",
    )

    # -- the event stream (NATS JetStream) ---------------------------------------
    nats_url: str | None = Field(
        None,
        description="a region's NATS server, `{region}` replaced, e.g. `nats://nats-{region}:4222`; `LEDGERFLOW_NATS_URL_<REGION>` sets one region (default: embedded)",
    )
    nats_port: int = Field(
        54222,
        ge=1,
        le=65000,
        description="client port of the first region's embedded NATS server (region i: +i; cluster +100+i, gateway +200+i, monitoring +300+i)",
    )
    stream_relay: bool = Field(
        True,
        description="`off`: workers do not publish their region's events to the stream",
    )
    stream_replicas: int = Field(
        1, ge=1, le=5, description="replicas of each stream (a real cluster: 3)"
    )

    # -- the archive and reconciliation -----------------------------------------
    archive_interval_s: float = Field(
        3600, ge=1, description="how often each region's archive Schedule runs"
    )
    archive_min_age_s: float = Field(
        3600,
        ge=0,
        description="only events at least this old are archived; at least the reconciliation window",
    )
    archive_segment_events: int = Field(
        10_000, ge=1, description="events per segment (a transaction is never split)"
    )
    archive_retention_days: float = Field(
        2557, ge=0, description="object lock (compliance) retention; `0` writes without a lock"
    )
    archive_prune: bool = Field(
        False,
        description="`1`: each archive run then verifies and prunes the hot store (the worker then holds the pruner role)",
    )
    archive_retry_window_s: float = Field(
        600,
        ge=0,
        description="how long one archive step retries an unreachable S3 before the run fails",
    )
    schedules: bool = Field(
        True,
        description="`off`: workers do not create missing Schedules at start (they never update existing ones)",
    )
    reconcile_window_s: float = Field(
        900,
        ge=0,
        description="how far back reconciliation may need the hot store; the archive cut-off may not be younger",
    )
    reconcile_interval_s: float = Field(
        300, ge=1, description="how often the `reconcile` Schedule runs"
    )
    in_transit_sla_s: float = Field(
        600,
        ge=0,
        description="how long a cross-region transfer may stay in transit before reconciliation reports it",
    )
    reconcile_region_timeout_s: float = Field(
        120,
        ge=1,
        description="how long a run waits for one region's worker before reporting it unreachable",
    )

    # -- workers -----------------------------------------------------------------
    worker_shutdown_grace_s: float = Field(
        10, ge=0, description="how long a stopping worker lets activities finish"
    )
    worker_start_wait_s: float = Field(
        60,
        ge=0,
        description="how long a starting worker waits for its database and Temporal to answer (a restart, a deploy bringing them up together) before it exits",
    )
    workflow_sandbox: Literal["passthrough", "strict"] = Field(
        "passthrough",
        description="`passthrough`: workflow code's imports load once per process (non-deterministic calls are still refused); `strict`: re-imported for every run, at a CPU cost that capped throughput here",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="workers serve Prometheus metrics on this port + region index (`0`: off)",
    )

    # -- payload encryption ------------------------------------------------------
    codec_keys: str | None = Field(
        None,
        repr=False,
        description="`id:base64key,...` (AES-256): seal every Temporal payload; every key opens old ones (default: off)",
    )
    codec_key_id: str | None = Field(
        None, description="the key new payloads are sealed with (default: the first)"
    )
    codec_server_token: str | None = Field(
        None, repr=False, description="bearer token the codec server requires of the Web UI and CLI"
    )
    codec_server_port: int = Field(
        8081, ge=1, le=65535, description="port of `ledgerflow codec-server`"
    )

    # -- the HTTP API and console -----------------------------------------------
    api_port: int = Field(
        8480,
        ge=1,
        le=65535,
        description="port of `ledgerflow api` (on 127.0.0.1 unless `LEDGERFLOW_API_HOST`)",
    )
    api_host: str = Field(
        "127.0.0.1", description="address `ledgerflow api` listens on (loopback by default)"
    )
    api_max_body_bytes: int = Field(
        65536, ge=256, description="largest request body the API reads (larger: 413)"
    )
    api_rate_per_s: int = Field(
        100, ge=1, description="requests a second a new token may make (bursts of twice that)"
    )
    api_token_cache_s: float = Field(
        5,
        ge=0,
        description="how long the API trusts a token it checked (a revocation takes at most this long)",
    )
    api_confirm_within_s: float = Field(
        10,
        gt=0,
        description="how long a write waits for its outcome before answering 504 (ask again with the same key)",
    )

    # -- diagnostics -------------------------------------------------------------
    debug: bool = Field(False, description="`1`: a CLI error prints its traceback")
    failpoints: str | None = Field(
        None,
        description="tests only: `name=transfer-id,...` crash points a worker honours (ledgerflow/failpoints.py)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what `read` hands over: an explicit mapping (tests, the
        # simulator's stacks) and the process environment take one path.
        return (init_settings,)

    @classmethod
    def read(cls, env: Mapping[str, str]) -> Environment:
        """The environment's `LEDGERFLOW_*` variables, validated (an empty
        value is unset). A bad value is a `ValueError` naming the variable."""
        given: dict[str, Any] = {
            name: env[variable]
            for name in cls.model_fields
            if (variable := cls.variable(name)) in env and env[variable] != ""
        }
        try:
            return cls(**given)
        except ValidationError as exc:
            raise ValueError(_explain(exc)) from None

    @staticmethod
    def variable(field: str) -> str:
        return PREFIX + field.upper()


#: Variables per region (`<name>_<REGION>`), beside their template's field.
PER_REGION = {
    "database_url": "one region's app-role URL, instead of the template",
    "migration_database_url": "one region's owner URL",
    "pruner_database_url": "one region's pruner URL",
    "reader_database_url": "one region's read-only URL",
}


def _explain(exc: ValidationError) -> str:
    """One line per bad variable, in words."""
    lines = []
    for error in exc.errors():
        variable = Environment.variable(str(error["loc"][0]))
        kind, ctx = error["type"], error.get("ctx", {})
        words = {
            "int_parsing": "must be an integer",
            "float_parsing": "must be a number",
            "bool_parsing": "must be on or off (1/0, true/false, yes/no)",
            "greater_than_equal": f"must be at least {ctx.get('ge')}",
            "greater_than": f"must be more than {ctx.get('gt')}",
            "less_than_equal": f"must be at most {ctx.get('le')}",
        }.get(kind)
        if kind == "literal_error":
            words = "must be one of " + str(ctx.get("expected", "")).replace("'", "").replace(
                " or ", ", "
            )
        lines.append(f"{variable} {words or error['msg']}, got {error['input']!r}")
    return "; ".join(lines)


def _default(name: str, info: Any) -> str:
    value = info.default
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def markdown_table() -> str:
    """The README's configuration table, from the declaration."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Environment.model_fields.items():
        rows.append(
            f"| `{Environment.variable(name)}` | {_default(name, info)} | {info.description} |"
        )
        if name in PER_REGION:
            rows.append(f"| `{Environment.variable(name)}_<REGION>` | | {PER_REGION[name]} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
