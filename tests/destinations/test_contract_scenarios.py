"""Engine-level scenarios every connector must pass, each checked against what the platform holds.

Parametrised over ``destinations.registry.SPECS``, as ``test_contract`` is: each scenario runs the real
``Engine`` on a small DuckDB warehouse project whose destination file is the platform's sandbox
destination, and asks the emulator what the audience holds (``DestinationSpec.sandbox_holds``) instead
of trusting our ledger. A platform registered with the sandbox fields is covered with no new test code.

- a leaver who shares an identifier with a member who stays is kept, says why, and never takes the
  stayer off the platform; once the stayer leaves too, both go;
- a member whose email changes is held by the new address only, on every person of the audience;
- a row the platform refuses for good is reported once, and a run with no change sends nothing;
- a throttle whose wait outlives the run is honoured by the next run, which sends once the wait is over.

Removal scenarios run only on platforms that can remove (``Capabilities.can_remove``: a text cannot be
taken back). The refused-row scenario needs a refusal the real platform makes: a value our identity
rules accept that it refuses (``sandbox_refused_row``) or a person it refuses whatever we send
(``sandbox_refuse``); a platform with neither is left out with the reason in its skip.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from destinations.base import Capabilities
from destinations.registry import SPECS, capabilities_of
from destinations.spec import DestinationSpec
from syncer.delivery.apply import RetryPolicy
from syncer.delivery.engine import Engine, SyncReport
from syncer.identity.rows import identify
from syncer.project.project import load_project
from syncer.sandbox import Sandbox
from tests.syncer.test_engine import FakeClock  # what "now" is for the platforms' waits; tests move it

SANDBOXED = [spec for spec in SPECS.values() if spec.emulator and spec.sandbox_destination]
_RAW_KINDS = ("email", "phone", "first_name", "last_name", "country")
_COLUMNS = ("email", "phone", "first_name", "last_name", "country", "madid")
# one retry inside a run; a longer wait than max_wait defers the rest to a later run
_POLICY = RetryPolicy(attempts=3, base_wait=0.0, max_wait=60.0, jitter=0.0)
SHARED_PHONE = "+1 415 734 2290"
SHARED_EMAIL = "lee.household@example.com"


def _capabilities(spec: DestinationSpec) -> Capabilities:
    return capabilities_of(spec.config.model_validate(spec.sandbox_destination("http://127.0.0.1:9")))


def _ids(specs: Sequence[DestinationSpec], known: Mapping[str, str] | None = None) -> list[Any]:
    """One param per spec; a platform in ``known`` fails the scenario for the reason given (strict: the
    fix turns the test red until its entry is removed)."""
    known = known or {}
    return [pytest.param(spec, id=spec.type, marks=[pytest.mark.xfail(strict=True, reason=known[spec.type])]
                         if spec.type in known else []) for spec in specs]


REMOVABLE = [spec for spec in SANDBOXED if _capabilities(spec).can_remove]
TAKES_EMAIL = [spec for spec in REMOVABLE if "email" in _capabilities(spec).identifiers]
EMAIL_CHANGE_DEFECTS: dict[str, str] = {}
"""Platforms failing the changed-email scenario today, with why: defects to fix, not exclusions."""


def _refusable(spec: DestinationSpec) -> Any:
    if spec.sandbox_refused_row is not None or spec.sandbox_refuse is not None:
        return pytest.param(spec, id=spec.type)
    reason = (f"{spec.type}: the platform refuses no value our identity rules accept and its emulator knows no"
              " person it refuses (see sandbox_refused_row / sandbox_refuse in its spec)")
    return pytest.param(spec, id=spec.type, marks=pytest.mark.skip(reason=reason))


def row(i: int, **overrides: str | None) -> dict[str, str | None]:
    """Raw warehouse values of member ``i``: real-looking, distinct, and never a placeholder."""
    values: dict[str, str | None] = {"email": f" Ann.Lee{i}@Example.com ", "phone": f"+1 415 734 22{i % 100:02d}",
                                     "first_name": "Ann", "last_name": f"Lee{i}", "country": "US", "madid": None}
    values.update(overrides)
    return {"id": str(i), **values}


@dataclass
class Scenario:
    """One platform's sandbox audience and a one-sync project pointed at it."""

    spec: DestinationSpec
    emulator: Any
    root: Path
    capabilities: Capabilities
    clock: FakeClock = field(default_factory=FakeClock)
    kinds: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.emulator.request_count

    def write(self, rows: Sequence[Mapping[str, str | None]]) -> None:
        """The segment is exactly ``rows``; the sync sends ``kinds``."""
        con = duckdb.connect(str(self.root / "warehouse.duckdb"))
        try:
            con.execute("CREATE OR REPLACE TABLE people (id BIGINT, " + ", ".join(f"{c} VARCHAR" for c in _COLUMNS)
                        + ", consent BOOLEAN)")
            con.executemany(f"INSERT INTO people VALUES ({', '.join('?' * (len(_COLUMNS) + 2))})",
                            [[int(r["id"])] + [r.get(c) for c in _COLUMNS] + [True] for r in rows])
        finally:
            con.close()
        self._write_sync()

    def _write_sync(self) -> None:
        mode = "trigger" if self.capabilities.at_most_once else "mirror"
        (self.root / "syncs" / "people_sync.yml").write_text(yaml.safe_dump({
            "segment": "people", "destination": "dest", "audience_id": self.spec.sandbox_audience,
            "identifiers": self.kinds, "mode": mode}))

    def run(self) -> SyncReport:
        with Engine(load_project(self.root), policy=_POLICY, sleep=lambda seconds: None, clock=self.clock) as engine:
            [report] = engine.run()
        return report

    def sent(self, raw: Mapping[str, str | None]) -> dict[str, str]:
        """The identifiers of a raw row in the platform's format, as the connector sends them."""
        values = {k: v for k, v in raw.items() if k in _COLUMNS and v is not None}
        kinds = [k for k in self.kinds if k in values]
        return dict(identify(values, kinds, platform=self.capabilities.platform, region="US",
                             region_column_value=raw.get("country")).identifiers)

    def holds(self, raw: Mapping[str, str | None]) -> bool:
        """Whether the platform's audience holds a person matched by any identifier of this raw row."""
        return self.spec.sandbox_holds(self.emulator, self.spec.sandbox_audience, self.sent(raw))


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(port=0) as sb:
        yield sb


