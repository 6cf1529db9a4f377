"""The Double Ratchet of a session between two devices (PROTOCOL.md §19.5-§19.8).

Composed from libsodium primitives (pynacl) and the standard library's
HMAC, following Signal's published Double Ratchet specification with its
recommended algorithms:

* the DH ratchet on X25519 (``crypto_scalarmult``);
* the root KDF, HKDF-SHA-256 with the root key as salt and the DH output as
  input key material, 64 bytes out: the next root key, then a chain key;
* the chain KDF, HMAC-SHA-256 under the chain key: of ``0x01`` the message
  key, of ``0x02`` the next chain key;
* the message AEAD, XChaCha20-Poly1305-IETF under a key and nonce that
  HKDF-SHA-256 derives from the message key; the associated data is the
  session's binding hash followed by the encoded header.

Everything is pure: a new ratchet key pair comes from the 32 fresh bytes
the caller passes to ``decrypt`` (used only when the message starts a new
receiving chain), and no function reads a clock.  ``decrypt`` computes the
next state aside and the ``Session`` keeps it only once the header checks,
the replay check and the AEAD have all passed: a refused message changes
nothing (§19.7).

The set-up (X3DH, prekeys) is in ``x3dh.py`` and ``prekeys.py``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace
from itertools import islice

import nacl.bindings as sodium
import nacl.exceptions

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import InvalidKeyError, SchemaError, UnsupportedVersionError
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.messaging.session_errors import (
    DuplicateMessageError,
    SessionDecryptError,
    SessionError,
    SessionKeyGoneError,
    SessionUsageError,
    TooFarAheadError,
    WrongSessionError,
)

# -- labels and parameters (§19.1, §19.8) -------------------------------------

#: HKDF ``info`` of the root KDF (§19.5)
INFO_ROOT = b"smu/ratchet-root/v1\x00"
#: HKDF ``info`` of the per-message AEAD key and nonce (§19.6)
INFO_MESSAGE = b"smu/ratchet-message/v1\x00"
#: chain KDF inputs: HMAC(ck, 0x01) is the message key, HMAC(ck, 0x02) the next chain key
MESSAGE_KEY_CONSTANT = b"\x01"
CHAIN_KEY_CONSTANT = b"\x02"

#: message forms, the first element of a session message (§19.6)
FORM_RATCHET = 1
FORM_PREKEY = 2

#: the most message keys one incoming message may make the receiver derive
#: and keep: the gap in its current chain plus, on a new chain, the
#: unreceived tail of the previous one (§19.7 justifies the number)
MAX_SKIP = 2000
#: skipped message keys a session keeps at most; beyond it the oldest go
MAX_SKIPPED = 2000
#: the same two bounds for a session with a device of an account that is
#: neither a contact nor the own one (§19.7): one admitted request must not
#: buy 144 KB of state rewritten with every later message
STRANGER_MAX_SKIP = 32
STRANGER_MAX_SKIPPED = 32
#: remote ratchet keys of earlier chains remembered, so that an old message
#: whose key is gone is told apart from a new chain (a duplicate, not a reset)
MAX_OLD_CHAINS = 8
#: counters are below 2^32
MAX_COUNTER = 2**32 - 1
#: largest plaintext: a session carries keys and small control values
MAX_PLAINTEXT = 4096
AEAD_TAG = 16
#: whole encoded session message, checked before parsing
MAX_MESSAGE_BYTES = 4400
#: whole encoded session state (2000 skipped keys at about 75 bytes each)
MAX_STATE_BYTES = 192 * 1024
#: version 2 adds the marks of dropped skipped keys (§19.8); version 1 is read
STATE_VERSION = 2
#: a mark above every counter: "all of this chain's unused keys may be gone"
ALL_GONE = MAX_COUNTER + 1
KEY = 32


@dataclass(frozen=True, slots=True)
class RatchetLimits:
    """The skip bounds one incoming message is held to (§19.7): the caller
    chooses them per message from who the session's peer is."""

    #: message keys one message may make the receiver derive
    max_skip: int = MAX_SKIP
    #: skipped keys kept after it; beyond, the oldest go (and are marked gone)
    max_skipped: int = MAX_SKIPPED


