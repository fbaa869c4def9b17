"""Customer Match jobs of the Google Ads API that a retry resumes instead of starting again.

One job per consent group is built in three calls. Each stage is recorded in the engine's job book
(``destinations.base.JobBook``, kept in the ledger) before the call whose answer could be lost and after the
call that answered, so a retried batch (or the next run, after a crash) never creates a second job for a step
it already created, never adds an operation twice and never runs a job twice::

    creating          external_id chosen; CreateOfflineUserDataJob may have landed
    created           the job exists (its resource name is recorded); no operation sent
    adding            AddOfflineUserDataJobOperations sent; its outcome is unknown
    operations_added  every operation is in the job; the row outcomes are recorded
    starting          RunOfflineUserDataJob sent; its outcome is unknown
    running           the job runs on Google: a retry returns the recorded outcomes without a call

What a retry does at each stage:

- creating: Create again with the same ``external_id``. If the first Create landed, Google refuses the
  second with EXTERNAL_UPDATE_ID_ALREADY_EXISTS ("if you attempt to create multiple jobs with the same
  external_id", developers.google.com/google-ads/api/docs/remarketing/audience-segments/customer-match/
  troubleshoot) and the job is found by ``external_id`` with GAQL (a field of ``offline_user_data_job``;
  that it filters is assumed [U]), so no job is left behind.
- created: add the operations to the recorded job.
- adding: Google offers no read-back of a job's operations ("The uploaded data isn't readable",
  ``OfflineUserDataJob`` reference), so the job may hold some, all or none of them. It is abandoned and
  never run; a fresh job takes the operations. A job that is never run does nothing: "You must run the job
  within 5 days of creating it" (.../customer-match/get-started, usage flow step 5). So a batch leaves at
  most one abandoned PENDING job per Add call whose answer was lost (INTERNAL, UNAVAILABLE,
  DEADLINE_EXCEEDED, ABORTED, a dropped connection). An Add that Google refused before applying anything
  (RESOURCE_EXHAUSTED, INVALID_ARGUMENT, an auth error) goes back to ``created`` and the retry fills the
  same job, but only when it was the job's first Add call: after one landed, the job is abandoned as above.
- operations_added: run the job; when every operation failed there is nothing to run, and the job stays
  empty and PENDING, as it always did.
- starting: Run again. A job runs once at most: Google refuses a second Run with JOB_ALREADY_STARTED,
  which therefore means the first Run landed.

Without a job book (a destination used outside the engine) each call starts its jobs afresh.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from destinations.base import JobBook, Member, Op, RowOutcome, RowStatus
from destinations.google_customer_match._common import Consent, Group, Sent
from syncer.errors import SyncError

__all__ = ["STAGES", "JobCalls", "JobStep", "Unapplied"]

STAGES = ("creating", "created", "adding", "operations_added", "starting", "running")
_CREATING, _CREATED, _ADDING, _ADDED, _STARTING, _RUNNING = STAGES


class Unapplied(Exception):
    """A job call the platform refused before applying anything; ``failure`` is the error to raise."""

    def __init__(self, failure: SyncError) -> None:
        super().__init__(failure.message)
        self.failure = failure


class JobCalls(Protocol):
    """The three calls, as the Ads API transport makes them; each counts its requests in ``sent``."""

    def create_job(self, user_list: str, consent: Consent | None, external_id: int, sent: Sent) -> str | None:
        """The new job's resource name; for an ``external_id`` Google already holds, that job's, or None when
        it cannot be found."""

    def add_operations(self, job: str, op: Op, members: Sequence[Member], sent: Sent) -> dict[str, list[str]]:
        """Add one operation per member; the failed ones as member_key -> [RowStatus value, Google's error code].

        Raises:
            Unapplied: Google refused the call before staging anything.
        """

    def run_job(self, job: str, sent: Sent) -> None:
        """Run the job (JOB_ALREADY_STARTED counts as run). Raises ``Unapplied`` as ``add_operations`` does."""


@dataclass
class _Record:
    stage: str = ""
    job: str | None = None
    external_id: int = 0
    failed: dict[str, list[str]] = field(default_factory=dict)


class JobStep:
    """One consent group's job of one ``add`` or ``remove``, resumed from ``book`` under the name ``step``."""

    def __init__(self, calls: JobCalls, book: JobBook | None, sync: str, step: str) -> None:
        self._calls, self._book, self._sync, self._step = calls, book, sync, step

    def send(self, op: Op, user_list: str, group: Group, sent: Sent) -> None:
        """Bring the job to ``running`` (or to ``operations_added`` when every operation failed) and put one
        outcome per member of ``group`` in ``sent``."""
        record = self._load()
        if record.stage == _ADDING:  # the operations may be in that job, or not: it must never run
            sent.count("abandoned_jobs")
            record = _Record()
        self._create(record, user_list, group.consent, sent)
        if record.stage == _CREATED:
            self._save(record, _ADDING)
            try:
                record.failed = self._calls.add_operations(str(record.job), op, group.members, sent)
            except Unapplied as refused:
                self._save(record, _CREATED)
                raise refused.failure from None
            self._save(record, _ADDED)
        staged = len(group.members) - len(record.failed)
        if record.stage == _ADDED and staged:
            self._save(record, _STARTING)
        if record.stage == _STARTING:
            try:
                self._calls.run_job(str(record.job), sent)
            except Unapplied as refused:
                self._save(record, _ADDED)
                raise refused.failure from None
            self._save(record, _RUNNING)
        self._report(record, group.members, staged, sent)

    def _create(self, record: _Record, user_list: str, consent: Consent | None, sent: Sent) -> None:
        while record.stage in ("", _CREATING):
            if record.stage == "":
                record.external_id = secrets.randbits(62) + 1  # unique per job: Google refuses a repeat
                self._save(record, _CREATING)
            record.job = self._calls.create_job(user_list, consent, record.external_id, sent)
            if record.job is None:  # an earlier Create landed but its job cannot be found: leave it empty, start anew
                sent.count("abandoned_jobs")
                record.stage = ""
                continue
            self._save(record, _CREATED)

    def _report(self, record: _Record, members: Sequence[Member], staged: int, sent: Sent) -> None:
        for member in members:
            failed = record.failed.get(member.member_key)
            sent.outcomes.append(RowOutcome(member.member_key, RowStatus(failed[0]), failed[1]) if failed
                                 else RowOutcome(member.member_key, RowStatus.SENT))
        sent.count("failed_operations", len(record.failed))
        if record.stage == _RUNNING:
            sent.jobs.append(str(record.job))
            sent.count("jobs")
            sent.count("operations", staged)

    def _load(self) -> _Record:
        found = self._book.get(self._sync, self._step) if self._book is not None else None
        if not found:
            return _Record()
        detail = found.get("detail")
        detail = detail if isinstance(detail, dict) else {}
        stage, job = found.get("stage"), found.get("job")
        if stage not in STAGES or (stage != _CREATING and not isinstance(job, str)):
            return _Record()  # not a record this module wrote: start afresh rather than guess
        return _Record(str(stage), job if isinstance(job, str) else None, int(detail.get("external_id") or 0),
                       {str(k): [str(v[0]), str(v[1])] for k, v in (detail.get("failed") or {}).items()})

    def _save(self, record: _Record, stage: str) -> None:
        record.stage = stage
        if self._book is not None:
            self._book.put(self._sync, self._step, job=record.job, stage=stage,
                           detail={"external_id": record.external_id, "failed": record.failed})
