"""Match rates per sync, over time: how ready our members were, and what the platform said it matched.

One row of the ``match_rates`` table per sync run (``record_run``, called by the engine as the run ends) and
one per platform job that reached its final status (``record_job``, called when ``poll_jobs`` sees it). Each
row carries:

- **Readiness**, our own figure before any platform matches: of the sync's members, how many have a valid
  email, a valid phone, both. The identity rules already decided each member's validity when it was planned
  (``syncer.identity``): a held member's ledger row keeps only the identifiers that passed
  (``held.identifiers``, canonical JSON with the kinds as keys), and a member with no usable identifier is
  in ``rejected`` with an identity reason (``syncer.identity.kinds.REASONS``). So readiness is one aggregate
  over the ledger (held rows by the kinds they hold, plus the members identity refused, who count as ready on
  nothing), and identity never runs again. A member the *platform* refused for good passed our rules but
  its identifiers are not kept, so it is left out of readiness (its refusal shows in accepted vs sent). The count is keyed by the sync's ledger version and its rejections (``readiness_key``): a run
  that changed nothing copies the last row's figures instead of scanning the audience. Members deferred to
  the next run (``pending``) are counted once they land. A sync that sends no phones has 0% phone
  readiness: it reports what the sync sends, not what the warehouse holds.
- **Sent and accepted**: add rows the run sent and how many the platform accepted, from the run's batches
  (their row outcomes) in the ledger. For an email tool (Klaviyo, Mailchimp, Braze, Iterable) this is its
  match figure: each row it refuses is an outcome.
- **What the platform reported**: Meta's ``num_received`` and ``num_invalid_entries`` per ``/users`` call,
  summed over the run's add batches (each call is its own session, so the counts are per call), and the
  audience's ``approximate_count_lower_bound`` / ``upper_bound`` read after a change
  (https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users, response fields;
  https://developers.facebook.com/docs/marketing-api/reference/custom-audience, the bounds); Google's
  user-list size (``size_for_search``) where the transport reads one; Google's match-rate range of a finished
  job: ``OfflineUserDataJobMatchRateRange`` (``MATCH_RANGE_LESS_THAN_20`` .. ``MATCH_RANGE_91_TO_100``,
  https://developers.google.com/google-ads/api/reference/rpc/v23/OfflineUserDataJobMatchRateRangeEnum.OfflineUserDataJobMatchRateRange)
  or the Data Manager API's ``MatchRateRange`` (``MATCH_RATE_RANGE_LESS_THAN_20`` .. ``_91_TO_100``, and
  ``NOT_ELIGIBLE``; https://rubydoc.info/gems/google-ads-data_manager-v1/Google/Ads/DataManager/V1/MatchRateRange).
- **Platform match rate** (percent, one number to plot): the midpoint of the sync's latest finished job
  range where the platform runs jobs (Google); else the platform's audience size (midpoint of its range)
  over the members held, where it reports a size (Meta); else accepted over sent (the email tools).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from syncer.errors import SyncError
from syncer.identity.kinds import REASONS
from syncer.ledger.tables import batches, held, match_rates, platform_jobs, rejected, sync_state

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from syncer.ledger.store import Ledger

__all__ = ["Readiness", "job_matches", "latest_match", "match_history", "parse_match_rate_range", "readiness", "record_job",
           "record_run", "run_matches"]

log = logging.getLogger(__name__)
_RANGE = re.compile(r"(?:LESS_THAN_(\d+)|(\d+)_TO_(\d+))$")


@dataclass(frozen=True)
class Readiness:
    """Of ``members`` (``held`` of them held, the rest refused by our identity rules), how many have a valid
    email, a valid phone, both (as the ledger holds them)."""

    members: int
    held: int
    email: int
    phone: int
    both: int

    def pct(self, count: int) -> float | None:
        return round(100.0 * count / self.members, 1) if self.members else None


def parse_match_rate_range(name: str | None) -> tuple[float, float] | None:
    """(low, high) percent of a Google match-rate range name (either API's), or None when it holds none.

    ``MATCH_RANGE_LESS_THAN_20`` -> (0, 19); ``MATCH_RATE_RANGE_61_TO_70`` -> (61, 70); ``UNKNOWN`` and
    ``NOT_ELIGIBLE`` -> None."""
    found = _RANGE.search(name or "")
    if not found:
        return None
    if found.group(1):
        return 0.0, float(int(found.group(1)) - 1)
    return float(found.group(2)), float(found.group(3))


def readiness(ledger: Ledger, sync: str) -> Readiness:
    """The sync's readiness now (reused from its last row while the ledger's state of the sync is the same)."""
    with ledger.engine.connect() as conn:
        return _readiness(conn, sync, _readiness_key(conn, sync))


def _readiness_key(conn: Connection, sync: str) -> str:
    """What readiness depends on: the sync's held rows (their version moves with every commit) and its
    rejections (replaced without a commit; their count and latest time move when they change)."""
    version = conn.execute(sa.select(sync_state.c.version).where(sync_state.c.sync == sync)).scalar() or 0
    count, last = conn.execute(sa.select(sa.func.count(), sa.func.max(rejected.c.at)).where(rejected.c.sync == sync)).first()
    return f"{version}:{count}:{last or 0:.6f}"


def _readiness(conn: Connection, sync: str, key: str) -> Readiness:
    known = conn.execute(sa.select(match_rates.c.members, match_rates.c.held, match_rates.c.ready_email,
                                   match_rates.c.ready_phone, match_rates.c.ready_both)
                         .where(match_rates.c.sync == sync, match_rates.c.readiness_key == key)
                         .order_by(match_rates.c.id.desc()).limit(1)).first()
    if known is not None:
        return Readiness(*known)
    # the kinds are keys of compact JSON; inside a JSON string every '"' is escaped, so '"email":' is only a key
    has_email, has_phone = held.c.identifiers.like('%"email":%'), held.c.identifiers.like('%"phone":%')
    count = sa.func.count()
    total, email, phone, both = conn.execute(sa.select(
        count, sa.func.sum(sa.case((has_email, 1), else_=0)), sa.func.sum(sa.case((has_phone, 1), else_=0)),
        sa.func.sum(sa.case((sa.and_(has_email, has_phone), 1), else_=0))).where(held.c.sync == sync)).first()
    not_held = conn.execute(sa.select(sa.func.count()).select_from(rejected).where(
        rejected.c.sync == sync, rejected.c.reason.in_(sorted(REASONS)), ~sa.exists().where(held.c.sync == sync, held.c.member_key == rejected.c.member_key))).scalar()
    return Readiness(int(total) + int(not_held or 0), int(total), int(email or 0), int(phone or 0), int(both or 0))


def _sent(conn: Connection, sync_run_id: int) -> dict[str, int | None]:
    """Add rows the run sent, accepted, and the platform's own counts of them (summed over its add batches)."""
    sent = accepted = 0
    received: int | None = None
    invalid: int | None = None
    for rows, landed, counts in conn.execute(sa.select(batches.c.rows, batches.c.sent, batches.c.platform_counts)
                                             .where(batches.c.sync_run_id == sync_run_id, batches.c.op == "add")):
        sent, accepted = sent + rows, accepted + landed
        figures = json.loads(counts or "{}")
        if isinstance(figures.get("num_received"), int):
            received = (received or 0) + figures["num_received"]
        if isinstance(figures.get("num_invalid_entries"), int):
            invalid = (invalid or 0) + figures["num_invalid_entries"]
    return {"sent": sent, "accepted": accepted, "platform_received": received, "platform_invalid": invalid}


