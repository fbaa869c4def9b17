"""The Klaviyo emulator's asynchronous jobs: profile bulk imports and (un)subscribe jobs.

A mixin of ``destinations.klaviyo.emulator.KlaviyoEmulator``: the routes read and write its profile store,
lists and jobs. Import jobs upsert as ``destinations.klaviyo.profile_store`` describes (a row whose
identifiers name two profiles is that row's ``duplicate_profile`` import error); rows with an invalid email
or a phone not in E.164 are import errors too, and the job still completes.
"""

from __future__ import annotations

import base64
import uuid
from typing import TYPE_CHECKING, Any

from destinations.emulation import Request, Response
from destinations.klaviyo import emulator_wire as wire
from destinations.klaviyo.profile_store import DuplicateProfile, MissingIdentifier, ProfileStore

__all__ = ["JobRoutes", "MAX_IMPORT_BYTES", "MAX_IMPORT_PROFILES"]

MAX_IMPORT_PROFILES = 10_000
MAX_IMPORT_BYTES = 5 * 1024 * 1024


class JobRoutes:
    """Bulk import and subscription job routes over the emulator's state."""

    name: str
    store: ProfileStore
    lists: dict[str, dict[str, Any]]
    jobs: dict[str, dict[str, Any]]
    job_polls: int

    if TYPE_CHECKING:
        @property
        def profiles(self) -> dict[str, dict[str, Any]]: ...
        def _list(self, list_id: str) -> dict[str, Any]: ...
        def _join(self, list_id: str, profile_id: str, joined: str | None = None) -> None: ...
        def _resource(self, profile_id: str, request: Request) -> dict[str, Any]: ...

    # ----- bulk import jobs ---------------------------------------------------------------------------
    def _post_import_jobs(self, request: Request) -> Response:
        if len(request.body) > MAX_IMPORT_BYTES:
            raise wire.KlaviyoError(413, "request_too_large", "Request too large.", "The payload exceeds 5 MB.")
        body = request.json()
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "profile-bulk-import-job":
            raise wire.invalid("'data.type' must be 'profile-bulk-import-job'.", "/data/type")
        rows = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(rows, list) or not rows:
            raise wire.invalid("'profiles.data' must be a non-empty array.", "/data/attributes/profiles/data")
        if len(rows) > MAX_IMPORT_PROFILES:
            raise wire.invalid(f"At most {MAX_IMPORT_PROFILES} profiles may be imported per job.", "/data/attributes/profiles/data")
        for index, row in enumerate(rows):
            pointer = f"/data/attributes/profiles/data/{index}"
            if not isinstance(row, dict) or row.get("type") != "profile" or not isinstance(row.get("attributes"), dict):
                raise wire.invalid("Each profile must be {type: 'profile', attributes: {...}}.", pointer)
            if "subscriptions" in row["attributes"]:
                raise wire.invalid("'subscriptions' cannot be set through a profile import.", pointer + "/attributes/subscriptions")
        lists = [item.get("id") for item in ((data.get("relationships") or {}).get("lists") or {}).get("data") or []]
        for list_id in lists:
            self._list(list_id)
        job_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.jobs[job_id] = {"status": "queued", "polls_left": self.job_polls, "rows": rows, "lists": lists,
                             "profile_ids": [], "errors": [], "created_at": wire.now(), "completed_at": None}
        return Response(202, {"data": self._job_resource(request, job_id)})

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise wire.KlaviyoError(404, "not_found", "Not found.", f"A profile bulk import job with id {job_id} does not exist.")
        return job

    def _get_import_job(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        if job["status"] != "complete":
            if job["polls_left"] > 0:
                job["polls_left"] -= 1
                job["status"] = "processing"
            else:
                self._run_job(job)
        return Response(200, {"data": self._job_resource(request, job_id)})

    def _run_job(self, job: dict[str, Any]) -> None:
        for index, row in enumerate(job.pop("rows")):
            attributes = row["attributes"]
            pointer = f"/data/attributes/profiles/data/{index}/attributes"
            problem = wire.row_problem(attributes, pointer)
            if problem is not None:
                job["errors"].append(problem | {"original_payload": attributes})
                continue
            try:  # the bulk job never clears a field: only values given are written
                profile_id, _ = self.store.upsert(wire.set_only(attributes))
            except DuplicateProfile as exc:
                error = wire.error_item(409, "duplicate_profile", *wire.DUPLICATE, f"{pointer}/{exc.field}")
                job["errors"].append(error | {"original_payload": attributes})
                continue
            job["profile_ids"].append(profile_id)
            for list_id in job["lists"]:
                self._join(list_id, profile_id)
        job["profile_ids"] = list(dict.fromkeys(job["profile_ids"]))
        job.update(status="complete", completed_at=wire.now())

    def _job_resource(self, request: Request, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        total = len(job["rows"]) if "rows" in job else len(job["profile_ids"]) + len(job["errors"])
        done = job["status"] == "complete"
        base = f"{wire.base_url(request, self.name)}/api/profile-bulk-import-jobs/{job_id}"
        return {
            "type": "profile-bulk-import-job", "id": job_id,
            "attributes": {"status": job["status"], "created_at": job["created_at"], "total_count": total,
                           "completed_count": total - len(job["errors"]) if done else 0,
                           "failed_count": len(job["errors"]), "completed_at": job["completed_at"],
                           "expires_at": None, "started_at": job["created_at"]},
            "relationships": {"lists": {"data": [{"type": "list", "id": i} for i in job["lists"]]},
                              "profiles": {"links": {"self": f"{base}/relationships/profiles/", "related": f"{base}/profiles/"}},
                              "import-errors": {"links": {"related": f"{base}/import-errors/"}}},
            "links": {"self": base + "/"},
        }

    def _get_import_job_profiles(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        ids = job["profile_ids"] if job["status"] == "complete" else []
        return wire.offset_page(request, self.name, [self._resource(p, request) for p in ids if p in self.profiles], wire.MAX_PAGE)

    def _get_import_job_profile_ids(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        ids = job["profile_ids"] if job["status"] == "complete" else []
        return wire.offset_page(request, self.name, [{"type": "profile", "id": p} for p in ids], wire.MAX_PAGE)

    def _get_import_job_errors(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        items = [{"type": "import-error", "id": e["id"], "attributes": {k: e[k] for k in ("code", "title", "detail", "source", "original_payload")}}
                 for e in job["errors"]]
        return wire.offset_page(request, self.name, items, wire.MAX_PAGE)

    # ----- subscriptions (never used by the connector; here so a test can prove it) ------------------
    def _post_subscribe_jobs(self, request: Request) -> Response:
        return self._consent_job(request, "SUBSCRIBED", 1000)

    def _post_unsubscribe_jobs(self, request: Request) -> Response:
        return self._consent_job(request, "UNSUBSCRIBED", 100)

    def _consent_job(self, request: Request, consent: str, limit: int) -> Response:
        body = request.json()
        try:
            rows = body["data"]["attributes"]["profiles"]["data"]
        except (KeyError, TypeError):
            raise wire.invalid("Expected data.attributes.profiles.data.", "/data/attributes/profiles/data") from None
        if not isinstance(rows, list) or not 0 < len(rows) <= limit:
            raise wire.invalid(f"Between 1 and {limit} profiles are allowed per job.", "/data/attributes/profiles/data")
        for row in rows:
            attributes = row.get("attributes") or {}
            owners = self.store.owners(attributes)
            try:
                profile_id = owners[0][1] if owners else self.store.create(wire.set_only(attributes))
            except MissingIdentifier:
                raise wire.invalid("Each profile needs an email or a phone number.", "/data/attributes/profiles/data") from None
            for channel in ("email", "sms"):
                if (attributes.get("subscriptions") or {}).get(channel) is not None or consent == "UNSUBSCRIBED":
                    self.profiles[profile_id][f"{channel}_consent"] = consent
        return Response(202)
