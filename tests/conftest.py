from __future__ import annotations

import os
import textwrap
from pathlib import Path

import duckdb
import pytest


@pytest.fixture(autouse=True)
def preserve_environ():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def reset_fake():
    from destinations.fake.connector import FakeDestination

    FakeDestination.reset()
    yield
    FakeDestination.reset()


CUSTOMER_COLUMNS = "customer_id BIGINT, email VARCHAR, phone VARCHAR, country VARCHAR, first_name VARCHAR, last_name VARCHAR, ads_consent BOOLEAN, in_segment BOOLEAN"


def write_customers(path: Path, rows: list[tuple]) -> None:
    """rows: (customer_id, email, phone, country, first_name, last_name, ads_consent, in_segment)."""
    import pyarrow as pa

    names = [c.split()[0] for c in CUSTOMER_COLUMNS.split(", ")]
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    _rows = pa.table({n: pa.array(list(c)) if rows else pa.array([], pa.null()) for n, c in zip(names, columns)})
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE IF EXISTS customers")
    con.execute(f"CREATE TABLE customers ({CUSTOMER_COLUMNS})")
    con.execute("INSERT INTO customers SELECT * FROM _rows")
    con.close()


def person(i: int, **overrides) -> tuple:
    row = dict(customer_id=i, email=f" Person{i}@Example.com ", phone=f"+1 415 555 {i % 10000:04d}", country="US",
               first_name="Ann", last_name="Lee", ads_consent=True, in_segment=True)
    row.update(overrides)
    return tuple(row.values())


def write_project(root: Path, *, destination: str, sync_extra: str = "", identifiers: str = "[email]",
                  ) -> Path:
    """A one-segment, one-sync project over ``root/warehouse.duckdb``; ``destination`` is its YAML body."""
    (root / "segments").mkdir(parents=True, exist_ok=True)
    (root / "destinations").mkdir(exist_ok=True)
    (root / "syncs").mkdir(exist_ok=True)
    (root / "syncer.yml").write_text(textwrap.dedent("""\
        name: test
        warehouse_url: duckdb:///warehouse.duckdb
        chunk_rows: 1000
        gates:
          max_removal_pct: 100
        """))
    (root / "segments" / "buyers.yml").write_text(textwrap.dedent("""\
        sql: SELECT * FROM customers WHERE in_segment
        member_key: customer_id
        identifiers: {email: email, phone: phone, first_name: first_name, last_name: last_name, country: country}
        phone_region_column: country
        consent: {ads: ads_consent}
        """))
    (root / "destinations" / "dest.yml").write_text(textwrap.dedent(destination))
    (root / "syncs" / "buyers_sync.yml").write_text(textwrap.dedent(f"""\
        segment: buyers
        destination: dest
        audience_id: "1001"
        identifiers: {identifiers}
        """) + textwrap.dedent(sync_extra))
    return root


def meta_on(endpoint: str) -> str:
    """The YAML of a Meta destination on the sandbox's emulator at ``endpoint``, its token in SANDBOX_META_TOKEN."""
    return f"type: meta_audience\nad_account_id: act_1\naccess_token_env: SANDBOX_META_TOKEN\nendpoint: {endpoint}\n"


FAKE = """\
type: fake
max_batch: 10
"""
