"""Who may use the web app (DESIGN §1 S8): the web key, the server's proof
of it, one-time launch codes and sessions.

The launch: ``smu web`` (the local user, who can read the 0600 files)
asks the node over the control socket for a launch code, draws a
challenge, computes the answer it expects from the web key, and puts all
three in the address's fragment (never sent to any server, so never in a
log).  The page asks the server for its answer to the challenge before it
shows anything or hands over the code: a server that does not hold the web
key cannot answer, and the answer is bound to the port, so it cannot be
relayed from the real server to another one.  Then the page trades the
code, once, for a session cookie.

Sessions live in this server's memory only: a restart ends them all.  The
cookie holds a random token; the server keeps its hash.  The cookie's name
carries a hash of the node's peer id and port, because cookies on
127.0.0.1 reach every port: another local server or node never receives a
cookie it could mistake for its own, and this one accepts only tokens it
issued.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..datadir import write_private
from ..errors import NodeUsageError

KEY_FILE = "web.key"
PORT_FILE = "web.json"
PROOF_DOMAIN = b"smu/web-proof/1"
#: a launch code works once, for about a minute
LAUNCH_TTL_MS = 60_000
MAX_LAUNCH_CODES = 8
SESSION_TTL_MS = 12 * 3600 * 1000
MAX_SESSIONS = 16
MAX_AGENT_CHARS = 120


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_or_create_key(datadir: Path) -> bytes:
    """The web key, made on first use (32 random bytes, mode 0600)."""
    path = datadir / KEY_FILE
    if not path.exists():
        write_private(path, os.urandom(32).hex().encode())
    return read_key(datadir)


def read_key(datadir: Path) -> bytes:
    path = datadir / KEY_FILE
    if not path.exists():
        raise NodeUsageError(f"no {path}: is the node running with its web app?")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise NodeUsageError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError as exc:
        raise NodeUsageError(f"{path} is not a web key") from exc
    if len(key) != 32:
        raise NodeUsageError(f"{path} is not a web key")
    return key


def proof(key: bytes, port: int, challenge: bytes) -> str:
    """The server's answer to a launch challenge: keyed, domain-separated and
    bound to the port it serves on."""
    mac = hmac.new(key, PROOF_DOMAIN + port.to_bytes(2, "big") + challenge, hashlib.sha256)
    return mac.hexdigest()[:32]


def cookie_name(peer_id: str, port: int) -> str:
    """A name no other node or port shares (the value is what is secret)."""
    digest = hashlib.blake2b(f"smu-web:{peer_id}:{port}".encode(), digest_size=6).hexdigest()
    return f"smu_{digest}"


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's login: ``id`` is public (listing, revoking), the token
    never leaves the cookie."""

    id: str
    token_hash: bytes
    key_hash: bytes
    created_ms: int
    expires_ms: int
    last_seen_ms: int
    agent: str


class Sessions:
    """Launch codes and sessions of one server, in memory."""

    def __init__(self, clock: Callable[[], int] = _wall_ms) -> None:
        self.clock = clock
        #: hash of a launch code -> when it expires
        self._codes: dict[bytes, int] = {}
        self._sessions: dict[bytes, Session] = {}
        #: told of a session that ended (its live connections close)
        self.on_ended: list[Callable[[str], None]] = []

    def _prune(self) -> None:
        now = self.clock()
        self._codes = {h: t for h, t in self._codes.items() if t > now}
        for h, s in list(self._sessions.items()):
            if s.expires_ms <= now:
                self._end(h)

    def _end(self, token_hash: bytes) -> None:
        session = self._sessions.pop(token_hash, None)
        if session is not None:
            for listener in list(self.on_ended):
                listener(session.id)

    def issue_launch(self) -> tuple[str, int]:
        """A new one-time code and when it expires; the oldest is dropped
        when too many are outstanding."""
        self._prune()
        while len(self._codes) >= MAX_LAUNCH_CODES:
            del self._codes[min(self._codes, key=self._codes.__getitem__)]
        code = secrets.token_urlsafe(24)
        expires = self.clock() + LAUNCH_TTL_MS
        self._codes[_hash(code)] = expires
        return code, expires

    def redeem(self, code: str, agent: str) -> tuple[str, str, Session] | None:
        """Trade a launch code for a session: the cookie's token, the key the
        page keeps in its own storage, and the session.  The code burns on
        this first use, whatever happens next."""
        self._prune()
        if self._codes.pop(_hash(code), None) is None:
            return None
        while len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.created_ms)
            self._end(oldest.token_hash)
        token, key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        h = _hash(token)
        session = Session(
            id=h[:6].hex(),
            token_hash=h,
            key_hash=_hash(key),
            created_ms=now,
            expires_ms=now + SESSION_TTL_MS,
            last_seen_ms=now,
            agent=_agent(agent),
        )
        self._sessions[h] = session
        return token, key, session

    def check(self, token: str | None, key: str | None) -> Session | None:
        """The live session a cookie's token belongs to, if the page's key
        matches too (``key`` None: the caller checks it later with
        ``key_matches``, as a WebSocket does)."""
        if not token:
            return None
        h = _hash(token)
        session = self._sessions.get(h)
        if session is None or (key is not None and not key_matches(session, key)):
            return None
        now = self.clock()
        if session.expires_ms <= now:
            self._end(h)
            return None
        if now - session.last_seen_ms > 10_000:  # coarse: listing only
            session = replace(session, last_seen_ms=now)
            self._sessions[h] = session
        return session

    def list(self) -> list[Session]:
        self._prune()
        return sorted(self._sessions.values(), key=lambda s: s.created_ms)

    def revoke(self, session_id: str) -> bool:
        for h, s in list(self._sessions.items()):
            if hmac.compare_digest(s.id, session_id):
                self._end(h)
                return True
        return False


def key_matches(session: Session, key: str) -> bool:
    return hmac.compare_digest(session.key_hash, _hash(key))


def _agent(agent: str) -> str:
    """A short name for the browser, shown in the list of sessions."""
    text = "".join(c for c in agent if c.isprintable())[:MAX_AGENT_CHARS]
    # the order matters: Edge's and Chromium's agents name Chrome and Safari too
    for token, label in (
        ("HeadlessChrome", "Headless Chrome"),
        ("Firefox/", "Firefox"),
        ("Edg/", "Edge"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ):
        if token in text:
            return label
    return text or "unknown browser"
