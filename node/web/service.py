"""The ``web.*`` control-API namespace (PROTOCOL.md §13): how ``smu web``
gets the web app's port and a one-time launch code from the running node.
The control socket is the owner's alone (S8), so whoever can ask for a
code could read the node's files anyway."""

from __future__ import annotations

import trio

from .. import control
from ..api import node as api
from ..api.schema import Empty
from ..control import RpcFailure
from ..errors import NodeUsageError
from .server import WebServer

#: how long ``web.launch`` waits for a node that is still starting its app
READY_TIMEOUT = 10.0


class WebService:
    def __init__(self, server: WebServer | None) -> None:
        #: None: the node runs without its web app (``--no-web``)
        self.server = server

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "web.launch": api.WEB_LAUNCH.bind(self.launch),
            "web.status": api.WEB_STATUS.bind(self.status),
        }

    def _server(self) -> WebServer:
        if self.server is None:
            raise RpcFailure(
                control.USAGE, "this node runs without its web app (started with --no-web)"
            )
        return self.server

    async def launch(self, params: Empty) -> api.WebLaunch:
        server = self._server()
        with trio.move_on_after(READY_TIMEOUT):
            await server.ready.wait()
        try:
            return server.launch()
        except NodeUsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc

    async def status(self, params: Empty) -> api.WebStatus:
        server = self.server
        if server is None:
            return {"enabled": False}
        return {
            "enabled": True,
            "port": server.port,
            "url": f"http://127.0.0.1:{server.port}/" if server.port else None,
            "error": server.error,
            "sessions": len(server.sessions.list()),
            "live_pages": len(server.hub.clients),
            "connections": server.connections,
        }
