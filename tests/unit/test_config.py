"""Settings: every endpoint is configurable, and embedded defaults apply only when not given."""

import json
import re
from pathlib import Path

import pytest

from ledgerflow.config import Settings


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Away from any `.ledgerflow` state a `make run` left in the checkout."""
    monkeypatch.chdir(tmp_path)


def test_the_embedded_passwords_come_from_the_state_directory(tmp_path: Path) -> None:
    secrets = tmp_path / "state" / "postgres" / "secrets.json"
    secrets.parent.mkdir(parents=True)
    secrets.write_text(json.dumps({"ledgerflow_app": "p/w@x", "ledgerflow_owner": "o"}))
    s = Settings.from_env({"LEDGERFLOW_STATE_DIR": str(tmp_path / "state")})
    # Quoted, so any generated password is a valid URL.
    assert s.database_url("us") == (
        "postgresql+asyncpg://ledgerflow_app:p%2Fw%40x@127.0.0.1:55432/ledgerflow_us"
    )
    assert s.migration_url("us").startswith("postgresql+asyncpg://ledgerflow_owner:o@")
    # A URL that is given, or that points elsewhere, is used as it is.
    given = Settings.from_env(
        {
            "LEDGERFLOW_STATE_DIR": str(tmp_path / "state"),
            "LEDGERFLOW_DATABASE_URL": "postgresql+asyncpg://ledgerflow_app@db/l_{region}",
        }
    )
    assert given.database_url("us") == "postgresql+asyncpg://ledgerflow_app@db/l_us"
    # Only the app role's URL given: no owner to migrate as, no pruner.
    assert given.migration_url("us") == "" and given.pruner_url("us") == ""


def test_defaults_are_the_embedded_stack() -> None:
    s = Settings.from_env({})
    assert s.regions == ("us", "eu", "ap") and s.default_region == "us"
    assert not (s.temporal_address_given or s.database_given or s.s3_endpoint_given)
    assert (
        s.database_url("eu") == "postgresql+asyncpg://ledgerflow_app@127.0.0.1:55432/ledgerflow_eu"
    )
    assert s.migration_url("eu").startswith("postgresql+asyncpg://ledgerflow_owner@")
    assert s.task_queue("ap") == "ledger-ap"


def test_given_endpoints_replace_the_defaults() -> None:
    s = Settings.from_env(
        {
            "LEDGERFLOW_TEMPORAL_ADDRESS": "temporal.internal:7233",
            "LEDGERFLOW_DATABASE_URL": "postgresql+asyncpg://app@db/ledger_{region}",
            "LEDGERFLOW_MIGRATION_DATABASE_URL": "postgresql+asyncpg://owner@db/ledger_{region}",
            "LEDGERFLOW_DATABASE_URL_AP": "postgresql+asyncpg://app@db-ap/ledger",
            "LEDGERFLOW_S3_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com",
            "LEDGERFLOW_REGIONS": "eu, ap",
        }
    )
    assert s.temporal_address == "temporal.internal:7233" and s.temporal_address_given
    assert s.database_url("eu") == "postgresql+asyncpg://app@db/ledger_eu"
    assert s.database_url("ap") == "postgresql+asyncpg://app@db-ap/ledger"
    assert s.migration_url("eu") == "postgresql+asyncpg://owner@db/ledger_eu"
    assert s.database_given and s.s3_endpoint_given and s.default_region == "eu"


def test_one_region_given_still_needs_the_embedded_server_for_the_others() -> None:
    partial = Settings.from_env({"LEDGERFLOW_DATABASE_URL_US": "postgresql+asyncpg://x@h/db"})
    assert not partial.database_given
    complete = Settings.from_env(
        {"LEDGERFLOW_REGIONS": "us", "LEDGERFLOW_DATABASE_URL_US": "postgresql+asyncpg://x@h/db"}
    )
    assert complete.database_given


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEDGERFLOW_DEFAULT_REGION": "mars"}, "not one of"),
        ({"LEDGERFLOW_PG_PORT": "five"}, "must be an integer"),
        ({"LEDGERFLOW_REGIONS": " , "}, "names no region"),
        ({"LEDGERFLOW_WORKFLOW_SANDBOX": "off"}, "must be one of passthrough, strict"),
    ],
)
def test_bad_configuration_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_the_append_path_and_sandbox_are_configurable() -> None:
    settings = Settings.from_env(
        {
            "LEDGERFLOW_GROUP_COMMIT_MAX": "8",
            "LEDGERFLOW_GROUP_COMMIT_WRITERS": "3",
            "LEDGERFLOW_WORKFLOW_SANDBOX": "strict",
        }
    )
    assert (settings.db_group_commit_max, settings.db_group_commit_writers) == (8, 3)
    assert settings.workflow_sandbox == "strict"
    assert Settings.from_env({}).workflow_sandbox == "passthrough"


def test_reads_use_the_reader_role_unless_told_otherwise() -> None:
    default = Settings.from_env({})
    assert default.reader_url("eu") == (
        "postgresql+asyncpg://ledgerflow_reader@127.0.0.1:55432/ledgerflow_eu"
    )
    assert "ledgerflow_app@" in default.database_url("eu")
    given = Settings.from_env(
        {
            "LEDGERFLOW_DATABASE_URL": "postgresql+asyncpg://app@db/{region}",
            "LEDGERFLOW_READER_DATABASE_URL_US": "postgresql+asyncpg://ro@replica/us",
        }
    )
    assert given.reader_url("us") == "postgresql+asyncpg://ro@replica/us"
    # No reader URL given for a region: the database URL serves both.
    assert given.reader_url("eu") == "postgresql+asyncpg://app@db/eu"


def test_an_unknown_region_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown region"):
        Settings.from_env({}).database_url("mars")


# -- Temporal's own conventions, then ours -----------------------------------------


def test_temporal_follows_its_own_environment_and_profiles(tmp_path: Path) -> None:
    from temporalio.service import TLSConfig

    config = tmp_path / "temporal.toml"
    config.write_text(
        '[profile.prod]\naddress = "prod.tmprl.cloud:7233"\nnamespace = "ledger.prod"\n'
        'api_key = "k"\n'
    )
    plain = Settings.from_env({"TEMPORAL_ADDRESS": "t.internal:7233", "TEMPORAL_NAMESPACE": "n"})
    assert (plain.temporal_address, plain.temporal_namespace) == ("t.internal:7233", "n")
    assert plain.temporal_address_given and not plain.temporal_tls
    prod = Settings.from_env({"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "prod"})
    assert (prod.temporal_address, prod.temporal_namespace) == (
        "prod.tmprl.cloud:7233", "ledger.prod")  # fmt: skip
    assert prod.temporal_tls, "an API key implies TLS"
    connect = prod.temporal_profile.to_client_connect_config()
    assert connect["api_key"] == "k" and isinstance(connect["tls"], TLSConfig)
    # LEDGERFLOW_TEMPORAL_* override the profile, field by field.
    ours = Settings.from_env({
        "TEMPORAL_CONFIG_FILE": str(config), "LEDGERFLOW_TEMPORAL_PROFILE": "prod",
        "LEDGERFLOW_TEMPORAL_NAMESPACE": "ledger.staging",
    })  # fmt: skip
    assert (ours.temporal_address, ours.temporal_namespace) == (
        "prod.tmprl.cloud:7233", "ledger.staging")  # fmt: skip
    assert ours.temporal_tls
    # An API key is never sent in the clear.
    with pytest.raises(ValueError, match="API key"):
        Settings.from_env({"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "prod",
                           "LEDGERFLOW_TEMPORAL_TLS": "0"})  # fmt: skip
    # A bad configuration file or an unknown profile is a clear error.
    with pytest.raises(ValueError, match="Temporal client configuration"):
        Settings.from_env({"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "nope"})
    # Nothing given: the embedded dev server, plain.
    embedded = Settings.from_env({"LEDGERFLOW_TEMPORAL_PORT": "7300"})
    assert embedded.temporal_address == "127.0.0.1:7300" and not embedded.temporal_address_given
    assert embedded.temporal_profile.to_client_connect_config() == {}
    # A key lying around for another cluster does not reach the embedded server.
    stray = Settings.from_env({"TEMPORAL_API_KEY": "for-prod"})
    assert not stray.temporal_address_given and not stray.temporal_tls
    assert stray.temporal_profile.to_client_connect_config() == {}


def test_mtls_client_certificates_reach_the_connection(tmp_path: Path) -> None:
    from temporalio.service import TLSConfig

    cert, key, ca = (tmp_path / name for name in ("client.pem", "client.key", "ca.pem"))
    for path in (cert, key, ca):
        path.write_bytes(f"-----{path.name}-----\n".encode())
    s = Settings.from_env({
        "LEDGERFLOW_TEMPORAL_ADDRESS": "secure.internal:7233",
        "LEDGERFLOW_TEMPORAL_TLS_CLIENT_CERT": str(cert),
        "LEDGERFLOW_TEMPORAL_TLS_CLIENT_KEY": str(key),
        "LEDGERFLOW_TEMPORAL_TLS_SERVER_CA_CERT": str(ca),
        "LEDGERFLOW_TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
    })  # fmt: skip
    assert s.temporal_tls
    tls = s.temporal_profile.to_client_connect_config()["tls"]
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert, tls.client_private_key, tls.server_root_ca_cert, tls.domain) == (
        cert.read_bytes(), key.read_bytes(), ca.read_bytes(), "temporal.internal")  # fmt: skip
    # The same through Temporal's own variables.
    theirs = Settings.from_env({
        "TEMPORAL_ADDRESS": "secure.internal:7233",
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(cert), "TEMPORAL_TLS_CLIENT_KEY_PATH": str(key),
    })  # fmt: skip
    assert theirs.temporal_tls
    assert theirs.temporal_profile.to_client_connect_config()["tls"].client_cert == (  # type: ignore[union-attr]
        cert.read_bytes())  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEDGERFLOW_DB_POOL_SIZE": "0"}, "LEDGERFLOW_DB_POOL_SIZE must be at least 1, got '0'"),
        ({"LEDGERFLOW_ARCHIVE_PRUNE": "maybe"}, "LEDGERFLOW_ARCHIVE_PRUNE must be on or off"),
        ({"LEDGERFLOW_S3_READ_TIMEOUT_S": "soon"}, "LEDGERFLOW_S3_READ_TIMEOUT_S must be a number"),
        ({"LEDGERFLOW_PG_PORT": "70000"}, "LEDGERFLOW_PG_PORT must be at most 65535"),
        ({"LEDGERFLOW_ARCHIVE_MIN_AGE_S": "60"}, "must not be less than"),
        ({"LEDGERFLOW_ARCHIVE_INTERVAL_S": "0.5"}, "must be at least 1"),
    ],
)
def test_each_bad_value_is_named_with_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.from_env(env)


def test_on_and_off_read_as_people_write_them() -> None:
    assert not Settings.from_env({"LEDGERFLOW_SCHEDULES": "off"}).schedules_on_worker_start
    assert Settings.from_env({"LEDGERFLOW_ARCHIVE_PRUNE": "yes"}).archive_prune
    assert Settings.from_env({"LEDGERFLOW_ARCHIVE_PRUNE": ""}).archive_prune is False
    assert Settings.from_env({"LEDGERFLOW_METRICS_PORT": "9100"}).metrics_port == 9100
    assert Settings.from_env({}).metrics_port is None


def test_the_readme_configuration_table_is_the_declaration() -> None:
    from ledgerflow.environment import markdown_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    begin, end = "<!-- configuration table: generated -->\n", "<!-- end of table -->"
    assert begin in readme and end in readme
    table = readme.split(begin, 1)[1].split(end, 1)[0]
    assert table == markdown_table(), (
        "README's configuration table differs from ledgerflow/environment.py: "
        "regenerate it with `.venv/bin/python -m ledgerflow.environment`"
    )
