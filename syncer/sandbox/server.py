"""The sandbox HTTP server: platform emulators on one loopback port, plus admin endpoints.

Every platform's emulator comes from the registry (``destinations.registry``: a SPEC's ``emulator`` is served
under ``/<mount>/``); Graph API paths (``/vNN.N/...``) go to the Meta emulator, at the root. Admin endpoints,
for users outside the process (the CLI, subprocess tests), need no token::

    GET  /_sandbox/stats                      {"meta": {"requests": n, "audiences": k}}
    GET  /_sandbox/meta/audiences             [{"id", "account_id", "name", "count"}]
    POST /_sandbox/meta/audiences             {"id"?, "name"?, "ad_account_id"?} -> {"id"}
    GET  /_sandbox/meta/audiences/{id}        {"id", "count", "members": [{key: value}]}
    POST /_sandbox/meta/faults                inject kwargs, {"http_status": 503, "times": 1} or {"latency": s}
    POST /_sandbox/reset                      forget everything
    POST /_sandbox/save                       write the state file now

Run it standalone with ``python -m syncer.sandbox.server --port 8510 --state FILE``: it serves until
SIGTERM or SIGINT, then saves its state, so membership survives a restart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from destinations.emulation import Emulator, Request
from destinations.meta.emulator import MetaEmulator
from destinations.registry import SPECS, load_object

__all__ = ["EMULATORS", "Sandbox", "main"]

# name -> "module:Class" of each HTTP emulator served under /<name>/, from the registry (Meta, served at
# the root with its admin endpoints, is built apart)
EMULATORS: dict[str, str] = {spec.mount: spec.emulator for spec in SPECS.values() if spec.emulator and spec.mount}

log = logging.getLogger(__name__)
DEFAULT_META_TOKEN = "sandbox-meta-token"
_AUDIENCE = re.compile(r"^/_sandbox/meta/audiences/([^/]+)/?$")


class Sandbox:
    """Local emulators served over real HTTP on loopback.

    Args:
        host, port: where to listen; port 0 picks a free port (read ``url`` after ``start``).
        meta_token: the only access token the Meta emulator accepts; default ``$SANDBOX_META_TOKEN`` or
            ``sandbox-meta-token``.
        meta_app_secret: when set, every Meta call must carry the matching ``appsecret_proof``.
        state_file: JSON file loaded at construction if it exists and written by ``save``/``stop``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, meta_token: str | None = None,
                 meta_app_secret: str | None = None, state_file: str | os.PathLike[str] | None = None) -> None:
        self.host, self.port = host, port
        token = meta_token or os.environ.get("SANDBOX_META_TOKEN") or DEFAULT_META_TOKEN
        self.meta = MetaEmulator(token, meta_app_secret)
        self.emulators: dict[str, Emulator] = {name: load_object(spec)() for name, spec in EMULATORS.items()}
        self.state_file = Path(state_file) if state_file else None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if self.state_file is not None and self.state_file.exists():
            self.load()

    def __getattr__(self, name: str) -> Emulator:
        emulators = self.__dict__.get("emulators", {})
        if name in emulators:
            return emulators[name]
        raise AttributeError(name)

    def url_for(self, name: str) -> str:
        """Base URL of one emulator, e.g. http://127.0.0.1:8510/klaviyo (Meta: the root)."""
        return self.url if name == "meta" else f"{self.url}/{name}"

    def banner(self) -> str:
        """Every emulator served and the ``endpoint:`` a destination file of each type names to reach it."""
        # the URL ends the first line: scripts and tests read it from there
        lines = [f"sandbox listening on {self.url}",
                 "every platform's emulator; a destination file of each type reaches it with `endpoint:`"]
        for spec in SPECS.values():
            if spec.emulator and spec.mount is not None:
                url = self.url_for(spec.mount or "meta")
                fields = spec.sandbox_destination(url) if spec.sandbox_destination else {}
                choice = f" (transport: {fields['transport']})" if "transport" in fields else ""  # Google's data_manager
                lines.append(f"  {spec.type:<22} endpoint: {url}{choice}")
        return "\n".join(lines)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Sandbox":
        """Serve in a background thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.sandbox = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sandbox-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and save the state file if one is set."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.state_file is not None:
            self.save()

    def reset(self) -> None:
        """Forget all audiences, members, faults and counters."""
        self.meta.reset()
        for emulator in self.emulators.values():
            emulator.reset()

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the state as JSON (atomically) to ``path`` or the state file."""
        target = Path(path) if path else self.state_file
        if target is None:
            raise ValueError("no state file: pass a path or construct the Sandbox with state_file")
        tmp = target.with_name(target.name + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as handle:
            state = {"version": 1, "meta": self.meta.to_state()}
            state.update({name: e.to_state() for name, e in self.emulators.items()})
            json.dump(state, handle, separators=(",", ":"))
        os.replace(tmp, target)
        self.meta.dirty = False
        for emulator in self.emulators.values():
            emulator.dirty = False
        return target

    def load(self, path: str | os.PathLike[str] | None = None) -> None:
        """Replace the state with the one saved in ``path`` or the state file."""
        source = Path(path) if path else self.state_file
        if source is None:
            raise ValueError("no state file: pass a path or construct the Sandbox with state_file")
        state = json.loads(source.read_text(encoding="utf-8"))
        self.meta.load_state(state.get("meta", {}))
        self.meta.dirty = False
        for name, emulator in self.emulators.items():
            if name in state:
                emulator.load_state(state[name])
            emulator.dirty = False

    @property
    def dirty(self) -> bool:
        return self.meta.dirty or any(e.dirty for e in self.emulators.values())

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- admin endpoints ----------------------------------------------------------------------
    def admin(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Serve one ``/_sandbox/...`` request; returns (status, JSON value)."""
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {"error": "the body must be JSON"}
        if method == "GET" and path.rstrip("/") == "/_sandbox/stats":
            audiences = self.meta.audiences()
            stats = {"meta": {"requests": self.meta.request_count, "audiences": len(audiences),
                              "members": sum(a["count"] for a in audiences)}}
            stats.update({name: {"requests": e.request_count} for name, e in self.emulators.items()})
            return 200, stats
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[1] in self.emulators:
            return self._emulator_admin(method, self.emulators[parts[1]], parts[2:], data)
        if method == "POST" and path.rstrip("/") == "/_sandbox/reset":
            self.reset()
            return 200, {"ok": True}
        if method == "POST" and path.rstrip("/") == "/_sandbox/save":
            if self.state_file is None:
                return 400, {"error": "no state file"}
            return 200, {"saved": str(self.save())}
        if path.rstrip("/") == "/_sandbox/meta/audiences":
            if method == "GET":
                return 200, self.meta.audiences()
            if method == "POST":
                try:
                    audience_id = self.meta.create_audience(
                        data.get("id") and str(data["id"]), str(data.get("name", "sandbox audience")),
                        ad_account_id=data.get("ad_account_id") and str(data["ad_account_id"]))
                except (AttributeError, ValueError) as exc:
                    return 400, {"error": f"expected {{id?, name?, ad_account_id?}} with digit ids: {exc}"}
                return 200, {"id": audience_id}
        if (match := _AUDIENCE.match(path)) and method == "GET":
            try:
                members = self.meta.members(match.group(1))
            except KeyError:
                return 404, {"error": f"unknown audience {match.group(1)}"}
            return 200, {"id": match.group(1), "count": len(members), "members": members}
        if method == "POST" and path.rstrip("/") == "/_sandbox/meta/faults":
            return self._faults(data)
        return 404, {"error": f"unknown sandbox endpoint {method} {path}"}

    @staticmethod
    def _emulator_admin(method: str, emulator: Emulator, rest: list[str], data: Any) -> tuple[int, Any]:
        if method == "GET" and not rest:
            return 200, emulator.admin_view()
        if method == "POST" and rest == ["faults"] and isinstance(data, dict):
            try:
                if "latency" in data:
                    emulator.latency = float(data["latency"])
                else:
                    emulator.inject_http(status=int(data.get("http_status", 503)), times=int(data.get("times", 1)),
                                         retry_after=data.get("retry_after"), body=data.get("body"))
            except (TypeError, ValueError) as exc:
                return 400, {"error": f"bad fault: {exc}"}
            return 200, {"ok": True}
        return 404, {"error": f"unknown sandbox endpoint {method} /_sandbox/{emulator.name}/{'/'.join(rest)}"}

    def _faults(self, data: Any) -> tuple[int, Any]:
        if not isinstance(data, dict):
            return 400, {"error": "expected a JSON object"}
        try:
            if "latency" in data:
                self.meta.latency = float(data["latency"])
            elif "http_status" in data:
                self.meta.inject_http(status=int(data["http_status"]), times=int(data.get("times", 1)))
            else:
                self.meta.inject(**data)
        except (TypeError, ValueError) as exc:
            return 400, {"error": f"bad fault: {exc}"}
        return 200, {"ok": True}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    sandbox: Sandbox


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's requests.Session reuses connections
    disable_nagle_algorithm = True  # else headers and body, sent apart, stall ~40 ms on delayed ACKs
    server_version = "SyncerSandbox/1.0"
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        sandbox = self.server.sandbox
        try:
            prefix, _, rest = url.path.lstrip("/").partition("/")
            if url.path.startswith("/_sandbox/"):
                status, value = sandbox.admin(method, url.path, body)
                headers, payload = {"Content-Type": "application/json"}, json.dumps(value).encode()
            elif prefix in sandbox.emulators:
                request = Request(method, "/" + rest, url.query, body, {k.lower(): v for k, v in self.headers.items()})
                status, headers, payload = sandbox.emulators[prefix].serve(request)
            else:
                status, headers, payload = sandbox.meta.handle(method, url.path, url.query, body,
                                                               self.headers.get("Content-Type", ""))
        except Exception:  # a bug in an emulator: answer like Meta's code 1 and keep serving
            log.exception("sandbox failed on %s %s", method, url.path)
            status, headers = 500, {"Content-Type": "application/json"}
            payload = json.dumps({"error": {"message": "An unknown error occurred", "type": "OAuthException",
                                            "code": 1, "is_transient": True, "fbtrace_id": "sandbox"}}).encode()
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (killed mid-request)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


def main(argv: list[str] | None = None) -> int:
    """Serve the sandbox until SIGTERM/SIGINT, then save the state file."""
    parser = argparse.ArgumentParser(prog="python -m syncer.sandbox.server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8510, help="0 picks a free port (printed on start)")
    parser.add_argument("--state", help="JSON state file: loaded on start, saved on stop and every --save-every s")
    parser.add_argument("--save-every", type=float, default=30.0, help="seconds between saves of a changed state")
    parser.add_argument("--meta-token", default=None, help="token to accept (default $SANDBOX_META_TOKEN or sandbox-meta-token)")
    parser.add_argument("--meta-app-secret-env", default=None, help="env var holding an app secret to require appsecret_proof")
    parser.add_argument("--meta-audience", action="append", default=[], metavar="[ACCOUNT:]ID",
                        help="create this audience at start if missing, e.g. 120210000000 or act_1001:120210000000 (repeatable)")
    args = parser.parse_args(argv)
    secret = os.environ.get(args.meta_app_secret_env) if args.meta_app_secret_env else None
    sandbox = Sandbox(args.host, args.port, meta_token=args.meta_token, meta_app_secret=secret, state_file=args.state)
    for spec in args.meta_audience:
        account, _, audience_id = spec.rpartition(":")
        sandbox.meta.create_audience(audience_id, f"sandbox audience {audience_id}", ad_account_id=account or None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sandbox.start()
    print(sandbox.banner(), flush=True)
    while not stop.wait(args.save_every):
        if sandbox.state_file is not None and sandbox.dirty:
            sandbox.save()
    sandbox.stop()
    print("sandbox stopped" + (f"; state saved to {sandbox.state_file}" if sandbox.state_file else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