#: a contact's or the own account's device
FULL_LIMITS = RatchetLimits()
#: any other account's device (§19.7)
STRANGER_LIMITS = RatchetLimits(STRANGER_MAX_SKIP, STRANGER_MAX_SKIPPED)


# -- primitives ------------------------------------------------------------------


def hkdf_sha256(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with HMAC-SHA-256."""
    prk = hmac.digest(salt or bytes(32), ikm, hashlib.sha256)
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([i]), hashlib.sha256)
        out += block
        i += 1
    return out[:length]


def kdf_rk(rk: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    """The root KDF: (next root key, new chain key)."""
    out = hkdf_sha256(rk, dh_out, INFO_ROOT, 2 * KEY)
    return out[:KEY], out[KEY:]


def kdf_ck(ck: bytes) -> tuple[bytes, bytes]:
    """The chain KDF: (next chain key, message key)."""
    return (
        hmac.digest(ck, CHAIN_KEY_CONSTANT, hashlib.sha256),
        hmac.digest(ck, MESSAGE_KEY_CONSTANT, hashlib.sha256),
    )


def message_aead_keys(mk: bytes) -> tuple[bytes, bytes]:
    """(XChaCha20-Poly1305 key, 24-byte nonce) for one message key."""
    out = hkdf_sha256(bytes(32), mk, INFO_MESSAGE, KEY + 24)
    return out[:KEY], out[KEY:]


def x25519_public(secret: bytes) -> bytes:
    if len(secret) != KEY:
        raise SessionUsageError("an X25519 secret is 32 bytes")
    return bytes(sodium.crypto_scalarmult_base(secret))


def dh(secret: bytes, public: bytes) -> bytes:
    """X25519; ``public`` has passed ``crypto.check_x25519_public``."""
    try:
        return bytes(sodium.crypto_scalarmult(secret, public))
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError) as exc:
        raise InvalidKeyError("X25519 gave the all-zero secret") from exc


# -- wire forms (§19.6) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The ratchet header: the sender's current ratchet public key, the
    length of its previous sending chain, and the message's number in the
    current one."""

    dh: bytes
    pn: int
    n: int

    def encode(self) -> bytes:
        """The header's bytes in the AEAD's associated data."""
        return encode_flat([self.dh, self.pn, self.n])


@dataclass(frozen=True, slots=True)
class PrekeyHeader:
    """What an initiator adds to every message until the first reply
    (§19.4): its identity key, its ephemeral key and the prekeys it used."""

    ik: bytes
    ek: bytes
    spk_id: int
    opk_id: int | None

    def initiation_id(self) -> bytes:
        """Names one set-up; a responder routes repeats of it to its session."""
        opk = [] if self.opk_id is None else [self.opk_id]
        return crypto.hash32(D_INITIATION, encode_flat([self.ik, self.ek, self.spk_id, opk]))


D_INITIATION = b"smu/session-initiation/v1\x00"


@dataclass(frozen=True, slots=True)
class RatchetMessage:
    header: Header
    ciphertext: bytes
    prekey: PrekeyHeader | None = None

    def encode(self) -> bytes:
        h = self.header
        if self.prekey is None:
            return encode_flat([FORM_RATCHET, h.dh, h.pn, h.n, self.ciphertext])
        p = self.prekey
        opk = [] if p.opk_id is None else [p.opk_id]
        return encode_flat(
            [FORM_PREKEY, p.ik, p.ek, p.spk_id, opk, h.dh, h.pn, h.n, self.ciphertext]
        )


def _x25519(value: object, what: str) -> bytes:
    key = _bin(value, KEY, what)
    crypto.check_x25519_public(key)
    return key


def _counter(value: object, what: str) -> int:
    n = _uint(value, what)
    if n > MAX_COUNTER:
        raise SchemaError(f"{what} must be below 2^32")
    return n


def _ciphertext(value: object) -> bytes:
    if type(value) is not bytes or not AEAD_TAG <= len(value) <= MAX_PLAINTEXT + AEAD_TAG:
        raise SchemaError(f"a ciphertext is {AEAD_TAG} to {MAX_PLAINTEXT + AEAD_TAG} bytes")
    return value


def decode_message(raw: bytes) -> RatchetMessage:
    """A session message of either form; size first, then canonical
    MessagePack, then field by field (§19.6)."""
    value = decode_flat(raw, MAX_MESSAGE_BYTES)
    if type(value) is not list or not value or type(value[0]) is not int:
        raise SchemaError("a session message is an array starting with its form")
    form = value[0]
    if form == FORM_RATCHET:
        if len(value) != 5:
            raise SchemaError("a ratchet message has 5 elements")
        rest, prekey = value[1:], None
    elif form == FORM_PREKEY:
        if len(value) != 9:
            raise SchemaError("a prekey message has 9 elements")
        opk = value[4]
        if type(opk) is not list or len(opk) > 1:
            raise SchemaError("the one-time prekey reference is [] or [id]")
        prekey = PrekeyHeader(
            _x25519(value[1], "identity key"),
            _x25519(value[2], "ephemeral key"),
            _counter(value[3], "signed prekey id"),
            _counter(opk[0], "one-time prekey id") if opk else None,
        )
        rest = value[5:]
    else:
        raise UnsupportedVersionError(f"unknown session message form {form}")
    header = Header(
        _x25519(rest[0], "ratchet key"),
        _counter(rest[1], "previous chain length"),
        _counter(rest[2], "message number"),
    )
    return RatchetMessage(header, _ciphertext(rest[3]), prekey)


# -- state (§19.5) -------------------------------------------------------------------

SkippedKey = tuple[bytes, int]


@dataclass(frozen=True, slots=True)
class SessionState:
    """One side of a session.  Never changed in place: every step returns a
    new value (the skipped-key map is copied, never mutated)."""

    #: the session's binding hash (§19.4): associated data of every message
    ad: bytes
    #: the set-up this session came from (``PrekeyHeader.initiation_id``)
    initiation: bytes
    rk: bytes = field(repr=False)
    dhs_secret: bytes = field(repr=False)
    #: ``x25519_public(dhs_secret)``, kept so that sending costs no scalar multiplication
    dhs_public: bytes
    dhr: bytes | None
    cks: bytes | None = field(repr=False)
    ckr: bytes | None = field(repr=False)
    ns: int = 0
    nr: int = 0
    pn: int = 0
    #: (remote ratchet key, n) -> message key, oldest first
    skipped: dict[SkippedKey, bytes] = field(default_factory=dict, repr=False)
    old_dhr: tuple[bytes, ...] = ()
    #: the initiator's prekey header, sent with every message until a reply
    pending: PrekeyHeader | None = None
    #: remote ratchet key -> one above the highest n whose skipped key was
    #: dropped by the bound, for ``DHr`` and the chains in ``old_dhr`` only:
    #: below it a missing key may be gone unused, not used (§19.5 step 4)
    gone: dict[bytes, int] = field(default_factory=dict)


def _open(mk: bytes, ad: bytes, header: Header, ciphertext: bytes) -> bytes:
    key, nonce = message_aead_keys(mk)
    try:
        return bytes(
            sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, ad + header.encode(), nonce, key
            )
        )
    except nacl.exceptions.CryptoError as exc:
        raise SessionDecryptError("the message does not authenticate") from exc


