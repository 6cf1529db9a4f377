"""Signed session resets (PROTOCOL.md §19.15): the session-control content
a device sends to a device whose scheme-2 wrap it could not open, and
what either end does with one.

* ``SessionReset`` (content kind 16, the first of the session range,
  §15.4): "I do not hold these sessions with you".  It travels sealed and
  signed like any content, over the normal delivery path (mailboxes
  included), so it is authenticated and replay-checked (§15.5, §15.6).
* ``LostSession``: what the receiver learnt from the wrap it could not
  open: the session id and the device the sealed layer names as its
  sender (§19.13).  That name is an unauthenticated claim, so a forger can
  choose it: hence ``ResetLimiter``, at most one reset per claimed device
  per ``RESET_INTERVAL_MS``, in a bounded table.
* ``sessions_to_end``: the sender's side.  Only sessions whose peer is the
  reset's signed sender end; an id of a session with another device, or
  one not held, changes nothing.

Values and pure functions only (time is passed in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import pairwise

from protocol.core.errors import SchemaError
from protocol.core.fields import fixed_bin as _bin
from protocol.messaging.session_errors import SessionKeyGoneError, WrongSessionError
from protocol.messaging.sessions import MAX_SESSIONS_PER_PEER, SessionEntry

SESSION_ID_BYTES = 32
#: a reset names at most the sessions a sender keeps per peer device
#: (§19.11): more could never match
MAX_RESET_IDS = MAX_SESSIONS_PER_PEER
#: one reset per claimed sender device per hour: a state loss is rare, and a
#: flood of undecryptable envelopes (forged or old) then costs one reset
RESET_INTERVAL_MS = 3600 * 1000
#: claimed sender devices remembered; beyond, the oldest entry is forgotten
#: (a forger naming 4,096 devices gets each at most one reset an hour, and
#: the receiver seals only to devices active in its replica, §19.15)
MAX_RESET_PEERS = 4096


class ResetKind(IntEnum):
    SESSION_RESET = 16


@dataclass(frozen=True, slots=True)
class SessionReset:
    """The sessions the sending device does not hold with the recipient
    device (ascending, unique, 1 to ``MAX_RESET_IDS``)."""

    session_ids: tuple[bytes, ...]

    kind = ResetKind.SESSION_RESET

    def to_wire(self) -> list[object]:
        return [list(self.session_ids)]


def decode_reset(fields: object) -> SessionReset:
    """Kind 16's body, ``[[session_id bin(32)...]]`` (the body was bounded
    and checked canonical before this, §15.4)."""
    if type(fields) is not list or len(fields) != 1 or type(fields[0]) is not list:
        raise SchemaError("a session reset is [[session ids]]")
    ids = fields[0]
    if not 1 <= len(ids) <= MAX_RESET_IDS:
        raise SchemaError(f"a session reset names 1 to {MAX_RESET_IDS} sessions")
    out = tuple(_bin(i, SESSION_ID_BYTES, "session id") for i in ids)
    if any(a >= b for a, b in pairwise(out)):
        raise SchemaError("a reset's session ids are ascending and unique")
    return SessionReset(out)


@dataclass(frozen=True, slots=True)
class LostSession:
    """A wrap this device could not open for want of its session: the id,
    and the (account, device) the sealed layer claims sent it (None: the
    sender named nobody, so nobody can be told)."""

    session_id: bytes
    claimed_sender: tuple[bytes, bytes] | None


class SessionNotHeldError(WrongSessionError):
    """``session_wrong`` for a wrap whose session this device does not hold
    (lost, restored from a backup, ended): carries what a reset needs."""

    def __init__(self, message: str, lost: LostSession) -> None:
        super().__init__(message)
        self.lost = lost


class KeyGoneError(SessionKeyGoneError):
    """``session_key_gone`` in a held session: the message may be lost to
    the skipped-key bound, so the session's peer is asked to send again
    (a reset naming that session, §19.15).  ``lost.claimed_sender`` is the
    session's peer, not a claim of the wrap."""

    def __init__(self, message: str, lost: LostSession) -> None:
        super().__init__(message)
        self.lost = lost


@dataclass(frozen=True, slots=True)
class ResetLimiter:
    """When each claimed sender device last got a reset (ms): a value, so
    that the caller keeps it only once the reset is stored."""

    last: Mapping[tuple[bytes, bytes], int] = field(default_factory=dict)

    def allows(self, peer: tuple[bytes, bytes], now_ms: int) -> bool:
        was = self.last.get(peer)
        return was is None or not 0 <= now_ms - was < RESET_INTERVAL_MS

    def sent(self, peer: tuple[bytes, bytes], now_ms: int) -> ResetLimiter:
        entries = {k: v for k, v in self.last.items() if k != peer}
        entries[peer] = now_ms
        while len(entries) > MAX_RESET_PEERS:  # forget the least recently sent
            del entries[next(iter(entries))]
        return ResetLimiter(entries)


def sessions_to_end(
    entries: Mapping[bytes, SessionEntry], signer: tuple[bytes, bytes], reset: SessionReset
) -> tuple[bytes, ...]:
    """The named sessions held with ``signer``, the reset's signed
    (account, device): never a session with another device (§19.15)."""
    return tuple(
        sid
        for sid in reset.session_ids
        if (e := entries.get(sid)) is not None and (e.peer.account, e.peer.device) == signer
    )


__all__ = [
    "MAX_RESET_IDS",
    "MAX_RESET_PEERS",
    "RESET_INTERVAL_MS",
    "KeyGoneError",
    "LostSession",
    "ResetKind",
    "ResetLimiter",
    "SessionNotHeldError",
    "SessionReset",
    "decode_reset",
    "sessions_to_end",
]