@pytest.fixture
def scenario(request, sandbox: Sandbox, tmp_path: Path, monkeypatch) -> Scenario:
    spec: DestinationSpec = request.param
    sandbox.reset()
    for name, value in spec.sandbox_secrets.items():
        monkeypatch.setenv(name, value)
    base = sandbox.url if spec.mount == "" else f"{sandbox.url}/{spec.mount}"
    fields = spec.sandbox_destination(base)
    config = spec.config.model_validate(fields)
    emulator = sandbox.meta if spec.mount == "" else sandbox.emulators[spec.mount]
    if spec.seed_audience is not None:
        spec.seed_audience(emulator, config, spec.sandbox_audience, "scenarios")
    capabilities = capabilities_of(config)
    _write_project(tmp_path, fields)
    kinds = [kind for kind in _RAW_KINDS if kind in capabilities.identifiers]
    return Scenario(spec, emulator, tmp_path, capabilities, kinds=kinds)


def _write_project(root: Path, destination: Mapping[str, Any]) -> None:
    for folder in ("segments", "destinations", "syncs"):
        (root / folder).mkdir(exist_ok=True)
    (root / "syncer.yml").write_text(textwrap.dedent("""\
        name: scenarios
        warehouse_url: duckdb:///warehouse.duckdb
        gates:
          max_removal_pct: 100
        """))
    # consent granted on every channel, so each platform's default channel sends every member
    (root / "segments" / "people.yml").write_text(textwrap.dedent(f"""\
        sql: SELECT * FROM people
        member_key: id
        identifiers: {{{', '.join(f'{c}: {c}' for c in _COLUMNS)}}}
        phone_region_column: country
        consent: {{ads: consent, email: consent, sms: consent}}
        """))
    (root / "destinations" / "dest.yml").write_text(yaml.safe_dump(dict(destination)))


def test_every_sandboxed_platform_can_be_read_back():
    assert SANDBOXED and all(spec.sandbox_holds is not None for spec in SANDBOXED), \
        [spec.type for spec in SANDBOXED if spec.sandbox_holds is None]


