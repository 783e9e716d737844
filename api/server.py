"""Runs the API under Uvicorn: `python -m api.server [--host H] [--port P] [--workers N]`.

The one thing plain `uvicorn` cannot do for us: on shutdown, Uvicorn closes open
WebSockets itself (code 1012) before the app hears of it. This server first closes
the live-change sockets with 1001 (going away), then shuts down as usual.
"""

import argparse
import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import uvicorn
from uvicorn.supervisors import multiprocess

from api.config import Settings
from api.core import embedded, metrics
from api.core.supervisor import supervising
from api.live import feed
from api.live.routes import MESSAGE_MAX_BYTES

APP = "api.main:app_from_env"


class Server(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await feed.close_all(1001)
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGHUP (the terminal closing) stops the server gracefully too, as SIGINT and
        SIGTERM do: the embedded database runs in a session of its own, so only this
        process's shutdown stops it."""
        with super().capture_signals():
            hangup = None
            if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
                hangup = signal.signal(signal.SIGHUP, self.handle_exit)
            try:
                yield
            finally:
                # Restored before Uvicorn raises the caught signal again on the way out,
                # so it ends the process as SIGINT and SIGTERM do (not caught once more).
                if hangup is not None:
                    signal.signal(signal.SIGHUP, hangup)


def config(
    app: Any = APP,
    *,
    host: str,
    port: int,
    ping_interval: float = 20.0,
    log_level: str = "info",
    lifespan: Literal["auto", "on", "off"] = "auto",
    per_message_deflate: bool = False,
    settings: Settings | None = None,
) -> uvicorn.Config:
    """Uvicorn's settings for the API (`app`: the factory's import path, or an app object).

    A WebSocket message larger than the live feed reads is refused as it arrives.
    WebSocket pings keep idle sockets alive, and drop peers that stop answering them.
    Per-message compression is off unless asked for: it costs every socket its own
    zlib state (docs/benchmarks.md, live feed).
    `X-Forwarded-For` and `X-Forwarded-Proto` are believed only from `TRUSTED_PROXIES`
    (`settings`, else the environment's): from anyone else they are ignored, or any
    caller could pick the address its attempts are counted under.
    """
    trusted = (settings or Settings()).trusted_proxies
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=",".join(trusted) or None,
        ws_ping_interval=ping_interval,
        ws_ping_timeout=ping_interval,
        lifespan=lifespan,
        ws_per_message_deflate=per_message_deflate,
        ws_max_size=MESSAGE_MAX_BYTES,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ws-ping-interval", type=float, default=20.0, metavar="SECONDS")
    parser.add_argument("--ws-per-message-deflate", action="store_true")
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--workers",
        type=int,
        # WEB_CONCURRENCY, as Uvicorn and Gunicorn read it: how the Docker image is scaled.
        default=int(os.environ.get("WEB_CONCURRENCY", "1")),
        metavar="N",
        help="API processes on the one port (default: WEB_CONCURRENCY, else 1)",
    )
    args = parser.parse_args(argv)
    settings = config(
        host=args.host,
        port=args.port,
        ping_interval=args.ws_ping_interval,
        log_level=args.log_level,
        per_message_deflate=args.ws_per_message_deflate,
    )
    if args.workers > 1:
        run_workers(settings, args.workers)
    else:
        Server(settings).run()


def run_workers(settings: uvicorn.Config, workers: int) -> None:
    """`workers` processes sharing one listening socket (Uvicorn's supervisor restarts
    any that dies), each with its own live feed, each closing its sockets with 1001
    on shutdown. Without MONGODB_URL, the embedded database is started here, once,
    and every worker is pointed at it (a worker owning it would take it down with it);
    this process restarts it if it fails, and stops it last. The workers' metrics go to
    one folder, so a scrape of any of them counts all of them.
    """
    settings.workers = workers
    server = None
    if Settings().mongodb_url is None:
        server = embedded.start_or_attach(Settings().data_dir)
        os.environ["MONGODB_URL"] = server.url  # the workers are spawned with it
    # Uvicorn's supervisor builds each worker's server as a plain uvicorn.Server, which
    # would close live sockets with 1012 itself; its workers are made from the module's
    # `Process`, so ours (whose server is this module's Server) stands in while it runs.
    plain, multiprocess.Process = multiprocess.Process, _Worker  # type: ignore[misc]
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(metrics.shared_across_workers())  # before the workers start
            if server is not None and server.owned:
                stack.enter_context(supervising(server, Settings().data_dir))
            sock = settings.bind_socket()
            multiprocess.Multiprocess(settings, sockets=[sock]).run()
    finally:
        multiprocess.Process = plain  # type: ignore[misc]
        if server is not None:
            server.stop()


class _Worker(multiprocess.Process):
    """A worker process of Uvicorn's supervisor, serving with this module's Server. The
    supervisor joins every worker that ends (replaced after a crash, or at shutdown):
    its live metrics end with it."""

    def join(self) -> None:
        super().join()
        if self.pid is not None:
            metrics.worker_gone(self.pid)

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(config=self.config)
        return self._server


if __name__ == "__main__":
    main()
