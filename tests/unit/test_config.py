"""Settings: every endpoint is configurable, and embedded defaults apply only when not given."""

import json
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
