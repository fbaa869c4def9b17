"""What every HTTP platform emulator in the sandbox shares: request counting, latency and fault
injection, state for save/load, and a small Request/Response pair.

An emulator is served under ``/<name>/`` on the sandbox port (``http://127.0.0.1:8510/klaviyo``), so a
destination's ``endpoint`` points at that prefix. Meta alone sits at the root, because the Graph API
paths (``/vNN.N/...``) are what its SDK builds.

Subclass ``Emulator``, set ``name``, implement ``handle``, ``reset_state``, ``to_state``, ``load_state``,
and name the class in the platform's ``SPEC`` (``emulator`` and ``mount``); the sandbox serves it
under ``/<mount>/``. ``throttle_next`` and ``consent_of`` serve the contract suite.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # below the emulator's prefix, starting with "/"
    query: str
    body: bytes
    headers: Mapping[str, str]  # lower-case names

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return json.loads(self.body or b"null")

    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able, bytes, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[int, dict[str, str], bytes]:
        if self.body is None:
            return self.status, dict(self.headers), b""
        if isinstance(self.body, bytes):
            return self.status, dict(self.headers), self.body
        headers = {"Content-Type": "application/json", **self.headers}
        return self.status, headers, json.dumps(self.body).encode()


@dataclass
class _HttpFault:
    status: int
    times: int
    retry_after: float | None
    body: Any


class Emulator:
    """Base of an HTTP platform emulator; thread-safe through ``self.lock``."""

    name: ClassVar[str]
    default_key: ClassVar[str] = ""

    def __init__(self, key: str | None = None) -> None:
        self.key = key or os.environ.get(f"SANDBOX_{self.name.upper()}_KEY") or self.default_key or f"sandbox-{self.name}-key"
        self.lock = threading.RLock()
        self.latency = 0.0
        self.reset()

    # ----- test and admin API -------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.request_count = 0
            self.requests: list[tuple[str, str, int]] = []  # (method, path, rows)
            self._faults: list[_HttpFault] = []
            self.dirty = False
            self.reset_state()

    def inject_http(self, status: int = 503, times: int = 1, retry_after: float | None = None, body: Any = None) -> None:
        """Answer the next ``times`` requests with ``status`` (429 carries ``Retry-After``)."""
        with self.lock:
            self._faults.append(_HttpFault(status, times, retry_after, body))

    def throttle_next(self, retry_after: float) -> float | None:
        """Answer the next request as this platform throttles, asking for ``retry_after`` seconds; return
        the wait the platform's answer states (None when its throttle names none). Default: HTTP 429 with
        ``Retry-After``; an emulator whose platform throttles otherwise overrides it."""
        self.inject_http(429, 1, retry_after)
        return retry_after

    def consent_of(self, audience_id: str, identifiers: Mapping[str, str]) -> Any:
        """The consent the platform holds for the person with these identifiers (what a membership remove
        must never change); None for platforms that hold no consent."""
        return None

    def serve(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        """Count, delay, inject faults, then ``handle``."""
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            self.request_count += 1
            self.requests.append((request.method, request.path, self.rows_in(request)))
            if len(self.requests) > 100_000:
                del self.requests[:50_000]
            fault = self._take_fault()
            if fault is not None:
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                body = fault.body if fault.body is not None else self.fault_body(fault.status)
                return Response(fault.status, body, headers).encode()
            try:
                response = self.handle(request)
            except ValueError as exc:  # unreadable JSON and the like: a 400 as the platforms answer
                response = self.bad_request(str(exc))
            if request.method != "GET":
                self.dirty = True
            return response.encode()

    def _take_fault(self) -> _HttpFault | None:
        while self._faults and self._faults[0].times <= 0:
            self._faults.pop(0)
        if not self._faults:
            return None
        self._faults[0].times -= 1
        return self._faults[0]

    # ----- for subclasses -----------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def reset_state(self) -> None:
        raise NotImplementedError

    def to_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def rows_in(self, request: Request) -> int:
        """How many members a request carries (for ``requests``); 0 when unknown."""
        return 0

    def fault_body(self, status: int) -> Any:
        return {"error": f"injected HTTP {status}"}

    def bad_request(self, message: str) -> Response:
        return Response(400, {"error": message})

    def admin_view(self) -> dict[str, Any]:
        """What ``GET /_sandbox/<name>`` shows; default: the saved state."""
        with self.lock:
            return {"requests": self.request_count, **self.to_state()}
