"""Crash soak: `.venv/bin/python bench/soak.py --kills 50 [--seed N] [--members N]`.

One project, a Meta mirror sync and a Twilio trigger sync over the same segment, with a `conversions:`
rule that suppresses converters from both. A background thread records conversions steadily while
`syncer suppress --follow` runs. Each round changes the warehouse a little (members leave and re-enter),
starts one or two overlapping `syncer run` processes and `kill -9`s one of them after a random delay (so
during plan, apply or bookkeeping); now and then the suppress follower is killed too and restarted. Then
one clean recovery run, and the check prints:

- converged: Meta's audience equals the segment minus converters (hashed emails) and so does the ledger;
- diverged: members on which Meta or the ledger disagrees with that;
- texted twice: members with more texts than entries into the segment;
- never texted: consenting, unconverted members of the final segment with no text;
- re-added after conversion: converters in Meta's audience at the end.

Exits 1 unless the last four are 0. The emulators run in this process, so their state is read directly.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from destinations.twilio.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_FROM  # noqa: E402
from syncer.delivery.conversions import record_conversion  # noqa: E402
from syncer.ledger.store import Ledger  # noqa: E402
from syncer.project.project import load_project  # noqa: E402
from syncer.sandbox import Sandbox  # noqa: E402

META_TOKEN = "soak-meta-token"
TWILIO_TOKEN = "soak-twilio-token"
AUDIENCE = "901"
MESSAGE = "902"
META_SYNC, SMS_SYNC = "members_meta", "members_sms"


def email(i: int) -> str:
    return f"member{i}@example.com"


def phone(i: int) -> str:
    return f"+1415200{i:04d}"  # not 555-01xx: those are fictional numbers, rightly refused as placeholders


def email_hash(i: int) -> str:
    return hashlib.sha256(email(i).encode()).hexdigest()


def write_project(root: Path, sandbox: Sandbox) -> None:
    for sub in ("segments", "destinations", "syncs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "syncer.yml").write_text(
        "name: soak\nwarehouse_url: duckdb:///warehouse.duckdb\ngates: {max_removal_pct: 100}\n"
        "conversions:\n  url: sqlite:///events.db\n  table: conversions\n"
        # 30 days, not null: a null rule ends when the member leaves, and members leave here every round
        "  rules:\n    - {types: [purchase], segments: [members], ttl_hours: 720}\n")
    (root / "segments" / "members.yml").write_text(
        "sql: SELECT * FROM customers WHERE in_segment\nmember_key: customer_id\n"
        "identifiers: {email: email, phone: phone, country: country}\nphone_region_column: country\n"
        "consent: {sms: sms_consent}\n")
    (root / "destinations" / "meta.yml").write_text(
        f"type: meta_audience\nad_account_id: act_1\naccess_token_env: SOAK_META_TOKEN\n"
        f"endpoint: {sandbox.url}\n")
    # sandbox_time: quiet hours are judged at a fixed weekday morning, so texts are never held for the night;
    # log_settle_s 0: the emulator logs a text at once, so a recovery may trust its log at once.
    (root / "destinations" / "sms.yml").write_text(
        f"type: twilio_sms\naccount_sid_env: TWILIO_SID\nauth_token_env: TWILIO_TOKEN\nfrom_number: \"{DEFAULT_FROM}\"\n"
        f"messages:\n  \"{MESSAGE}\": \"Your cart misses you. Reply STOP to opt out.\"\n"
        f"endpoint: {sandbox.url_for('twilio')}\nlog_settle_s: 0\nsandbox_time: \"2025-06-11T10:00:00-07:00\"\n")
    (root / "syncs" / f"{META_SYNC}.yml").write_text(
        f"segment: members\ndestination: meta\naudience_id: '{AUDIENCE}'\nidentifiers: [email]\n")
    (root / "syncs" / f"{SMS_SYNC}.yml").write_text(
        f"segment: members\ndestination: sms\naudience_id: '{MESSAGE}'\nidentifiers: [phone]\nmode: trigger\n")


class Warehouse:
    """The customers table, and the soak's own record of how often each member entered the segment."""

    def __init__(self, path: Path, members: int, rng: random.Random) -> None:
        self.path, self.rng = path, rng
        self.members = members
        self.inside = set(range(1, members * 9 // 10 + 1))  # a tenth start outside, so members can enter
        self.entries = {i: int(i in self.inside) for i in range(1, members + 1)}
        con = duckdb.connect(str(path))
        con.execute(f"""CREATE TABLE customers AS
            SELECT i AS customer_id, 'member' || i || '@example.com' AS email,
                   '+1415200' || lpad(CAST(i AS VARCHAR), 4, '0') AS phone, 'US' AS country,
                   i % 10 <> 0 AS sms_consent, i <= {members * 9 // 10} AS in_segment
            FROM range(1, {members} + 1) t(i)""")
        con.close()

    def churn(self, n: int) -> None:
        leave = self.rng.sample(sorted(self.inside), n)
        enter = self.rng.sample(sorted(set(range(1, self.members + 1)) - self.inside), min(n, self.members - len(self.inside)))
        for _ in range(50):  # a killed run's DuckDB handle is gone, but a survivor may still be reading
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException:
                time.sleep(0.2)
        con.execute(f"UPDATE customers SET in_segment = FALSE WHERE customer_id IN ({','.join(map(str, leave)) or 0})")
        con.execute(f"UPDATE customers SET in_segment = TRUE WHERE customer_id IN ({','.join(map(str, enter)) or 0})")
        con.close()
        self.inside -= set(leave)
        self.inside |= set(enter)
        for i in enter:
            self.entries[i] += 1


class Conversions(threading.Thread):
    """A steady stream of purchases by members of the segment, one every `every` seconds."""

    def __init__(self, root: Path, warehouse: Warehouse, rng: random.Random, every: float) -> None:
        super().__init__(daemon=True)
        self.project, self.warehouse, self.rng, self.every = load_project(root), warehouse, rng, every
        self.converted: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            i = self.rng.choice(sorted(self.warehouse.inside))
            record_conversion(self.project, str(i))
            self.converted.add(i)


def syncer(root: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "syncer.cli", "-p", str(root), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def round_(root: Path, env: dict, rng: random.Random, max_delay: float) -> str:
    """One or two overlapping runs; one is killed after a random delay, the other finishes."""
    victim = syncer(root, env, "run")
    other = None
    if rng.random() < 0.5:
        time.sleep(rng.uniform(0, max_delay / 2))
        other = syncer(root, env, "run")
    time.sleep(rng.uniform(0, max_delay))
    alive = victim.poll() is None
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    if other is not None:
        _, err = other.communicate(timeout=600)
        if other.returncode not in (0, 5):
            print(f"# overlapping run exited {other.returncode}: {err.strip()[-300:]}", file=sys.stderr)
    return "killed" if alive else "finished before the kill"


def check(sandbox: Sandbox, root: Path, warehouse: Warehouse, converted: set[int]) -> dict[str, int]:
    expected = warehouse.inside - converted
    held_meta = {m["EMAIL"] for m in sandbox.meta.members(AUDIENCE)}
    ledger = Ledger(load_project(root).ledger_url())
    keys, _ = ledger.held_fingerprints(META_SYNC)
    ledger.close()
    ledger_keys = {int(k) for k in keys}
    by_hash = {email_hash(i): i for i in range(1, warehouse.members + 1)}
    meta_members = {by_hash.get(h, -1) for h in held_meta}
    texts: dict[str, int] = {}
    for message in sandbox.twilio.messages:
        texts[message["to"]] = texts.get(message["to"], 0) + 1
    consenting = {i for i in expected if i % 10 != 0}
    (root / "meta_audience.txt").write_text("\n".join(map(str, sorted(meta_members))))
    print(f"# Meta holds {len(meta_members - expected)} extra, lacks {len(expected - meta_members)}; the ledger holds "
          f"{len(ledger_keys - expected)} extra, lacks {len(expected - ledger_keys)}", file=sys.stderr)
    return {
        "converged": int(meta_members == expected and ledger_keys == expected),
        "diverged": len(meta_members ^ expected | ledger_keys ^ expected),
        "texted twice": sum(1 for i, n in warehouse.entries.items() if texts.get(phone(i), 0) > n),
        "never texted": sum(1 for i in consenting if texts.get(phone(i), 0) == 0),
        "re-added after conversion": len(meta_members & converted),
    }


def soak(args: argparse.Namespace, tmp: Path) -> int:
    rng = random.Random(args.seed)
    env = dict(os.environ, SOAK_META_TOKEN=META_TOKEN, SANDBOX_TWILIO_KEY=TWILIO_TOKEN, TWILIO_SID=DEFAULT_ACCOUNT_SID,
               TWILIO_TOKEN=TWILIO_TOKEN, PYTHONPATH=str(ROOT))
    os.environ.update(env)
    with Sandbox(port=0, meta_token=META_TOKEN) as sandbox:
        sandbox.meta.create_audience(AUDIENCE)
        sandbox.meta.latency = args.latency  # a slower platform widens apply, where kills and conversions matter
        write_project(tmp, sandbox)
        warehouse = Warehouse(tmp / "warehouse.duckdb", args.members, rng)
        conversions = Conversions(tmp, warehouse, random.Random(args.seed + 1), args.conversion_every)
        conversions.start()
        follower = syncer(tmp, env, "suppress", "--follow")
        atexit.register(lambda: follower.poll() is None and follower.kill())  # never leave a follower behind
        started, outcomes = time.monotonic(), {}
        for k in range(args.kills):
            if k:
                warehouse.churn(args.churn)
            outcome = round_(tmp, env, rng, args.max_delay)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if rng.random() < 0.2:
                outcomes["suppress follower killed"] = outcomes.get("suppress follower killed", 0) + 1
                follower.send_signal(signal.SIGKILL)
                follower.wait()
                follower = syncer(tmp, env, "suppress", "--follow")
        conversions.stop.set()
        conversions.join()
        time.sleep(2)  # the follower catches the last conversions, as it would in service
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=60)
        recovery = subprocess.run([sys.executable, "-m", "syncer.cli", "-p", str(tmp), "run"], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=900)
        elapsed = time.monotonic() - started
        figures = check(sandbox, tmp, warehouse, conversions.converted)
    print(f"rounds: {args.kills} ({', '.join(f'{n} {o}' for o, n in outcomes.items())}) in {elapsed:.0f}s; "
          f"{len(conversions.converted)} conversions; recovery run exited {recovery.returncode}")
    if recovery.returncode:
        print(recovery.stderr[-2000:], file=sys.stderr)
    (tmp / "recovery.log").write_text(recovery.stdout + recovery.stderr)
    for name, value in figures.items():
        print(f"{name:>26}: {value}")
    return int(any(v for name, v in figures.items() if name != "converged") or recovery.returncode != 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--churn", type=int, default=150, help="members leaving (and as many entering) per round")
    parser.add_argument("--max-delay", type=float, default=3.0, help="longest wait before a kill, seconds")
    parser.add_argument("--latency", type=float, default=0.05, help="Meta emulator latency per request, seconds")
    parser.add_argument("--conversion-every", type=float, default=0.5, help="seconds between conversions")
    parser.add_argument("--workdir", type=Path, help="keep the project, ledger and logs here (an empty directory)")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        sys.exit(soak(args, args.workdir))
    with tempfile.TemporaryDirectory(prefix="syncer-soak-") as tmp:
        sys.exit(soak(args, Path(tmp)))


if __name__ == "__main__":
    main()
