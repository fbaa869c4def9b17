"""`syncer serve`: the HTTP endpoint receiving Twilio's inbound STOP webhooks and signed event posts.

Runs ``syncer.inbound.create_app`` under uvicorn in this process until SIGTERM or Ctrl-C, which finish the
requests under way and stop with exit 0. A secret it needs whose environment variable is not set, a port it
cannot take, or nothing to serve: one line and exit 2.
"""

from __future__ import annotations

import sys

import click

from syncer.cli.common import EXIT_INVALID, console, err, exit_on_sync_error, project_from


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: serve.host in syncer.yml, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default: serve.port in syncer.yml, else 8600; 0 picks a free one).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Receive Twilio's inbound STOP webhooks and signed event posts, and record them in the ledger."""
    from rich.markup import escape

    from syncer.errors import ConfigError
    from syncer.inbound import create_app
    from syncer.project.config import ServeConfig

    project = project_from(ctx)
    settings = project.config.serve or ServeConfig()
    host = host or settings.host
    port = settings.port if port is None else port
    with exit_on_sync_error():  # a ledger that cannot be opened: one line, exit 1
        try:
            app = create_app(project)
        except ConfigError as exc:
            _invalid(escape(exc.message))
    if len(app.state.served) == 1:
        _invalid("nothing to serve: the project has no twilio_sms destination (or serve.twilio_destinations is"
                 " empty) and no serve.event_secret_env; configure one in syncer.yml")
    sock = _listen(host, port)
    where = sock.getsockname()
    shown = f"[{where[0]}]" if ":" in where[0] else where[0]
    console.print(f"listening on http://{shown}:{where[1]} (Ctrl-C to stop)", highlight=False)
    for route in app.state.served:
        console.print(f"  {route.method:<5} {route.path:<16} {escape(route.what)}", highlight=False)
    _run(app, sock)
    console.print("stopped")


def _invalid(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_INVALID)


def _listen(host: str, port: int):
    """A listening socket on ``host:port``, bound here so the address is known (and printed) before serving."""
    import socket

    from rich.markup import escape

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        _invalid(escape(f"cannot listen on {host}:{port} ({exc.strerror or exc}): pick another --port or --host"))


def _run(app, sock) -> None:
    """Serve until SIGTERM or Ctrl-C. uvicorn shuts down gracefully on either, then raises the signal again
    for the handler it found; ours ignore it, so the command ends normally instead of dying of the signal."""
    import signal

    import uvicorn

    config = uvicorn.Config(app, log_config=_log_config(), lifespan="on", proxy_headers=True)
    server = uvicorn.Server(config)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def _log_config() -> dict:
    """uvicorn's own logging, plus the ``syncer.inbound`` lines (refusals, opt-outs recorded) on stderr."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["syncer.inbound"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