def encrypt_state(state: SessionState, plaintext: bytes) -> tuple[SessionState, RatchetMessage]:
    """The next message on the sending chain, and the state after it."""
    if len(plaintext) > MAX_PLAINTEXT:
        raise SessionUsageError(f"a session plaintext is at most {MAX_PLAINTEXT} bytes")
    if state.cks is None:
        raise SessionUsageError("this session cannot send before it has received")
    if state.ns >= MAX_COUNTER:
        raise SessionUsageError("the sending chain is exhausted; start a new session")
    cks, mk = kdf_ck(state.cks)
    header = Header(state.dhs_public, state.pn, state.ns)
    key, nonce = message_aead_keys(mk)
    ct = bytes(
        sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, state.ad + header.encode(), nonce, key
        )
    )
    return replace(state, cks=cks, ns=state.ns + 1), RatchetMessage(header, ct, state.pending)


def _skip(
    ck: bytes, start: int, until: int, dh_pub: bytes
) -> tuple[bytes, dict[SkippedKey, bytes]]:
    out: dict[SkippedKey, bytes] = {}
    for n in range(start, until):
        ck, mk = kdf_ck(ck)
        out[(dh_pub, n)] = mk
    return ck, out


def _bounded(
    skipped: dict[SkippedKey, bytes], gone: dict[bytes, int], limit: int, chains: set[bytes]
) -> tuple[dict[SkippedKey, bytes], dict[bytes, int]]:
    """The newest ``limit`` keys (dicts keep insertion order), and the marks
    raised past the dropped ones, kept for ``chains`` only (``DHr`` and
    ``OLD``: a message of any other chain is never matched to a mark).  A
    chain's keys are added in ascending ``n`` and dropped oldest first, so
    one mark per chain says which of its keys may have gone unused (§19.5
    step 7)."""
    extra = len(skipped) - limit
    marks = dict(gone)
    if extra > 0:
        for d, n in islice(skipped, extra):
            marks[d] = max(marks.get(d, 0), n + 1)
        skipped = dict(islice(skipped.items(), extra, None))
    return skipped, {d: n for d, n in marks.items() if d in chains}


