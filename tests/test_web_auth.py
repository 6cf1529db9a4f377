"""The web app's launch codes, sessions, proof and request guard, without a
server or a browser (issue: a local web app, security checks)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from node.errors import NodeUsageError
from node.web.auth import (
    LAUNCH_TTL_MS,
    MAX_LAUNCH_CODES,
    MAX_SESSIONS,
    SESSION_TTL_MS,
    Sessions,
    cookie_name,
    key_matches,
    load_or_create_key,
    proof,
    read_key,
)
from node.web.guard import CSP, Guard, GuardConfig


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


def test_a_launch_code_works_once_and_only_for_a_minute() -> None:
    clock = Clock()
    s = Sessions(clock)
    code, expires = s.issue_launch()
    assert expires == clock.ms + LAUNCH_TTL_MS
    got = s.redeem(code, "Mozilla/5.0 HeadlessChrome/156")
    assert got is not None
    session = got[2]
    assert session.agent == "Headless Chrome"
    assert s.redeem(code, "") is None  # burnt on first use
    late, _ = s.issue_launch()
    clock.ms += LAUNCH_TTL_MS + 1
    assert s.redeem(late, "") is None  # expired
    assert s.redeem("made-up", "") is None
    # at most a few codes are outstanding: the oldest goes first
    codes = [s.issue_launch()[0] for _ in range(MAX_LAUNCH_CODES + 1)]
    assert s.redeem(codes[0], "") is None and s.redeem(codes[-1], "") is not None


def test_a_session_needs_cookie_and_key_ends_and_can_be_revoked() -> None:
    clock = Clock()
    s = Sessions(clock)
    ended: list[str] = []
    s.on_ended.append(ended.append)
    got = s.redeem(s.issue_launch()[0], "Firefox/130")
    assert got is not None
    token, key, session = got
    assert s.check(token, key) == session
    assert s.check(token, "wrong") is None and s.check("wrong", key) is None
    assert s.check(token, None) == session and key_matches(session, key)  # a WebSocket
    assert s.check(None, key) is None
    other = s.redeem(s.issue_launch()[0], "")
    assert other is not None and [x.id for x in s.list()] == [session.id, other[2].id]
    assert s.revoke(other[2].id) and ended == [other[2].id]
    assert s.check(other[0], other[1]) is None and not s.revoke(other[2].id)
    clock.ms += SESSION_TTL_MS
    assert s.check(token, key) is None and ended == [other[2].id, session.id]
    # too many sessions: the oldest ends
    for _ in range(MAX_SESSIONS + 2):
        s.redeem(s.issue_launch()[0], "")
        clock.ms += 1
    assert len(s.list()) == MAX_SESSIONS


def test_the_proof_is_keyed_and_bound_to_the_port(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    assert (tmp_path / "web.key").stat().st_mode & 0o777 == 0o600
    assert read_key(tmp_path) == key == load_or_create_key(tmp_path)
    c = os.urandom(16)
    assert proof(key, 8080, c) == proof(key, 8080, c)
    assert proof(key, 8081, c) != proof(key, 8080, c)
    assert proof(os.urandom(32), 8080, c) != proof(key, 8080, c)
    (tmp_path / "web.key").chmod(0o644)
    with pytest.raises(NodeUsageError, match="readable by others"):
        read_key(tmp_path)


def test_cookie_names_differ_by_node_and_port() -> None:
    names = {cookie_name(p, port) for p in ("12D3KooA", "12D3KooB") for port in (8000, 8001)}
    assert len(names) == 4 and all(n.startswith("smu_") for n in names)


# -- the guard, as pure ASGI ---------------------------------------------------------

PORT = 4567
ORIGIN = f"http://127.0.0.1:{PORT}"


def make_guard() -> tuple[Guard, Sessions, str, str]:
    s = Sessions()
    got = s.redeem(s.issue_launch()[0], "")
    assert got is not None
    config = GuardConfig(
        port=PORT,
        cookie="smu_test",
        public=frozenset({"/", "/api/proof"}),
        public_prefixes=("/static/",),
        max_body=100,
        max_requests=4,
        max_sockets=2,
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return Guard(app, config, s), s, got[0], got[1]


async def call(guard: Guard, **kw: Any) -> tuple[int | str, dict[bytes, bytes]]:
    headers = {"host": f"127.0.0.1:{PORT}", **kw.pop("headers", {})}
    scope = {
        "type": kw.pop("type", "http"),
        "http_version": kw.pop("http_version", "1.1"),
        "method": kw.pop("method", "GET"),
        "path": kw.pop("path", "/api/state"),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items() if v is not None],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await guard(scope, receive, send)
    first = sent[0]
    if first["type"] == "websocket.close":
        return "closed", {}
    if first["type"] == "websocket.accept":
        return "accepted", {}
    return first["status"], dict(first["headers"])


async def test_the_guard_refuses_what_it_should() -> None:
    guard, _, token, key = make_guard()
    auth = {"cookie": f"other=1; smu_test={token}", "x-smu-key": key}
    post = {**auth, "origin": ORIGIN, "content-type": "application/json", "content-length": "2"}
    assert (await call(guard, headers=auth))[0] == 200
    assert (await call(guard, headers={**auth, "host": f"[::1]:{PORT}"}))[0] == 200
    assert (await call(guard, method="POST", headers=post))[0] == 200
    cases: list[tuple[dict[str, Any], int]] = [
        ({"headers": {}}, 401),  # no session
        ({"headers": {"cookie": f"smu_test={token}"}}, 401),  # no key
        ({"headers": {**auth, "x-smu-key": "nope"}}, 401),
        ({"headers": {**auth, "host": f"evil.example:{PORT}"}}, 421),
        ({"headers": {**auth, "host": "127.0.0.1:1"}}, 421),
        ({"headers": {**auth, "sec-fetch-site": "cross-site"}}, 403),
        ({"headers": {**auth, "sec-fetch-site": "same-site"}}, 403),  # another port
        ({"headers": {**auth, "sec-fetch-site": "none"}}, 403),  # only the page itself
        ({"headers": {**auth, "origin": "http://127.0.0.1:1"}}, 403),
        ({"method": "POST", "headers": {**post, "origin": None}}, 403),
        ({"method": "POST", "headers": {**post, "origin": "null"}}, 403),
        ({"method": "POST", "headers": {**post, "content-type": "text/plain"}}, 415),
        ({"method": "POST", "headers": {**post, "content-length": "101"}}, 413),
        ({"method": "POST", "headers": {**post, "content-length": None}}, 411),
        ({"method": "PUT", "headers": post}, 405),
        ({"http_version": "2", "headers": auth}, 505),
    ]
    for kw, status in cases:
        got, headers = await call(guard, **kw)
        assert got == status, kw
        assert headers[b"content-security-policy"] == CSP.encode()
        assert headers[b"x-frame-options"] == b"DENY"
        assert headers[b"cache-control"] == b"no-store"
    # the page itself opens from the address bar, without a session
    assert (await call(guard, path="/", headers={"sec-fetch-site": "none"}))[0] == 200
    assert (await call(guard, path="/static/app.js", headers={}))[0] == 200


async def test_the_guard_checks_websockets() -> None:
    guard, _, token, _ = make_guard()
    cookie = {"cookie": f"smu_test={token}"}
    ws: dict[str, Any] = {"type": "websocket", "path": "/api/live"}
    assert (await call(guard, **ws, headers={**cookie, "origin": ORIGIN}))[0] == "accepted"
    assert (await call(guard, **ws, headers=cookie))[0] == "closed"  # no Origin
    assert (await call(guard, **ws, headers={**cookie, "origin": "http://evil"}))[0] == "closed"
    assert (await call(guard, **ws, headers={"origin": ORIGIN}))[0] == "closed"  # no cookie
