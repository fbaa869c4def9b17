"""A naive full resend, the baseline a first sync is judged against:
`.venv/bin/python bench/naive_resend.py [--members N] [--shape invalid_phones]`.

What a peer like drt does on every run, stripped to its cost: read the whole table, and POST its raw rows
as JSON in 1,000-row requests to a local HTTP sink (a keep-alive loopback server that reads each body and
answers 200). No normalisation, no hashing, no ledger, no diff: it never ends exactly right (deletes are
never sent), it only sets the time to beat. The table is `bench/run_bench.py`'s, built the same way for
the same shape, so `run_bench.py N --shape S` and this command time the same rows.
"""

from __future__ import annotations

import argparse
import http.server
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import SHAPES, build_warehouse  # noqa: E402

BATCH = 1_000


class _Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as an SDK's session would
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.received(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))  # a platform reads what it is sent
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def received(self, body) -> None:
        """What a sink that counts does with each parsed body (``bench/drt_peer.py``)."""

    def log_message(self, *args) -> None:
        pass


def _serve(ready) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    ready.put(server.server_address[1])
    server.serve_forever()


def resend(path: Path, url: str) -> tuple[int, int]:
    """POST every row of ``members`` in ``BATCH``-row JSON requests; returns (rows, requests)."""
    con = duckdb.connect(str(path), read_only=True)
    cursor = con.execute("SELECT * FROM members")
    names = [d[0] for d in cursor.description]
    session = requests.Session()
    rows = calls = 0
    while batch := cursor.fetchmany(BATCH):
        session.post(url, json={"rows": [dict(zip(names, map(str, row))) for row in batch]}).raise_for_status()
        rows, calls = rows + len(batch), calls + 1
    con.close()
    return rows, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--shape", default="invalid_phones", choices=SHAPES)
    args = parser.parse_args()
    ready = multiprocessing.Queue()
    sink = multiprocessing.Process(target=_serve, args=(ready,), daemon=True)  # its own process: its own GIL
    sink.start()
    port = ready.get(timeout=30)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        build_warehouse(path, args.members, args.shape)
        started = time.perf_counter()
        rows, calls = resend(path, f"http://127.0.0.1:{port}/rows")
        seconds = time.perf_counter() - started
    sink.terminate()
    sink.join()
    print(f"naive full resend, shape {args.shape}: {rows:,} rows in {calls:,} requests, {seconds:.2f} s"
          f" ({seconds / rows * 1e6:.1f} us per row)")


if __name__ == "__main__":
    main()