def _size(counts: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The platform's audience size as (low, high), or (None, None) when it gave none."""
    low, high = counts.get("approximate_count_lower_bound"), counts.get("approximate_count_upper_bound")
    if isinstance(low, int) and isinstance(high, int) and 0 <= low <= high:  # Meta: -1 until computed
        return low, high
    for key in ("size_for_search", "size_for_display"):
        if isinstance(counts.get(key), int) and counts[key] >= 0:
            return counts[key], counts[key]
    return None, None


def record_run(ledger: Ledger, sync: str, sync_run_id: int, audience_counts: Mapping[str, Any]) -> dict[str, Any]:
    """Record the run's match figures (``audience_counts``: the report's platform counts, holding the
    audience size the engine read after a change); returns them as ``latest_match`` shows them.

    A figure never fails a sync whose batches were sent and committed: an unexpected error is logged and
    the run goes without its row ({} returned). A fault of the ledger itself (``SyncError``) is raised."""
    try:
        return _record_run(ledger, sync, sync_run_id, audience_counts)
    except SyncError:
        raise
    except Exception:
        log.warning("sync %s: match figures not recorded for this run", sync, exc_info=True)
        return {}


def _record_run(ledger: Ledger, sync: str, sync_run_id: int, audience_counts: Mapping[str, Any]) -> dict[str, Any]:
    with ledger.begin() as conn:
        key = _readiness_key(conn, sync)
        ready = _readiness(conn, sync, key)
        values: dict[str, Any] = dict(sync=sync, sync_run_id=sync_run_id, at=time.time(), members=ready.members,
                                      held=ready.held, ready_email=ready.email, ready_phone=ready.phone, ready_both=ready.both,
                                      readiness_key=key, **_sent(conn, sync_run_id))
        values["size_low"], values["size_high"] = _size(audience_counts)
        values["match_rate"], values["match_rate_source"] = _platform_match_rate(conn, sync, values, ready.held)
        conn.execute(match_rates.insert().values(**values))
    return _figures(values)


def record_job(ledger: Ledger, job: str, match_rate_range: str | None) -> None:
    """Record a platform job that reached its final status with the match-rate range it reported; the
    row carries its sync's readiness as of now. A job reported twice is recorded once."""
    with ledger.begin() as conn:
        sync = conn.execute(sa.select(platform_jobs.c.sync).where(platform_jobs.c.job == job)).scalar()
        if sync is None or conn.execute(sa.select(match_rates.c.id).where(match_rates.c.job == job)).first():
            return
        key = _readiness_key(conn, sync)
        ready = _readiness(conn, sync, key)
        bounds = parse_match_rate_range(match_rate_range)
        conn.execute(match_rates.insert().values(
            sync=sync, job=job, at=time.time(), members=ready.members, held=ready.held, ready_email=ready.email, ready_phone=ready.phone,
            ready_both=ready.both, readiness_key=key, sent=0, accepted=0, match_rate_range=match_rate_range,
            match_rate=(bounds[0] + bounds[1]) / 2 if bounds else None, match_rate_source="job_range" if bounds else None))


def _platform_match_rate(conn: Connection, sync: str, values: Mapping[str, Any], held_now: int) -> tuple[float | None, str | None]:
    """The one percentage to plot: the latest finished job's range, else the audience size over the members
    held, else accepted over sent. A run that read no size or sent nothing carries the last known figure
    forward (sizes are read after a change only), so the plot has no gaps on quiet runs."""
    def last(columns: tuple[Any, ...], *where: Any):
        return conn.execute(sa.select(*columns).where(match_rates.c.sync == sync, *where)
                            .order_by(match_rates.c.id.desc()).limit(1)).first()

    job = last((match_rates.c.match_rate,), match_rates.c.job.is_not(None), match_rates.c.match_rate.is_not(None))
    if job is not None:
        return float(job[0]), "job_range"
    size = ((values["size_low"], values["size_high"]) if values["size_low"] is not None else
            last((match_rates.c.size_low, match_rates.c.size_high), match_rates.c.size_low.is_not(None)))
    if size is not None and held_now:
        return round(100.0 * (size[0] + size[1]) / 2 / held_now, 1), "audience_size"
    upload = ((values["sent"], values["accepted"]) if values["sent"] else
              last((match_rates.c.sent, match_rates.c.accepted), match_rates.c.job.is_(None), match_rates.c.sent > 0))
    if upload is not None:
        return round(100.0 * upload[1] / upload[0], 1), "accepted"
    return None, None


def _figures(row: Mapping[str, Any]) -> dict[str, Any]:
    ready = Readiness(row["members"], row["held"], row["ready_email"], row["ready_phone"], row["ready_both"])
    figures = {name: row.get(name) for name in ("at", "sent", "accepted", "platform_received", "platform_invalid",
                                                 "size_low", "size_high", "match_rate", "match_rate_source")}
    return {"readiness": {**asdict(ready), "email_pct": ready.pct(ready.email), "phone_pct": ready.pct(ready.phone),
                          "both_pct": ready.pct(ready.both)}, **figures}


def latest_match(ledger: Ledger, sync: str) -> dict[str, Any] | None:
    """What ``syncer status`` shows: the latest run's readiness and match rate, the figures of the latest run
    that sent adds, the latest audience size, and the latest finished job's range; None before any run."""
    with ledger.engine.connect() as conn:
        def last(*where: Any) -> dict[str, Any] | None:
            row = conn.execute(sa.select(match_rates).where(match_rates.c.sync == sync, *where)
                               .order_by(match_rates.c.id.desc()).limit(1)).first()
            return dict(row._mapping) if row else None

        run = last(match_rates.c.job.is_(None))
        if run is None:
            return None
        upload = last(match_rates.c.job.is_(None), match_rates.c.sent > 0)
        size = last(match_rates.c.size_low.is_not(None))
        job = last(match_rates.c.job.is_not(None))
    figures = _figures(run)
    figures["last_upload"] = ({k: upload[k] for k in ("at", "sent", "accepted", "platform_received", "platform_invalid")}
                              if upload else None)
    figures["size_low"], figures["size_high"] = (size["size_low"], size["size_high"]) if size else (None, None)
    figures["job"] = ({"job": job["job"], "at": job["at"], "match_rate_range": job["match_rate_range"],
                       "bounds": parse_match_rate_range(job["match_rate_range"])} if job else None)
    return figures


def match_history(ledger: Ledger, sync: str, limit: int = 50) -> list[dict[str, Any]]:
    """The sync's rows, newest first (runs and finished jobs), as stored."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(match_rates).where(match_rates.c.sync == sync)
                            .order_by(match_rates.c.id.desc()).limit(limit))
        return [dict(row._mapping) for row in rows]


def run_matches(ledger: Ledger, sync_run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """sync_run_id -> the figures recorded for that run (``syncer history``); runs without a row are left out."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(match_rates).where(match_rates.c.sync_run_id.in_(list(sync_run_ids)))) if sync_run_ids else []
        return {row.sync_run_id: _figures(dict(row._mapping)) for row in rows}


def job_matches(ledger: Ledger, jobs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """job -> its match-rate range as percentages (``match_rate_low``/``_high``, None without one; an estimate
    while the job runs) and, once it finished, its sync's readiness then (``readiness``) (``syncer jobs``)."""
    names = [job["job"] for job in jobs]
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(match_rates).where(match_rates.c.job.in_(names))) if names else []
        finished = {row.job: _figures(dict(row._mapping))["readiness"] for row in rows}
    out = {}
    for job in jobs:
        bounds = parse_match_rate_range(job.get("match_rate_range"))
        out[job["job"]] = {"match_rate_low": bounds[0] if bounds else None, "match_rate_high": bounds[1] if bounds else None,
                           "readiness": finished.get(job["job"])}
    return out
