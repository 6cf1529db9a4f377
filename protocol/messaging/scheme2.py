"""Wrap scheme 2 inside envelopes (PROTOCOL.md §15.3, §15.5, §19.13): the
content key of an envelope travels, per recipient device, as a session
message of that device pair, sealed to the device (``wrap2``).

Sans-I/O, and values only: the sender passes its ``SessionBook`` (the
sessions with the devices it wraps for) and gets the advanced book back
with the envelope; the receiver passes a way to read the sessions a
wrap may name and its ``PrekeyStore`` and gets both back with the opened
envelope, to commit with the message (§19.13: nothing advances before the
whole envelope has been checked).

    # sender: which devices get scheme 2, and how (from records and the
    # node's sticky set, §15.9)
    out = SendSessions(book, {device: Reach2(spk_id, spk, sealed_to_prekey)})
    env = seal(..., sessions=out);  env.book   # commit it with the message

    # receiver
    inp = ReceiveSessions(book_for, store, now_ms, fresh=os.urandom(32))
    opened = open_envelope(..., sessions=inp);  opened.book, opened.prekeys
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import nacl.bindings as sodium

from protocol.core import crypto
from protocol.core.errors import UsageError
from protocol.core.keys import DeviceKeys
from protocol.core.params import NetworkParams
from protocol.log.state import AccountState, DeviceStatus
from protocol.messaging import wrap2
from protocol.messaging.prekeys import OneTimePrekey, PrekeyStore
from protocol.messaging.ratchet import FULL_LIMITS, RatchetLimits, x25519_public
from protocol.messaging.resets import KeyGoneError, LostSession, SessionNotHeldError
from protocol.messaging.session_errors import (
    PeerNotActiveError,
    SessionDecryptError,
    SessionKeyGoneError,
    UnknownPrekeyError,
    WrongSessionError,
)
from protocol.messaging.sessions import SessionBook
from protocol.messaging.x3dh import Bundle, Party

WRAP_SCHEME_2 = wrap2.WRAP_SCHEME_2
#: derives a decoy wrap's bytes from the envelope's seed (§15.22)
D_DECOY = b"smu/envelope-decoy/v1\x00"


@dataclass(frozen=True, slots=True)
class Reach2:
    """How a sender reaches one device with scheme 2.

    ``spk_id``/``spk``: the device's signed prekey for a new set-up (from
    its current record, or the last one the sender saw: sticky, §15.9), or
    None when the sender never saw one (it then needs a session already).
    ``sealed_to_prekey``: seal the wrap to ``spk`` (the sender holds a
    current record naming it) rather than to the encryption key (§19.13).
    ``opk``: a one-time prekey fetched for a new set-up (§19.16), used only
    if no session exists.
    """

    spk_id: int | None = None
    spk: bytes | None = None
    sealed_to_prekey: bool = False
    opk: OneTimePrekey | None = None


@dataclass(frozen=True, slots=True)
class SendSessions:
    book: SessionBook
    #: device (Ed25519 key) -> how to reach it; devices not named: scheme 1
    reach: Mapping[bytes, Reach2] = field(default_factory=dict)
    #: the sending device's own current signed prekey: the key field of its
    #: decoy wrap in envelopes to its own account (§15.22)
    self_prekey: bytes | None = None


#: (session id, initiator (account, device) or None) -> a book holding that
#: session if the device has it, and the other sessions of its peer
BookFor = Callable[[bytes, tuple[bytes, bytes] | None], SessionBook]


@dataclass(frozen=True, slots=True)
class ReceiveSessions:
    book_for: BookFor
    store: PrekeyStore
    now_ms: int
    #: 32 fresh random bytes (the DH ratchet step of a new chain, §19.5)
    fresh: bytes = field(repr=False)
    #: the skip bounds for a message from a device of this account (§19.7):
    #: a node passes the stranger bounds for non-contacts
    limits_for: Callable[[bytes], RatchetLimits] = lambda account: FULL_LIMITS


@dataclass(frozen=True, slots=True)
class Opened2:
    content_key: bytes = field(repr=False)
    peer: Party
    session_id: bytes
    book: SessionBook
    store: PrekeyStore


def party_of(state: AccountState | None, device: bytes) -> Party | None:
    """A device as a session party: ACTIVE in ``state``, with its current
    encryption key as the identity key (§19.4)."""
    if state is None:
        return None
    d = state.device(device)
    if d is None or d.status is not DeviceStatus.ACTIVE:
        return None
    return Party(state.account_id, device, d.enc_public)


def _usable(book: SessionBook, peer: Party) -> bytes | None:
    sid = book.active(peer)
    if sid is not None and book.entries[sid].peer.ik != peer.ik:
        return None  # under a replaced key: the node ends it (§19.11)
    return sid


def reachable(book: SessionBook, peer: Party, reach: Reach2) -> bool:
    """A session with ``peer``, or a signed prekey to set one up with."""
    return _usable(book, peer) is not None or (reach.spk is not None and reach.spk_id is not None)


def make_wrap2(
    params: NetworkParams,
    sender: DeviceKeys,
    me: Party,
    book: SessionBook,
    peer: Party,
    reach: Reach2,
    content_key: bytes,
    derive: Callable[[bytes, int], bytes],
) -> tuple[SessionBook, bytes, bytes]:
    """The wrap for ``peer``: (the new book, X, data).  ``derive(label, n)``
    gives the envelope's seed-derived randomness (§15.3 step 2)."""
    sid = _usable(book, peer)
    if sid is None:
        if reach.spk is None or reach.spk_id is None:
            raise UsageError("no session and no signed prekey known for a scheme-2 device")
        bundle = Bundle(peer, reach.spk_id, reach.spk, reach.opk)
        book, sid = book.start(
            params, me, sender.enc_secret, bundle, derive(b"x3dh" + peer.device, 64)
        )
    book, message = book.encrypt(sid, content_key)
    # the sender names itself in every wrap, sealed to the recipient: the
    # responder needs it for a set-up, and a device that lost the session
    # needs it to ask for a reset (§19.13, §19.15)
    initiator = (me.account, me.device)
    x = reach.spk if reach.sealed_to_prekey and reach.spk is not None else peer.ik
    e_secret = derive(b"eph2" + peer.device + x, 32)
    data = wrap2.seal(peer.device, x, e_secret, wrap2.Wrap2Inner(sid, initiator, message))
    return book, x, data