@pytest.mark.parametrize("scenario", _ids(REMOVABLE), indirect=True)
def test_a_leaver_sharing_an_identifier_with_a_stayer_never_takes_the_stayer(scenario: Scenario) -> None:
    shared = next(kind for kind in ("phone", "email") if kind in scenario.kinds and kind in scenario.capabilities.match_keys)
    value = SHARED_PHONE if shared == "phone" else SHARED_EMAIL
    leaver, stayer, other = row(1, **{shared: value}), row(2, **{shared: value}), row(3)
    scenario.write([leaver, stayer, other])
    first = scenario.run()
    assert (first.status, first.added) == ("ok", 3), first
    assert scenario.holds(leaver) and scenario.holds(stayer) and scenario.holds(other)

    scenario.write([stayer, other])  # the leaver leaves, the member it shares a value with stays
    kept = scenario.run()
    assert scenario.holds(stayer), "the stayer was taken off the platform with the leaver"
    assert (kept.status, kept.removed) == ("ok", 0), kept
    assert kept.retained == {f"retained: shares {shared} with a member who stays": 1}

    scenario.write([other])  # now the stayer leaves too: both go
    gone = scenario.run()
    assert (gone.status, gone.removed, gone.retained) == ("ok", 2, {}), gone
    assert not scenario.holds(leaver) and not scenario.holds(stayer) and scenario.holds(other)


@pytest.mark.parametrize("scenario", _ids(TAKES_EMAIL, EMAIL_CHANGE_DEFECTS), indirect=True)
def test_a_changed_email_is_held_by_the_new_address_only(scenario: Scenario) -> None:
    member, other = row(1), row(2)
    scenario.write([member, other])
    assert scenario.run().added == 2
    moved = row(1, email="ann.lee.moved1@example.com")
    scenario.write([moved, other])
    report = scenario.run()
    assert report.status == "ok" and not report.retained, report
    # by the email alone: where one person keeps several of our rows (a profile found by its phone), no
    # person of the audience may still hold the old address
    assert scenario.holds({"email": moved["email"]}), "the new email is not in the audience"
    assert not scenario.holds({"email": member["email"]}), "the old email is still in the audience"
    assert scenario.holds(other)


@pytest.mark.parametrize("scenario", [_refusable(spec) for spec in SANDBOXED], indirect=True)
def test_a_refused_row_is_reported_once_and_a_run_with_no_change_sends_nothing(scenario: Scenario) -> None:
    spec = scenario.spec
    refused = row(9, **(spec.sandbox_refused_row or {}))
    extra = [k for k, v in refused.items() if k in _COLUMNS and v and k in scenario.capabilities.identifiers]
    scenario.kinds += [k for k in extra if k not in scenario.kinds]
    members = [row(1), row(2), refused]
    scenario.write(members)
    if spec.sandbox_refuse is not None:
        spec.sandbox_refuse(scenario.emulator, scenario.sent(refused))
    first = scenario.run()
    assert (first.added, first.rejected, sum(first.reasons.values())) == (2, 1, 1), first
    assert scenario.holds(members[0]) and scenario.holds(members[1]) and not scenario.holds(refused)

    before = scenario.requests
    again = scenario.run()  # nothing changed: the refused row waits for new identifiers
    assert scenario.requests == before, "a run with no change called the platform"
    assert (again.status, again.added, again.removed, again.rejected, again.requests) == ("ok", 0, 0, 0, 0), again


@pytest.mark.parametrize("scenario", _ids(SANDBOXED), indirect=True)
def test_a_long_throttle_is_honoured_by_the_next_run(scenario: Scenario) -> None:
    members = [row(1), row(2)]
    scenario.write(members)
    stated = scenario.emulator.throttle_next(300)
    if stated is None or stated <= _POLICY.max_wait:
        what = "no wait" if stated is None else f"a wait of {stated:g} s at most"
        pytest.skip(f"{scenario.spec.type} states {what} when it throttles: no wait outlives a run")
    first = scenario.run()
    assert (first.status, first.added, first.deferred) == ("partial", 0, 2), first
    assert not any(scenario.holds(m) for m in members)

    scenario.clock.now += 5  # a new run a few seconds later: still inside the wait
    before = scenario.requests
    early = scenario.run()
    assert scenario.requests == before, "a run inside the platform's wait called it"
    assert (early.status, early.added, early.deferred) == ("partial", 0, 2), early
    assert "asked us to wait until" in (early.reason or "") and "'dest'" in early.reason

    scenario.clock.now += stated  # the wait is over
    later = scenario.run()
    assert (later.status, later.added, later.deferred) == ("ok", 2, 0), later
    assert all(scenario.holds(m) for m in members)
