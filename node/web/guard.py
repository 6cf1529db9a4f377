"""The checks every request to the web app passes first (DESIGN §1 S8), as
pure ASGI middleware in front of the routes.

In this order, each refusal a JSON ``{"error": ...}`` with its status:

1. HTTP/1.x only, methods GET, HEAD and POST (405, 505).
2. ``Host`` is exactly this app's (``127.0.0.1:P``, ``[::1]:P`` or
   ``localhost:P``): a page on a rebound DNS name reaches nothing (421).
3. ``Sec-Fetch-Site``, where the browser sends it, is ``same-origin``; a
   top-level load of the page may also be ``none`` (typed or opened by
   ``smu web``).  Other ports of 127.0.0.1 are *same-site* to a browser,
   so same-site is refused too (403).
4. ``Origin`` is required on every POST and on the WebSocket upgrade, and
   wherever it is sent it must be this app's own origin (403).
5. Outside the public paths (the page, its assets, the proof and the
   launch), a live session: the cookie named for this node and port, and
   on every HTTP request the ``X-SMU-Key`` header that only this origin's
   script can read (sessionStorage is per origin, port included, while
   cookies on 127.0.0.1 reach every port).  A WebSocket sends the key as
   its first message instead (``live.py``) (401).
6. A POST is ``application/json`` with a ``Content-Length`` of at most
   ``max_body`` bytes (415, 411, 413), and the body read never exceeds it.
7. At most ``max_requests`` requests and ``max_sockets`` WebSockets at
   once (503).

Every answer, refusals included, carries the security headers, and
``Cache-Control: no-store`` unless the route set its own (only the
versioned, secret-free assets do).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from .auth import Session, Sessions

log = logging.getLogger("smu.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]
KEY_HEADER = "x-smu-key"
SESSION_SCOPE_KEY = "smu.session"


@dataclass(frozen=True, slots=True)
class GuardConfig:
    port: int
    cookie: str
    #: paths reachable without a session (exact), and prefixes
    public: frozenset[str]
    public_prefixes: tuple[str, ...]
    max_body: int
    max_requests: int
    max_sockets: int

    def hosts(self) -> frozenset[str]:
        return frozenset(f"{h}:{self.port}" for h in ("127.0.0.1", "[::1]", "localhost"))


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str


def header_values(scope: Scope, name: str) -> list[str]:
    key = name.encode()
    return [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == key]


def cookie_values(scope: Scope, name: str) -> list[str]:
    """Every value sent under ``name``: a server on another port of the same
    host can set a cookie of that name too, so all are tried."""
    out = []
    for header in header_values(scope, "cookie"):
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                out.append(value.strip())
    return out


class Guard:
    def __init__(self, app: ASGIApp, config: GuardConfig, sessions: Sessions) -> None:
        self.app = app
        self.config = config
        self.sessions = sessions
        self._hosts = config.hosts()
        self.requests = 0
        self.sockets = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):  # lifespan: nothing to check
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if refusal is None and kind == "websocket" and self.sockets >= self.config.max_sockets:
            refusal = Refusal(503, "too many live connections")
        if refusal is None and kind == "http" and self.requests >= self.config.max_requests:
            refusal = Refusal(503, "too many requests at once")
        if refusal is not None:
            log.info("web: refused %s %s: %s", kind, scope.get("path", "?"), refusal.reason)
            await self._refuse(scope, send, refusal)
            return
        if kind == "websocket":
            self.sockets += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.sockets -= 1
            return
        self.requests += 1
        try:
            await self.app(scope, self._capped(scope, receive), self._headers(send))
        finally:
            self.requests -= 1

    # -- the checks ---------------------------------------------------------------

    def check(self, scope: Scope) -> Refusal | None:
        kind = scope["type"]
        method = scope.get("method", "GET") if kind == "http" else "GET"
        path = str(scope.get("path", ""))
        if scope.get("http_version") not in ("1.0", "1.1"):
            return Refusal(505, "this app speaks HTTP/1.1 only")
        if method not in ("GET", "HEAD", "POST"):
            return Refusal(405, "method not allowed")
        hosts = header_values(scope, "host")
        if len(hosts) != 1 or hosts[0] not in self._hosts:
            return Refusal(421, "wrong Host: open the address `smu web` prints")
        origin = f"http://{hosts[0]}"
        site = header_values(scope, "sec-fetch-site")
        navigation = kind == "http" and method in ("GET", "HEAD") and path == "/"
        allowed_sites = ("same-origin", "none") if navigation else ("same-origin",)
        if site and (len(site) != 1 or site[0] not in allowed_sites):
            return Refusal(403, "cross-site request refused")
        origins = header_values(scope, "origin")
        if len(origins) > 1 or (origins and origins[0] != origin):
            return Refusal(403, "foreign Origin refused")
        if not origins and (kind == "websocket" or method == "POST"):
            return Refusal(403, "Origin required")
        if kind == "http" and method == "POST":
            refusal = self._check_body(scope)
            if refusal is not None:
                return refusal
        if path in self.config.public or path.startswith(self.config.public_prefixes):
            return None
        session = self._session(scope, websocket=kind == "websocket")
        if session is None:
            return Refusal(401, "not signed in: open the app with `smu web`")
        scope[SESSION_SCOPE_KEY] = session
        return None

    def _check_body(self, scope: Scope) -> Refusal | None:
        types = header_values(scope, "content-type")
        if len(types) != 1 or types[0].split(";")[0].strip().lower() != "application/json":
            return Refusal(415, "requests carry JSON")
        lengths = header_values(scope, "content-length")
        if len(lengths) != 1 or not lengths[0].isdigit():
            return Refusal(411, "Content-Length required")
        if int(lengths[0]) > self.config.max_body:
            return Refusal(413, "request too large")
        return None

    def _session(self, scope: Scope, *, websocket: bool) -> Session | None:
        keys = header_values(scope, KEY_HEADER)
        if not websocket and len(keys) != 1:
            return None
        for token in cookie_values(scope, self.config.cookie):
            session = self.sessions.check(token, None if websocket else keys[0])
            if session is not None:
                return session
        return None

    # -- answers --------------------------------------------------------------------

    def _capped(self, scope: Scope, receive: Receive) -> Receive:
        """A body longer than it said, or than the cap, ends as a disconnect."""
        if scope.get("method") != "POST":
            return receive
        limit = self.config.max_body
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    return {"type": "http.disconnect"}
            return message

        return capped

    def _headers(self, send: Send) -> Send:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        return with_headers

    async def _refuse(self, scope: Scope, send: Send, refusal: Refusal) -> None:
        if scope["type"] == "websocket":
            # closing before accepting: the server answers the upgrade with 403
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": refusal.reason}).encode()
        await self._headers(send)(
            {
                "type": "http.response.start",
                "status": refusal.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