def _left(state: SessionState, h: Header, why: str) -> SessionError:
    """A message whose key is not held on a chain this session knows: a
    true duplicate (its key was used), unless the bound may have dropped
    the key unused, which the sender must hear apart (§19.5 steps 4-5)."""
    if h.n < state.gone.get(h.dh, 0):
        return SessionKeyGoneError(f"{why}: its key was dropped, or used")
    return DuplicateMessageError(f"{why}: its key was used already")


def decrypt_state(
    state: SessionState,
    message: RatchetMessage,
    fresh: bytes,
    limits: RatchetLimits = FULL_LIMITS,
) -> tuple[SessionState, bytes]:
    """Open ``message``; return the state to keep and the plaintext.
    ``fresh`` (32 random bytes) becomes the new ratchet secret if the
    message starts a new receiving chain.  Raises a ``SessionError`` and
    computes nothing to keep when any check fails (§19.7)."""
    if len(fresh) != KEY:
        raise SessionUsageError("decrypt needs 32 fresh random bytes")
    if message.prekey is not None and message.prekey.initiation_id() != state.initiation:
        raise WrongSessionError("a prekey message of another session set-up")
    h = message.header
    mk = state.skipped.get((h.dh, h.n))
    if mk is not None:
        plaintext = _open(mk, state.ad, h, message.ciphertext)
        skipped = dict(state.skipped)
        del skipped[(h.dh, h.n)]
        return replace(state, skipped=skipped, pending=None), plaintext
    if h.dh == state.dhr:
        if state.ckr is None:
            raise SessionDecryptError("no receiving chain under this ratchet key")
        if h.n < state.nr:
            raise _left(state, h, "a message of the current chain")
        if h.n - state.nr > limits.max_skip:
            raise TooFarAheadError(f"more than {limits.max_skip} skipped messages")
        ckr, new_skipped = _skip(state.ckr, state.nr, h.n, h.dh)
        ckr, mk = kdf_ck(ckr)
        plaintext = _open(mk, state.ad, h, message.ciphertext)
        chains = {h.dh, *state.old_dhr}
        skipped, gone = _bounded(
            {**state.skipped, **new_skipped}, state.gone, limits.max_skipped, chains
        )
        new = replace(state, ckr=ckr, nr=h.n + 1, skipped=skipped, pending=None, gone=gone)
        return new, plaintext
    if h.dh in state.old_dhr:
        raise _left(state, h, "a message of an earlier chain")
    # A new receiving chain: one DH ratchet step (the spec's DHRatchet).
    tail = max(0, h.pn - state.nr) if state.ckr is not None else 0
    if tail + h.n > limits.max_skip:
        raise TooFarAheadError(f"more than {limits.max_skip} skipped messages")
    skipped = dict(state.skipped)
    old_dhr = state.old_dhr
    if state.ckr is not None and state.dhr is not None:
        _, tail_keys = _skip(state.ckr, state.nr, state.nr + tail, state.dhr)
        skipped.update(tail_keys)
    if state.dhr is not None:
        old_dhr = (*state.old_dhr, state.dhr)[-MAX_OLD_CHAINS:]
    rk, ckr = kdf_rk(state.rk, dh(state.dhs_secret, h.dh))
    ckr, new_skipped = _skip(ckr, 0, h.n, h.dh)
    ckr, mk = kdf_ck(ckr)
    plaintext = _open(mk, state.ad, h, message.ciphertext)
    skipped.update(new_skipped)
    dhs_secret = fresh
    rk, cks = kdf_rk(rk, dh(dhs_secret, h.dh))
    skipped, gone = _bounded(skipped, state.gone, limits.max_skipped, {h.dh, *old_dhr})
    new = SessionState(
        ad=state.ad,
        initiation=state.initiation,
        rk=rk,
        dhs_secret=dhs_secret,
        dhs_public=x25519_public(dhs_secret),
        dhr=h.dh,
        cks=cks,
        ckr=ckr,
        ns=0,
        nr=h.n + 1,
        pn=state.ns,
        skipped=skipped,
        old_dhr=old_dhr,
        pending=None,
        gone=gone,
    )
    return new, plaintext