def decoy_wrap(
    sender: DeviceKeys,
    self_prekey: bytes | None,
    others: list[tuple[int, bytes]],
    seed: bytes,
) -> tuple[bytes, int, bytes, bytes]:
    """A wrap for the sending device in an envelope to its own account
    (§15.22): shaped as the other wraps are (their most common scheme and
    data length; the key field the device's signed prekey, or for scheme 1
    its encryption key, as a sender would use), its data random bytes from
    the seed.  Nothing opens it; no observer tells it from a real one."""
    schemes = [s for s, _ in others]
    scheme = max(set(schemes), key=lambda s: (schemes.count(s), -s))
    sizes = [len(d) for s, d in others if s == scheme]
    size = max(set(sizes), key=lambda n: (sizes.count(n), -n))
    x = self_prekey if scheme == WRAP_SCHEME_2 and self_prekey is not None else sender.enc_public
    stream = sodium.randombytes_buf_deterministic(
        size, crypto.hash32(D_DECOY, seed + sender.sign_public)
    )
    e_public = x25519_public(crypto.hash32(D_DECOY, seed + b"eph"))
    return sender.sign_public, scheme, x, e_public + bytes(stream)[32:]


#: H(secret) -> public key of the signed prekeys seen lately.  Keyed by a
#: hash, never by the secret: a cache holding a retired prekey's secret
#: would undo its deletion, and the forward secrecy that rests on it (§19.3)
_PUBLICS: dict[bytes, bytes] = {}
_PUBLICS_MAX = 256
#: a local hash domain, never on the wire
_CACHE_DOMAIN = b"smu/prekey-cache/v1\x00"


