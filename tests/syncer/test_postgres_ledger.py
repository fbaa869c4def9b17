"""The ledger on Postgres: a real server started for the test (the machine's PostgreSQL 15)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from destinations.fake.connector import FakeDestination
from syncer.delivery.engine import Engine
from syncer.ledger.store import Ledger
from syncer.project.project import load_project
from tests.conftest import FAKE, person, write_customers, write_project

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*args: str) -> list[str]:
    return list(args) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *args]


@pytest.fixture(scope="module")
def postgres_url():
    if not (BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 server binaries are missing; .ci/run installs the postgresql package")
    data = Path(tempfile.mkdtemp(prefix="syncer-pg-"))  # outside pytest's root-only folder: the server runs as postgres
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_postgres(str(BIN / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "syncer"), check=True,
                   capture_output=True)
    subprocess.run(_as_postgres(str(BIN / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"), "-o",
                                f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"),
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://syncer@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres(str(BIN / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_runs_converge_and_figures_land_in_a_postgres_ledger(tmp_path: Path, postgres_url: str) -> None:
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(1, 31)])
    write_project(tmp_path, destination=FAKE)
    (tmp_path / "syncer.yml").write_text((tmp_path / "syncer.yml").read_text() + f"ledger_url: {postgres_url}\n")
    project = load_project(tmp_path)
    assert project.ledger_url().startswith("postgresql")
    [first] = Engine(project).run()
    assert first.added == 30 and len(FakeDestination.audiences["1001"]) == 30
    write_customers(tmp_path / "warehouse.duckdb", [person(i) for i in range(5, 36)])
    [second] = Engine(load_project(tmp_path)).run()
    assert (second.added, second.removed) == (5, 4)
    [again] = Engine(load_project(tmp_path)).run()
    assert (again.added, again.removed, again.requests) == (0, 0, 0)
    ledger = Ledger(postgres_url)
    assert ledger.held_count("buyers_sync") == 31
    assert [r["status"] for r in ledger.history("buyers_sync")][:3] == ["ok", "ok", "ok"]
