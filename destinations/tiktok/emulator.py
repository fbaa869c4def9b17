"""A strict local emulator of TikTok's segment API for customer audiences, served under ``/tiktok/``.

Routes (below the mount; the version is ``v1.3``)::

    GET  /open_api/v1.3/advertiser/info/?advertiser_ids=["..."]   the token's advertisers
    POST /open_api/v1.3/segment/mapping/                          add or delete members (JSON body)

As TikTok does (facts and sources in ``destinations.tiktok.connector``): every answer is HTTP 200 with the
envelope ``{code, message, request_id, data}``; the ``Access-Token`` header must hold the token (40104
without one, 40105 when wrong); a throttle is code 40100 with no stated wait; a bad parameter is 40002 and
the whole request is refused, nothing applied: an unknown key, an ``action`` other than add/delete, an
``id_schema`` name it does not know, a row not aligned to ``id_schema``, an id that is not exactly a
lowercase hex SHA-256, a row with no id, more than ``MAX_BATCH`` rows. An advertiser the token may not act
for is 40001; an audience id it does not hold for the advertiser is 40007.

Identity: an audience holds people, each known by its ids (one per ``id_schema`` kind). An added row that
matches people by any id merges them into one person (the row's values win); a deleted row removes every
person any of its ids matches, as Meta's emulator does.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from destinations.emulation import Emulator, Request, Response
from destinations.tiktok.config import MAX_BATCH

__all__ = ["SANDBOX_ADVERTISER", "SCHEMA_KEYS", "TikTokEmulator"]

SANDBOX_ADVERTISER = "7000000000000000001"
SCHEMA_KEYS = frozenset({"EMAIL_SHA256", "PHONE_SHA256", "IDFA_SHA256", "GAID_SHA256"})
_SHA256 = re.compile(r"[0-9a-f]{64}").fullmatch
_BODY_KEYS = frozenset({"advertiser_ids", "action", "id_schema", "batch_data"})
_PREFIX = "/open_api/v1.3"


class TikTokError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _invalid(message: str) -> TikTokError:
    return TikTokError(40002, message)


@dataclass
class _Audience:
    advertiser_id: str
    name: str
    persons: dict[int, dict[str, str]] = field(default_factory=dict)
    index: dict[tuple[str, str], int] = field(default_factory=dict)  # (schema key, id) -> person

    def add(self, row: dict[str, str], new_pid: Callable[[], int]) -> None:
        found = sorted({pid for key in row.items() if (pid := self.index.get(key)) is not None})
        merged: dict[str, str] = {}
        for pid in found:  # oldest first; the row's values win
            merged.update(self._drop(pid))
        merged.update(row)
        pid = found[0] if found else new_pid()
        self.persons[pid] = merged
        for key in merged.items():
            self.index[key] = pid

    def delete(self, row: dict[str, str]) -> None:
        for pid in {pid for key in row.items() if (pid := self.index.get(key)) is not None}:
            self._drop(pid)

    def _drop(self, pid: int) -> dict[str, str]:
        person = self.persons.pop(pid)
        for key in person.items():
            if self.index.get(key) == pid:
                del self.index[key]
        return person


class TikTokEmulator(Emulator):
    """TikTok's segment API, strict about tokens, envelopes, hashes and limits."""

    name = "tiktok"
    default_key = "sandbox-tiktok-token"

    def reset_state(self) -> None:
        self.audiences: dict[str, _Audience] = {}
        self.advertisers: set[str] = {SANDBOX_ADVERTISER}
        self._pids = itertools.count(1)
        self._throttles = 0
        self.qps: int | None = None
        """When set, calls beyond this many in one second of ``clock`` are answered 40100 (TikTok's QPS)."""
        self.clock: Callable[[], float] = time.monotonic
        self._second: tuple[int, int] = (-1, 0)

    # ----- test and admin API -------------------------------------------------------------------
    def create_audience(self, audience_id: str, name: str = "sandbox audience", *,
                        advertiser_id: str = SANDBOX_ADVERTISER) -> str:
        """Make an audience (segment) of ``advertiser_id`` exist, with no HTTP; returns its id."""
        with self.lock:
            self.advertisers.add(advertiser_id)
            self.audiences.setdefault(str(audience_id), _Audience(advertiser_id, name))
            return str(audience_id)

    def members(self, audience_id: str) -> list[dict[str, str]]:
        """People of an audience, each {schema key: id}; KeyError if unknown."""
        with self.lock:
            return [dict(person) for person in self.audiences[str(audience_id)].persons.values()]

    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next request with code 40100; TikTok states no wait, so return None."""
        with self.lock:
            self._throttles += 1
        return None

    def to_state(self) -> dict[str, Any]:
        with self.lock:
            return {"advertisers": sorted(self.advertisers),
                    "audiences": {aid: {"advertiser_id": a.advertiser_id, "name": a.name,
                                        "members": list(a.persons.values())} for aid, a in self.audiences.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.reset_state()
            self.advertisers.update(state.get("advertisers", ()))
            for audience_id, saved in state.get("audiences", {}).items():
                self.create_audience(audience_id, saved["name"], advertiser_id=saved["advertiser_id"])
                for person in saved.get("members", []):
                    self.audiences[audience_id].add(dict(person), lambda: next(self._pids))

    def rows_in(self, request: Request) -> int:
        try:
            rows = json.loads(request.body or b"null").get("batch_data")
        except (ValueError, AttributeError):
            return 0
        return len(rows) if isinstance(rows, list) else 0

    def fault_body(self, status: int) -> Any:
        code = 40100 if status == 429 else 50002 if status >= 500 else 40002
        return _envelope(code, f"injected HTTP {status}")

    def bad_request(self, message: str) -> Response:
        return Response(200, _envelope(40002, f"Invalid request body: {message}"))

    # ----- HTTP ---------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            data = self._route(request)
        except TikTokError as exc:
            return Response(200, _envelope(exc.code, exc.message))
        return Response(200, _envelope(0, "OK", data))

    def _route(self, request: Request) -> dict[str, Any]:
        route = (request.method, request.path)
        known = {("GET", f"{_PREFIX}/advertiser/info/"), ("POST", f"{_PREFIX}/segment/mapping/")}
        if route not in known:
            raise TikTokError(40002, f"Unknown API: {request.method} {request.path}")
        self._authenticate(request)
        if request.method == "GET":
            return self._advertiser_info(request.query)
        return self._mapping(request)

    def _authenticate(self, request: Request) -> None:
        token = request.headers.get("access-token")
        if not token:
            raise TikTokError(40104, "Access token is null, please check the Access-Token header.")
        if token != self.key:
            raise TikTokError(40105, "Access token is incorrect or has been revoked.")
        if self._throttles:
            self._throttles -= 1
            raise TikTokError(40100, "Too many requests. Please retry in some time.")
        second = int(self.clock())
        count = self._second[1] + 1 if self._second[0] == second else 1
        self._second = (second, count)
        if self.qps is not None and count > self.qps:
            raise TikTokError(40100, f"Too many requests: the limit is {self.qps} per second.")

    def _advertiser_info(self, query: str) -> dict[str, Any]:
        ids = _json_list(parse_qs(query).get("advertiser_ids", [""])[0], "advertiser_ids")
        denied = [i for i in ids if i not in self.advertisers]
        if denied:
            raise TikTokError(40001, f"No permission to operate advertiser {denied[0]}.")
        return {"list": [{"advertiser_id": i, "name": f"sandbox advertiser {i}", "status": "STATUS_ENABLE"} for i in ids]}

    def _mapping(self, request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise _invalid("Content-Type must be application/json")
        body = request.json()
        if not isinstance(body, dict):
            raise _invalid("The request body must be a JSON object")
        if set(body) - _BODY_KEYS or not {"advertiser_ids", "action", "id_schema", "batch_data"} <= set(body):
            raise _invalid(f"Expected exactly the fields {sorted(_BODY_KEYS)}")
        advertisers = body["advertiser_ids"]
        if not isinstance(advertisers, list) or not advertisers or not all(isinstance(a, str) for a in advertisers):
            raise _invalid("advertiser_ids must be a non-empty list of strings")
        for advertiser in advertisers:
            if advertiser not in self.advertisers:
                raise TikTokError(40001, f"No permission to operate advertiser {advertiser}.")
        if body["action"] not in ("add", "delete"):
            raise _invalid("action must be one of add, delete")
        rows = self._rows(body["id_schema"], body["batch_data"], set(advertisers))
        for audience, row in rows:
            if body["action"] == "add":
                audience.add(row, lambda: next(self._pids))
            else:
                audience.delete(row)
        return {}

    def _rows(self, schema: Any, batch: Any, advertisers: set[str]) -> list[tuple[_Audience, dict[str, str]]]:
        """Every row checked before any is applied: a bad one refuses the whole request."""
        if (not isinstance(schema, list) or not schema or len(set(map(str, schema))) != len(schema)
                or not set(schema) <= SCHEMA_KEYS):
            raise _invalid(f"id_schema must be a list of distinct values from {sorted(SCHEMA_KEYS)}")
        if not isinstance(batch, list) or not batch:
            raise _invalid("batch_data must be a non-empty list")
        if len(batch) > MAX_BATCH:
            raise _invalid(f"batch_data holds {len(batch)} rows; at most {MAX_BATCH}")
        rows = []
        for i, entries in enumerate(batch):
            if not isinstance(entries, list) or len(entries) != len(schema):
                raise _invalid(f"batch_data[{i}] must be a list of {len(schema)} objects aligned to id_schema")
            found: dict[str, _Audience] = {}
            row: dict[str, str] = {}
            for key, entry in zip(schema, entries):
                if entry == {}:
                    continue
                if not isinstance(entry, dict) or set(entry) != {"id", "audience_ids"}:
                    raise _invalid(f"batch_data[{i}]: each entry is {{}} or {{id, audience_ids}}")
                if not isinstance(entry["id"], str) or not _SHA256(entry["id"]):
                    raise _invalid(f"batch_data[{i}]: the {key} id is not a lowercase hex SHA-256")
                row[key] = entry["id"]
                found.update((a, self._audience(a, advertisers)) for a in _ids(entry["audience_ids"], i))
            if not row:
                raise _invalid(f"batch_data[{i}] holds no id")
            rows += [(audience, row) for audience in found.values()]
        return rows

    def _audience(self, audience_id: str, advertisers: set[str]) -> _Audience:
        audience = self.audiences.get(audience_id)
        if audience is None or audience.advertiser_id not in advertisers:
            raise TikTokError(40007, f"Audience {audience_id} does not exist for the advertiser.")
        return audience


def _ids(value: Any, row: int) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
        raise _invalid(f"batch_data[{row}]: audience_ids must be a non-empty list of strings")
    return value


def _json_list(text: str, name: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        raise _invalid(f"{name} must be a JSON list of strings") from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _invalid(f"{name} must be a JSON list of strings")
    return value


def _envelope(code: int, message: str, data: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": uuid.uuid4().hex[:32].upper(), "data": data or {}}