# -- persistence (§19.8) -------------------------------------------------------------


def encode_state(state: SessionState) -> bytes:
    p = state.pending
    pending: list[object] = (
        [] if p is None else [p.ik, p.ek, p.spk_id, [] if p.opk_id is None else [p.opk_id]]
    )
    return encode_flat(
        [
            STATE_VERSION,
            state.ad,
            state.initiation,
            state.rk,
            state.dhs_secret,
            state.dhr or b"",
            state.cks or b"",
            state.ckr or b"",
            state.ns,
            state.nr,
            state.pn,
            [[d, n, mk] for (d, n), mk in state.skipped.items()],
            list(state.old_dhr),
            pending,
            [[d, n] for d, n in sorted(state.gone.items())],
        ]
    )


def _optional_key(value: object, what: str) -> bytes | None:
    if value == b"":
        return None
    return _bin(value, KEY, what)


def decode_state(raw: bytes) -> SessionState:
    """A stored state (the device's own store; still checked field by field).
    Version 1 (before the marks) is read with every chain marked as far as
    a key may be gone: it cannot say which keys the bound dropped (§19.8)."""
    v = decode_flat(raw, MAX_STATE_BYTES)
    if type(v) is not list or not v or type(v[0]) is not int:
        raise SchemaError("a session state is an array starting with its version")
    if (v[0], len(v)) not in ((1, 14), (STATE_VERSION, 15)):
        raise SchemaError("a session state is a 14-element array of version 1 or 15 of 2")
    if type(v[11]) is not list or len(v[11]) > MAX_SKIPPED:
        raise SchemaError("too many skipped keys")
    if type(v[12]) is not list or len(v[12]) > MAX_OLD_CHAINS:
        raise SchemaError("too many old chains")
    skipped: dict[SkippedKey, bytes] = {}
    for item in v[11]:
        if type(item) is not list or len(item) != 3:
            raise SchemaError("a skipped key is [dh, n, mk]")
        skipped[(_bin(item[0], KEY, "dh"), _counter(item[1], "n"))] = _bin(item[2], KEY, "mk")
    pending = None
    if v[13] != []:
        p = v[13]
        if type(p) is not list or len(p) != 4 or type(p[3]) is not list or len(p[3]) > 1:
            raise SchemaError("a pending prekey header is [ik, ek, spk_id, [opk_id]]")
        pending = PrekeyHeader(
            _bin(p[0], KEY, "ik"),
            _bin(p[1], KEY, "ek"),
            _counter(p[2], "spk id"),
            _counter(p[3][0], "opk id") if p[3] else None,
        )
    old_dhr = tuple(_bin(d, KEY, "old dhr") for d in v[12])
    dhr = _optional_key(v[5], "dhr")
    nr = _counter(v[9], "nr")
    if v[0] == 1:
        gone = {d: ALL_GONE for d in old_dhr} | ({dhr: nr} if dhr is not None else {})
    else:
        gone = _decode_gone(v[14], {*old_dhr, *([dhr] if dhr is not None else [])})
    return SessionState(
        ad=_bin(v[1], KEY, "ad"),
        initiation=_bin(v[2], KEY, "initiation"),
        rk=_bin(v[3], KEY, "rk"),
        dhs_secret=_bin(v[4], KEY, "dhs"),
        dhs_public=x25519_public(_bin(v[4], KEY, "dhs")),
        dhr=dhr,
        cks=_optional_key(v[6], "cks"),
        ckr=_optional_key(v[7], "ckr"),
        ns=_counter(v[8], "ns"),
        nr=nr,
        pn=_counter(v[10], "pn"),
        skipped=skipped,
        old_dhr=old_dhr,
        pending=pending,
        gone=gone,
    )


