"""The web app's server, inside the node's trio process (DESIGN §6).

The node binds its own listening sockets, on loopback only: 127.0.0.1 and,
where the machine has it, [::1] on the same port, because ``localhost`` may
resolve to either and a port left free on the other family could be taken
by another local user.  With an automatic port (the default), a port whose
[::1] twin is taken is given up for another.  The port goes to
``web.json`` (0600) in the data directory, and to ``web.launch`` over the
control socket.

Connections are handed to hypercorn's trio connection handler
(``TCPServer``) by a listener loop of our own, which is where the cap on
open connections lives (hypercorn's ``serve`` has none).  The access log
is off (nothing a person typed is logged) and so is the server header.

Everything runs in a nursery of its own: a failure in the web app is
logged and the app restarted after a pause; it never stops the node.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from ..api.node import WebLaunch
from ..datadir import write_private
from ..errors import NodeUsageError
from .api import AppState
from .app import Assets, build_app
from .auth import PORT_FILE, Sessions, cookie_name, load_or_create_key
from .deps import Services
from .guard import ASGIApp
from .live import Hub
from .metrics import CounterHistory

log = logging.getLogger("smu.web")

MAX_CONNECTIONS = 64
BACKLOG = 32
AUTO_PORT_TRIES = 20
RESTART_MAX_S = 60.0


def bind_loopback(port: int) -> list[socket.socket]:
    """Listening sockets on 127.0.0.1:P and [::1]:P for one port P
    (``port`` 0: a free one)."""
    for _ in range(AUTO_PORT_TRIES if port == 0 else 1):
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            v4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            v4.bind(("127.0.0.1", port))
            chosen = int(v4.getsockname()[1])
            v6, taken = _bind_v6(chosen)
        except BaseException:
            v4.close()
            raise
        if taken:
            v4.close()
            if port:
                raise OSError(errno.EADDRINUSE, f"[::1]:{port} is taken by another program")
            continue  # someone holds [::1] on this port: take another
        socks = [v4] if v6 is None else [v4, v6]
        for s in socks:
            s.listen(BACKLOG)
            s.setblocking(False)
        return socks
    raise OSError(errno.EADDRINUSE, "no free loopback port for the web app")


def _bind_v6(port: int) -> tuple[socket.socket | None, bool]:
    """[::1]:port, or None; and whether another program holds it (as opposed
    to the machine having no IPv6 loopback)."""
    if not socket.has_ipv6:
        return None, False
    try:
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return None, False
    try:
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        v6.bind(("::1", port))
        return v6, False
    except OSError as exc:
        v6.close()
        return None, exc.errno == errno.EADDRINUSE


def hypercorn_config() -> Config:
    config = Config()
    config.accesslog = None  # no addresses, no codes, nothing typed in any log
    config.errorlog = logging.getLogger("smu.web.http")
    config.include_server_header = False
    # A connection with no request under way (headers still arriving count)
    # is closed after this; a request being answered is not (joining waits
    # for the other device's approval), and it counts against the caps.
    config.keep_alive_timeout = 15
    config.websocket_ping_interval = 20  # a live page that went away is noticed
    config.websocket_max_message_size = 64 * 1024
    config.h11_max_incomplete_size = 16 * 1024
    return config


class WebServer:
    def __init__(self, datadir: Path, port: int, svc: Services) -> None:
        self.datadir = datadir
        self.want_port = port
        self.svc = svc
        self.sessions = Sessions()
        self.hub = Hub(svc, self.sessions)
        self.metrics = CounterHistory(svc.node.replication.stats)
        self.ready = trio.Event()
        self.port: int | None = None
        self.error: str | None = None
        self.connections = 0

    @property
    def port_file(self) -> Path:
        return self.datadir / PORT_FILE

    def launch(self) -> WebLaunch:
        """A new one-time launch code, for ``smu web`` (``web.launch``)."""
        if self.port is None:
            raise NodeUsageError(self.error or "the web app is not listening yet")
        code, expires = self.sessions.issue_launch()
        return {
            "port": self.port,
            "url": f"http://127.0.0.1:{self.port}/",
            "code": code,
            "expires_at_ms": expires,
        }

    async def run(self) -> None:
        try:
            socks = bind_loopback(self.want_port)
        except OSError as exc:
            why = exc.strerror or str(exc)
            self.error = f"the web app cannot listen on port {self.want_port}: {why}"
            log.error("%s", self.error)
            self.ready.set()
            return
        try:
            port = int(socks[0].getsockname()[1])
            state = AppState(
                svc=self.svc,
                sessions=self.sessions,
                hub=self.hub,
                metrics=self.metrics,
                key=load_or_create_key(self.datadir),
                port=port,
                cookie=cookie_name(self.svc.ctx.peer_id, port),
            )
            app = build_app(state, Assets.load())
            write_private(
                self.port_file,
                json.dumps({"port": port, "url": f"http://127.0.0.1:{port}/"}).encode(),
            )
            self.port = port
            self.ready.set()
            log.info("web app on http://127.0.0.1:%d/ (open it with `smu web`)", port)
            await self._keep_running(app, socks)
        finally:
            self.port = None
            with trio.CancelScope(shield=True):
                self.port_file.unlink(missing_ok=True)
                for s in socks:
                    s.close()

    async def _keep_running(self, app: ASGIApp, socks: list[socket.socket]) -> None:
        pause = 1.0
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.hub.run)
                    nursery.start_soon(self.metrics.run)
                    nursery.start_soon(self._serve, app, socks)
            except Exception:  # the node goes on; so does the app, after a pause
                log.exception("the web app failed; restarting it in %.0fs", pause)
            await trio.sleep(pause)
            pause = min(pause * 2, RESTART_MAX_S)

    async def _serve(self, app: ASGIApp, socks: list[socket.socket]) -> None:
        config = hypercorn_config()
        wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
        context = WorkerContext(None)
        # duplicates: a listener closes its socket when it stops, and a
        # restart must find the port still ours
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s.dup())) for s in socks]

        async def handle(stream: trio.SocketStream) -> None:
            if self.connections >= MAX_CONNECTIONS:
                await stream.aclose()
                return
            self.connections += 1
            try:
                await TCPServer(wrapped, config, context, ConnectionState({}), stream)  # type: ignore[arg-type]
            finally:
                self.connections -= 1

        await trio.serve_listeners(handle, listeners)