def _prekey_public(secret: bytes) -> bytes:
    tag = crypto.hash32(_CACHE_DOMAIN, secret)
    public = _PUBLICS.get(tag)
    if public is None:
        if len(_PUBLICS) >= _PUBLICS_MAX:
            _PUBLICS.pop(next(iter(_PUBLICS)))  # the oldest
        public = _PUBLICS[tag] = x25519_public(secret)
    return public


def _secret_for(me: DeviceKeys, store: PrekeyStore, x: bytes, now_ms: int) -> bytes:
    """The secret of the key a wrap names (§19.13): the encryption key, or
    a signed prekey still in its grace (§19.3); never a trial."""
    if x == me.enc_public:
        return me.enc_secret
    # a device holds up to ~16 signed prekeys (2-day rotation, 30-day grace):
    # their public keys are remembered, not recomputed per envelope
    for prekey_id, (secret, _until) in store.signed.items():
        if _prekey_public(secret) == x:
            return store.signed_secret(prekey_id, now_ms)  # refuses a retired one
    raise UnknownPrekeyError("the wrap is sealed to a key this device does not hold")


def open_wrap2(
    params: NetworkParams,
    me: DeviceKeys,
    my_account: bytes,
    inputs: ReceiveSessions,
    x: bytes,
    data: bytes,
    states: Callable[[bytes], AccountState | None],
) -> Opened2:
    """Unseal this device's wrap and open its session message (the content
    key).  Nothing is committed here: the caller keeps ``book``/``store``
    until the rest of the envelope has passed."""
    if len(inputs.fresh) != 32:
        raise UsageError("open needs 32 fresh random bytes")
    secret = _secret_for(me, inputs.store, x, inputs.now_ms)
    inner = wrap2.open_wrap(me.sign_public, x, secret, data)
    book = inputs.book_for(inner.session_id, inner.initiator)
    entry = book.entries.get(inner.session_id)
    who = inner.initiator if entry is None else (entry.peer.account, entry.peer.device)
    lost = LostSession(inner.session_id, inner.initiator)
    if who is None:
        raise SessionNotHeldError("no session with this id, and no sender named", lost)
    sender = party_of(states(who[0]), who[1])
    if sender is None:  # perhaps we are behind: not final (§15.5 step 3)
        raise PeerNotActiveError("the session's peer is not an active device here")
    mine = Party(my_account, me.sign_public, me.enc_public)
    try:
        got = book.receive(
            params,
            mine,
            me.enc_secret,
            inputs.store,
            inner.session_id,
            sender,
            inner.message,
            inputs.fresh,
            inputs.now_ms,
            inputs.limits_for(sender.account),
        )
    except SessionKeyGoneError as exc:
        # the session's peer may have lost a message to the bound: it can be
        # asked to send again as after a reset (§19.15)
        raise KeyGoneError(str(exc), LostSession(inner.session_id, who)) from exc
    except WrongSessionError as exc:
        if entry is not None:  # a session held, with another device: no reset
            raise
        # not held and not its set-up: the sender may ask for a reset (§19.15)
        raise SessionNotHeldError(str(exc), lost) from exc
    if len(got.plaintext) != 32:
        raise SessionDecryptError("a scheme-2 wrap carries a 32-byte content key")
    return Opened2(got.plaintext, got.peer, inner.session_id, got.book, got.store)


__all__ = [
    "D_DECOY",
    "WRAP_SCHEME_2",
    "BookFor",
    "Opened2",
    "Reach2",
    "ReceiveSessions",
    "SendSessions",
    "decoy_wrap",
    "make_wrap2",
    "open_wrap2",
    "party_of",
    "reachable",
]
