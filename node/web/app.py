"""The web app as one ASGI application: the page, its assets, the JSON
endpoints and the live WebSocket, behind the guard.

The page's files are read once, at start, and served from memory (no file
reads in threads).  The page itself is never cached (``no-store``); the
script and style sheet carry a hash of their content in their address, so
a browser may keep them for good and a new version is a new address.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from .api import Api, AppState
from .api_account import AccountApi
from .endpoints import session_of
from .guard import ASGIApp, Guard, GuardConfig

MAX_BODY = 256 * 1024
MAX_REQUESTS = 32
MAX_SOCKETS = 16
PUBLIC = frozenset({"/", "/favicon.ico", "/api/proof", "/api/session"})
PUBLIC_PREFIXES = ("/static/",)
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Assets:
    index: bytes
    script: bytes
    style: bytes
    version: str

    @classmethod
    def load(cls) -> Assets:
        """The page's files, from the package: the scripts in ``static/js``
        joined in name order into one, so the page makes one request."""
        root = resources.files(__package__).joinpath("static")
        scripts = sorted(
            (p for p in root.joinpath("js").iterdir() if p.name.endswith(".js")),
            key=lambda p: p.name,
        )
        script = b"\n".join(p.read_bytes() for p in scripts)
        style = root.joinpath("app.css").read_bytes()
        version = hashlib.sha256(script + b"\0" + style).hexdigest()[:12]
        index = root.joinpath("index.html").read_bytes().replace(b"{{version}}", version.encode())
        return cls(index, script, style, version)


def build_app(state: AppState, assets: Assets) -> ASGIApp:
    async def page(request: Request) -> Response:
        return Response(assets.index, media_type="text/html; charset=utf-8")

    async def script(request: Request) -> Response:
        return Response(
            assets.script,
            media_type="text/javascript; charset=utf-8",
            headers={"cache-control": IMMUTABLE},
        )

    async def style(request: Request) -> Response:
        return Response(
            assets.style, media_type="text/css; charset=utf-8", headers={"cache-control": IMMUTABLE}
        )

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204, headers={"cache-control": "max-age=86400"})

    async def live(ws: WebSocket) -> None:
        await state.hub.serve(ws, session_of(ws))

    v = assets.version
    routes: list[BaseRoute] = [
        Route("/", page, methods=["GET"]),
        Route(f"/static/app.{v}.js", script, methods=["GET"]),
        Route(f"/static/app.{v}.css", style, methods=["GET"]),
        Route("/favicon.ico", no_icon, methods=["GET"]),
        WebSocketRoute("/api/live", live),
        *Api(state).routes(),
        *AccountApi(state).routes(),
    ]
    config = GuardConfig(
        port=state.port,
        cookie=state.cookie,
        public=PUBLIC,
        public_prefixes=PUBLIC_PREFIXES,
        max_body=MAX_BODY,
        max_requests=MAX_REQUESTS,
        max_sockets=MAX_SOCKETS,
    )

    async def not_here(request: Request, exc: Exception) -> Response:
        # the page reads every refusal the same way: {"error": ...}
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        words = {404: "no such page", 405: "method not allowed"}.get(status, "refused")
        return JSONResponse({"error": words}, status_code=status)

    app = Starlette(routes=routes, exception_handlers={404: not_here, 405: not_here})
    return Guard(app, config, state.sessions)
