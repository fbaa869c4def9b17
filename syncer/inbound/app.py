"""The ASGI app behind `syncer serve` (Starlette): Twilio's inbound STOP webhooks and signed event posts.

Routes (``create_app`` serves a route only when the project configures what it needs):

- ``POST /twilio/inbound``: Twilio's incoming-message webhook (form-encoded). A missing or wrong
  ``X-Twilio-Signature``, or an ``AccountSid`` no configured twilio_sms destination holds: 403. An opt-out
  keyword records the phone as opted out of the destination(s) (``destinations.twilio.opt_outs``), an opt-in
  keyword lifts that; any other reply is only counted. The answer is always an empty TwiML ``<Response/>``,
  so Twilio's own auto-reply to STOP/START stands and nothing else is sent back.
- ``POST /events``: ``{"events": [...]}`` signed with ``X-Syncer-Signature`` (``syncer.inbound.signatures``).
  Bad or stale signature: 403; a body of the wrong shape: 400 naming the field; else the events are stored
  in the ledger (``syncer.ledger.inbound``), a re-posted ``id`` once: 202 ``{"accepted": n, "duplicates": m}``.
- ``GET /health``: 200 ``{"status": "ok", "counts": {...}}``, what was received since the start.

A refused request is logged (logger ``syncer.inbound``) with its path, the reason and the remote address only:
never its body (a phone number, a member key), never a signature. Bodies over 1 MiB are refused (413).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl

from phonenumbers import NumberParseException
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from destinations.twilio.opt_outs import record_opt_in, record_opt_out
from syncer.environment import resolve_secret
from syncer.inbound.events import EventBodyError, parse_events
from syncer.inbound.signatures import event_signature_problem, twilio_signature_valid
from syncer.inbound.twilio import TwilioAccount, opt_action, target_destinations, twilio_accounts
from syncer.ledger.inbound import record_events
from syncer.ledger.store import Ledger
from syncer.project.config import ServeConfig

__all__ = ["EMPTY_TWIML", "MAX_BODY_BYTES", "ServedRoute", "create_app"]

log = logging.getLogger("syncer.inbound")

MAX_BODY_BYTES = 1 << 20
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@dataclass(frozen=True)
class ServedRoute:
    """One route the app serves, for `syncer serve` to print."""

    method: str
    path: str
    what: str


def create_app(project, ledger: Ledger | None = None, *, clock: Callable[[], float] = time.time) -> Starlette:
    """The app for ``project``: its secrets read from the environment now, its ledger opened unless given.

    ``app.state.served`` lists the routes served, ``app.state.counts`` what was received. ``clock`` (epoch
    seconds) judges event signatures' age and stamps stored events; tests pass a fake one.

    Raises:
        ConfigError: a secret's environment variable is not set (the message names it).
        StateFileError: the ledger cannot be opened.
    """
    settings = project.config.serve or ServeConfig()
    accounts = twilio_accounts(project, settings.twilio_destinations)
    secret = (resolve_secret(settings.event_secret_env, what="serve.event_secret_env (the secret signing event posts)")
              if settings.event_secret_env else None)
    owned = ledger is None
    handlers = _Handlers(ledger or Ledger(project.ledger_url()), accounts, secret, settings.public_url, clock)
    served = [ServedRoute("GET", "/health", "liveness and counts")]
    routes = [Route("/health", handlers.health, methods=["GET"])]
    if accounts:
        served.append(ServedRoute("POST", "/twilio/inbound", "Twilio inbound messages: STOP/START for "
                                  + ", ".join(sorted({a.destination for a in accounts}))))
        routes.append(Route("/twilio/inbound", handlers.twilio_inbound, methods=["POST"]))
    if secret is not None:
        served.append(ServedRoute("POST", "/events", "signed event posts (X-Syncer-Signature)"))
        routes.append(Route("/events", handlers.events, methods=["POST"]))

    @asynccontextmanager
    async def lifespan(_app: Starlette):
        try:
            yield
        finally:
            if owned:
                handlers.ledger.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.served = served
    app.state.counts = handlers.counts
    return app


class _Handlers:
    def __init__(self, ledger: Ledger, accounts: list[TwilioAccount], secret: SecretStr | None, public_url: str | None,
                 clock: Callable[[], float]) -> None:
        self.ledger, self.accounts, self.secret, self.public_url, self.clock = ledger, accounts, secret, public_url, clock
        self.counts: Counter[str] = Counter()

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "counts": dict(sorted(self.counts.items()))})

    async def twilio_inbound(self, request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return self._refuse(request, 413, "body larger than 1 MiB")
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            return self._refuse(request, 403, "no X-Twilio-Signature header")
        if request.headers.get("x-twilio-webhooks-signature-settings"):
            return self._refuse(request, 403, "signed with a Webhooks Rule's shared key, which this server does not check")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return self._refuse(request, 400, "body is not UTF-8 form data")
        params = dict(pairs)
        accounts = [a for a in self.accounts if a.account_sid == params.get("AccountSid")]
        if not accounts:
            return self._refuse(request, 403, "AccountSid is none of the configured twilio_sms destinations'")
        url = self._signed_url(request)
        tokens = {a.auth_token.get_secret_value() for a in accounts}
        if not any(twilio_signature_valid(token, url, pairs, signature) for token in tokens):
            hint = "serve.public_url" if self.public_url else "the URL as seen here; behind a proxy set serve.public_url"
            return self._refuse(request, 403, f"X-Twilio-Signature does not match (URL checked: {hint})")
        await self._apply_reply(params, accounts)
        return Response(EMPTY_TWIML, media_type="text/xml")

    async def _apply_reply(self, params: dict[str, str], accounts: list[TwilioAccount]) -> None:
        action = opt_action(params)
        if action is None:
            self.counts["twilio_other"] += 1
            return
        targets = target_destinations(accounts, params, action)
        record = record_opt_out if action == "opt_out" else record_opt_in
        try:
            for destination in targets:
                await run_in_threadpool(record, self.ledger, destination, params.get("From", ""))
        except NumberParseException:
            self.counts["twilio_not_a_phone"] += 1
            log.info("%s ignored: the sender is not a phone number", action)
            return
        self.counts[f"twilio_{action}"] += 1
        log.info("%s recorded for %s", action, ", ".join(targets) or "no destination (none of their senders got it)")

    async def events(self, request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return self._refuse(request, 413, "body larger than 1 MiB")
        problem = event_signature_problem(self.secret.get_secret_value(), request.headers.get("x-syncer-signature"),
                                          body, now=self.clock())
        if problem:
            return self._refuse(request, 403, problem)
        try:
            events = parse_events(body)
        except EventBodyError as exc:
            return self._refuse(request, 400, str(exc), json=True)
        accepted, duplicates = await run_in_threadpool(record_events, self.ledger, events, now=self.clock())
        self.counts["events_accepted"] += accepted
        self.counts["events_duplicate"] += duplicates
        return JSONResponse({"accepted": accepted, "duplicates": duplicates}, status_code=202)

    def _signed_url(self, request: Request) -> str:
        """The URL Twilio signed: ``public_url`` with the request's path and query, else the request's own."""
        if self.public_url is None:
            return str(request.url)
        query = request.url.query
        return self.public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")

    def _refuse(self, request: Request, status: int, reason: str, *, json: bool = False) -> Response:
        # path, reason and remote address only: the body may hold a phone number, the header a signature
        self.counts["refused"] += 1
        remote = request.client.host if request.client else "unknown"
        log.warning("refused %s %s (%d): %s; from %s", request.method, request.url.path, status, reason, remote)
        if json:
            return JSONResponse({"error": reason}, status_code=status)
        return PlainTextResponse("forbidden" if status == 403 else reason, status_code=status)


async def _read_body(request: Request) -> bytes | None:
    """The request's body, or None once it is over ``MAX_BODY_BYTES`` (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
