"""A device's sessions with other devices (PROTOCOL.md §19.11): which
session a message belongs to, which one to send on, and when sessions end.

Sessions are named by their **session id**, the initiation id of the
set-up that made them (§19.4), which both ends know.  A receiver finds
the session of an incoming message by that id (the layer above carries
it next to the message), never by trying sessions in turn:

* a known id: the message goes to that session, whatever its form (the
  initiator repeats its prekey header until it hears back), and only if
  the sender is that session's peer;
* an unknown id: the message must be a prekey message whose initiation id
  is that id, and sets up a new session from the device's prekey store.

A peer device may have several sessions at once (both ends set up at the
same time, or one end lost its state and set up again): the **active**
one, used for sending, is the one that most recently opened a message or
was created; at most ``MAX_SESSIONS_PER_PEER`` are kept, the least
recently used going first, and at most ``MAX_SESSIONS`` in all.  Sessions
of a device that stopped being active in the log, or whose identity key
changed, end at once (``end_peer``, ``keep_only``).

A ``SessionBook`` is a value: every operation returns a new book and
leaves its input unchanged, so that the caller commits a book (or the
entries it reports as changed) only after everything else about the
message has been checked (§19.13).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from protocol.core.params import NetworkParams
from protocol.messaging.prekeys import PrekeyStore
from protocol.messaging.ratchet import (
    FULL_LIMITS,
    RatchetLimits,
    SessionState,
    decode_message,
    decrypt_state,
    encrypt_state,
)
from protocol.messaging.session_errors import SessionUsageError, WrongSessionError
from protocol.messaging.x3dh import Bundle, Party, initiate, respond_from_store

#: sessions kept per peer device: the active one plus a few whose
#: messages may still be in flight
MAX_SESSIONS_PER_PEER = 4
#: sessions kept in all (as many as replay streams, §15.6)
MAX_SESSIONS = 65_536

PeerKey = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class SessionEntry:
    peer: Party
    state: SessionState
    #: the book's sequence number when it last opened a message or was made
    used: int


@dataclass(frozen=True, slots=True)
class Received:
    """A message opened: its plaintext, who sent it, and what to commit."""

    plaintext: bytes
    peer: Party
    session_id: bytes
    new_session: bool
    book: SessionBook
    store: PrekeyStore
    #: session ids the new book no longer holds
    ended: tuple[bytes, ...] = ()


def _key(peer: Party) -> PeerKey:
    return (peer.account, peer.device)


@dataclass(frozen=True, slots=True)
class SessionBook:
    entries: Mapping[bytes, SessionEntry] = field(default_factory=dict)
    seq: int = 0

    def sessions_of(self, peer: Party) -> list[bytes]:
        """The peer device's session ids, the active one first."""
        mine = [(e.used, sid) for sid, e in self.entries.items() if _key(e.peer) == _key(peer)]
        return [sid for _, sid in sorted(mine, reverse=True)]

    def active(self, peer: Party) -> bytes | None:
        ids = self.sessions_of(peer)
        return ids[0] if ids else None

    # -- changes (each returns a new book) ------------------------------------

    def _with(self, sid: bytes, entry: SessionEntry) -> tuple[SessionBook, tuple[bytes, ...]]:
        entries = {**self.entries, sid: entry}
        ended: list[bytes] = []
        same = sorted((e.used, s) for s, e in entries.items() if _key(e.peer) == _key(entry.peer))
        for _, s in same[: max(0, len(same) - MAX_SESSIONS_PER_PEER)]:
            ended.append(s)
        if len(entries) - len(ended) > MAX_SESSIONS:
            rest = sorted((e.used, s) for s, e in entries.items() if s not in ended)
            ended.extend(s for _, s in rest[: len(entries) - len(ended) - MAX_SESSIONS])
        for s in ended:
            del entries[s]
        return SessionBook(entries, self.seq + 1), tuple(ended)

    def start(
        self, params: NetworkParams, me: Party, ik_secret: bytes, bundle: Bundle, random: bytes
    ) -> tuple[SessionBook, bytes]:
        """A new session with the bundle's device, made active; returns the
        book and the session id."""
        state = initiate(params, me, ik_secret, bundle, random).state
        sid = state.initiation
        if sid in self.entries:
            raise SessionUsageError("this set-up exists already (reused randomness?)")
        book, _ = self._with(sid, SessionEntry(bundle.responder, state, self.seq + 1))
        return book, sid

    def encrypt(self, session_id: bytes, plaintext: bytes) -> tuple[SessionBook, bytes]:
        entry = self.entries.get(session_id)
        if entry is None:
            raise SessionUsageError("no such session")
        state, message = encrypt_state(entry.state, plaintext)
        entries = {**self.entries, session_id: replace(entry, state=state)}
        return SessionBook(entries, self.seq), message.encode()

    def receive(
        self,
        params: NetworkParams,
        me: Party,
        ik_secret: bytes,
        store: PrekeyStore,
        session_id: bytes,
        sender: Party,
        raw: bytes,
        fresh: bytes,
        now_ms: int,
        limits: RatchetLimits = FULL_LIMITS,
    ) -> Received:
        """Open a message that came with ``session_id`` from ``sender`` (the
        device the layer above names, as this device's replica lists it),
        held to ``limits`` (the caller's choice for the sender's account,
        §19.7).  Raises a ``SessionError`` and changes nothing when it is
        refused."""
        message = decode_message(raw)
        entry = self.entries.get(session_id)
        if entry is not None:
            if _key(entry.peer) != _key(sender) or entry.peer.ik != sender.ik:
                raise WrongSessionError("this session belongs to another device or key")
            state, plaintext = decrypt_state(entry.state, message, fresh, limits)
            book, ended = self._with(session_id, SessionEntry(entry.peer, state, self.seq + 1))
            return Received(plaintext, entry.peer, session_id, False, book, store, ended)
        if message.prekey is None or message.prekey.initiation_id() != session_id:
            raise WrongSessionError("no session with this id, and not its set-up")
        session, plaintext, after = respond_from_store(
            params, sender, me, ik_secret, store, message, fresh, now_ms, limits
        )
        book, ended = self._with(session_id, SessionEntry(sender, session.state, self.seq + 1))
        return Received(plaintext, sender, session_id, True, book, after, ended)

    def end_peer(self, peer: Party) -> SessionBook:
        """Every session with a device ends (it was revoked, or is gone)."""
        return self.keep_only(lambda p: _key(p) != _key(peer))

    def keep_only(self, keep: Callable[[Party], bool]) -> SessionBook:
        """Sessions whose peer passes ``keep``: the node passes "ACTIVE in my
        replica with this identity key", so a revoked device's sessions and
        sessions under a replaced encryption key end at once."""
        entries = {s: e for s, e in self.entries.items() if keep(e.peer)}
        return SessionBook(entries, self.seq)


__all__ = [
    "MAX_SESSIONS",
    "MAX_SESSIONS_PER_PEER",
    "Received",
    "SessionBook",
    "SessionEntry",
]