def _decode_gone(value: object, chains: set[bytes]) -> dict[bytes, int]:
    """Version 2's marks: ``[[dh, n]...]``, ascending by ``dh``, each a chain
    the state knows, ``n`` at most ``ALL_GONE``."""
    if type(value) is not list or len(value) > MAX_OLD_CHAINS + 1:
        raise SchemaError("too many marks of dropped keys")
    gone: dict[bytes, int] = {}
    for item in value:
        if type(item) is not list or len(item) != 2:
            raise SchemaError("a mark of dropped keys is [dh, n]")
        d, n = _bin(item[0], KEY, "mark dh"), _uint(item[1], "mark n")
        if d not in chains or n > ALL_GONE or (gone and d <= max(gone)):
            raise SchemaError("marks name known chains, ascending, below 2^32 + 1")
        gone[d] = n
    return gone


# -- the session object ----------------------------------------------------------------


class Session:
    """A session's mutable handle over an immutable ``SessionState``.

    ``decrypt`` works on a copy: the handle moves to the new state only
    after every check and the AEAD have passed, so a refused message (a
    replay, a tampered ciphertext, a jump beyond the bounds) leaves the
    session exactly as it was.  The node persists ``state`` (``to_bytes``)
    before it acknowledges the message that advanced it (§19.8).
    """

    __slots__ = ("_state",)

    def __init__(self, state: SessionState) -> None:
        self._state = state

    @property
    def state(self) -> SessionState:
        return self._state

    def encrypt(self, plaintext: bytes) -> bytes:
        state, message = encrypt_state(self._state, plaintext)
        self._state = state
        return message.encode()

    def decrypt(self, raw: bytes, fresh: bytes, limits: RatchetLimits = FULL_LIMITS) -> bytes:
        if len(fresh) != KEY:
            raise SessionUsageError("decrypt needs 32 fresh random bytes")
        message = decode_message(raw)
        state, plaintext = decrypt_state(self._state, message, fresh, limits)
        self._state = state
        return plaintext

    def to_bytes(self) -> bytes:
        return encode_state(self._state)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Session:
        return cls(decode_state(raw))


__all__ = [
    "FULL_LIMITS",
    "MAX_SKIP",
    "MAX_SKIPPED",
    "STRANGER_LIMITS",
    "STRANGER_MAX_SKIP",
    "STRANGER_MAX_SKIPPED",
    "Header",
    "PrekeyHeader",
    "RatchetLimits",
    "RatchetMessage",
    "Session",
    "SessionState",
    "decode_message",
    "decode_state",
    "decrypt_state",
    "encode_state",
    "encrypt_state",
    "hkdf_sha256",
    "kdf_ck",
    "kdf_rk",
    "message_aead_keys",
]
