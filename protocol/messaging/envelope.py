"""End-to-end encrypted, signed message envelopes (PROTOCOL.md §15.1-§15.8).

Sans-I/O: randomness comes in as a 32-byte ``seed`` (fresh from the OS for
every envelope), time as a parameter, account states from the caller's own
replica.  Two entry points::

    # sender: in its own replica, the two accounts' states
    env = seal(params, my_keys, my_state, their_state, Text("hi"),
               counter=next_counter(their_account), timestamp=now_ms,
               seed=os.urandom(32))                    # force=True if disputed
    env.raw            # bytes to deliver to every device in env.wrapped_for
    env.message_id     # 16 bytes, the id receipts refer to

    # receiver: its own keys, its own replica, its replay state (a
    # ReplayGuard in memory, or a PendingReplay over the node's table)
    opened = open_envelope(params, raw, my_account, my_keys, ledger_lookup, guard)
    opened.content     # Text | Receipt | HistoryBundle | TokenBatch | UnknownContent
    opened.sender_account, opened.sender_device, opened.timestamp (claimed)
    opened.diverged    # accounts whose heads the sender saw differently (S5)
    # persist the message and the changed replay window together, then acknowledge

``states`` maps an account id to its ``AccountState`` in the receiver's
replica, or None: ``ledger_lookup(ledger)`` makes one from a ``Ledger``.

``seal`` wraps the content key for every ACTIVE device of the recipient
account only (``only_devices`` narrows that, for a history bundle to a
newly approved device); the sender's other devices get a ``SentCopy`` in
an envelope to their own account (§15.22), so the header never names them.  Sending to
a DISPUTED or COMPROMISED account raises ``RecipientDisputedError`` unless
``force``.  ``open_envelope`` raises an ``InvalidInput`` subclass for
everything wrong and leaves ``guard`` untouched then; a difference of views
is a value (``OpenedEnvelope.views``), never an error.

Direct delivery over ``/smu/message/1``: the sender writes
``delivery_frame(env.raw)``; the receiver answers ``delivery_answer(None)``
once stored, or ``delivery_answer(exc)``; ``decode_delivery_answer`` reads it.

``peek`` reads the clear header only (recipient account, message id, the
devices wrapped for); mailboxes use it to check a deposit's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise

import nacl.bindings as sodium
import nacl.exceptions

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    BadSignatureError,
    DecodeError,
    InvalidInput,
    InvalidKeyError,
    LimitExceededError,
    NotActiveError,
    SchemaError,
    UnauthorisedError,
    UnsupportedVersionError,
    UsageError,
    WrongNetworkError,
)
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.keys import DeviceKeys
from protocol.core.params import FORMAT_VERSION, NetworkParams, check_suite
from protocol.log.ledger import Ledger
from protocol.log.state import AccountState, AccountStatus, DeviceStatus
from protocol.messaging import wrap2
from protocol.messaging.content import (
    MAX_CONTENT_BYTES,
    MESSAGE_ID_BYTES,
    Content,
    ContentRange,
    HistoryBundle,
    HistoryProof,
    ReplayKey,
    ReplayState,
    content_range,
    decode_content,
    encode_content,
)
from protocol.messaging.padding import check_pad, padded_plaintext
from protocol.messaging.prekeys import PrekeyStore
from protocol.messaging.scheme2 import (
    ReceiveSessions,
    SendSessions,
    decoy_wrap,
    make_wrap2,
    open_wrap2,
    party_of,
    reachable,
)
from protocol.messaging.sessions import SessionBook
from protocol.messaging.tokens import TokenBatch

# Domain labels (§15.2).  Changing one is a protocol change.
D_ENV_SIG = b"smu/envelope-sig/v1\x00"
D_ENV_HEADER = b"smu/envelope-header/v1\x00"
D_ENV_INNER = b"smu/envelope-inner/v1\x00"
D_ENV_DERIVE = b"smu/envelope-derive/v1\x00"
D_ENV_WRAP = b"smu/envelope-wrap/v1\x00"

#: an envelope, whole, is refused above this before any parsing (§15.7)
MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_WRAPS = 64
MAX_VIEW_HEADS = 32
OUTER_FIELDS = 8
HEADER_FIELDS = 6
INNER_FIELDS = 8
NONCE_BYTES = 24
KEY_BYTES = 32
#: wrap scheme 1: static X25519 of the device (§15.3); 2: sealed session
#: message (§19.13); 3.. reserved (§15.9)
WRAP_STATIC_X25519 = 1
WRAP_SCHEME_2 = wrap2.WRAP_SCHEME_2
WRAP_BYTES = 32 + KEY_BYTES + 16
AEAD_TAG = 16
_ZERO_NONCE = bytes(NONCE_BYTES)


# --------------------------------------------------------------------------
# Errors (§15.8): every one an InvalidInput, so remote input raises only these


class EnvelopeError(InvalidInput):
    code = "envelope"


class NotForThisDeviceError(EnvelopeError):
    """No key wrap names this device, or the envelope names neither of its accounts."""

    code = "not_for_me"


class DecryptError(EnvelopeError):
    """A wrap or the ciphertext fails authentication: tampered, or wrong key."""

    code = "decrypt"


class SenderNotActiveError(UnauthorisedError):
    """The signer is not an active device of the sender account in *our* replica.

    ``views`` carries what the (authenticated) sender saw, so that the node
    can reconcile the accounts and open the envelope again later (S5).
    """

    code = "sender_not_active"

    def __init__(self, message: str, views: tuple[HeadsView, ...]) -> None:
        super().__init__(message)
        self.views = views


class UnauthorisedWrapError(UnauthorisedError):
    """A wrap is for a key that is not an active device key of either account here."""

    code = "unauthorised_wrap"

    def __init__(self, message: str, views: tuple[HeadsView, ...]) -> None:
        super().__init__(message)
        self.views = views


class RequestsFullError(LimitExceededError):
    """The receiving node keeps no more message requests (texts from accounts
    that are not its contacts) from this sender, or in all (§15.14): a
    policy refusal of a valid envelope, so the sender may try again later."""

    code = "requests_full"


class RecipientDisputedError(UsageError):
    """The recipient account is disputed or compromised; pass ``force=True`` to insist."""

    def __init__(self, account: bytes, status: AccountStatus) -> None:
        super().__init__(f"account {account.hex()[:12]} is {status.value}: refusing to send")
        self.account = account
        self.status = status


# --------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class Wrap:
    device: bytes  # Ed25519 key of the device it is for
    scheme: int
    enc_public: bytes  # the X25519 key it was made for
    data: bytes

    def to_wire(self) -> list[object]:
        return [self.device, self.scheme, self.enc_public, self.data]


@dataclass(frozen=True, slots=True)
class Header:
    network: str
    recipient_account: bytes
    message_id: bytes
    wraps: tuple[Wrap, ...]
    #: the canonical encoding of the header array, the AEAD's associated data
    raw: bytes

    @property
    def devices(self) -> tuple[bytes, ...]:
        return tuple(w.device for w in self.wraps)


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    raw: bytes
    message_id: bytes
    recipient_account: bytes
    #: every device the content key was wrapped for, ascending
    wrapped_for: tuple[bytes, ...]
    #: the sender's sessions after this envelope (commit them with it), or
    #: None when ``seal`` was given no sessions
    book: SessionBook | None = None
    #: scheme-2 devices that got no wrap: no session and no signed prekey
    #: known for them (never a scheme-1 wrap instead, §15.9)
    unreachable: tuple[bytes, ...] = ()
    #: what a history entry of this message carries to prove its sender (§15.4)
    proof: HistoryProof | None = None


@dataclass(frozen=True, slots=True)
class HeadsView:
    """The sender's claimed heads of one account beside ours (S5)."""

    account: bytes
    claimed_count: int
    claimed_heads: tuple[bytes, ...]
    local_heads: tuple[bytes, ...] | None  # None: we do not know the account

    @property
    def same(self) -> bool:
        if self.local_heads is None:
            return False
        return self.claimed_count == len(self.local_heads) and self.claimed_heads == tuple(
            self.local_heads[:MAX_VIEW_HEADS]
        )

    @property
    def foreign_heads(self) -> tuple[bytes, ...]:
        """The sender's heads that are not heads here.

        Each is either an event we hold (the sender is behind: it will learn
        from us) or one we lack (we are behind: fetch it, ``Ledger.has``).
        """
        mine = set(self.local_heads or ())
        return tuple(h for h in self.claimed_heads if h not in mine)


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    message_id: bytes
    recipient_account: bytes
    sender_account: bytes
    sender_device: bytes
    counter: int
    #: the sender's clock, milliseconds: shown, never trusted
    timestamp: int
    content: Content
    #: the sender's view of its own account, then (if different) of the recipient's
    views: tuple[HeadsView, ...]
    wrapped_for: tuple[bytes, ...]
    #: devices active in the recipient account here that got no wrap: the
    #: sender's view differs from ours (or it narrowed on purpose)
    missing_wraps: tuple[bytes, ...]
    #: the scheme of this device's wrap
    scheme: int = WRAP_STATIC_X25519
    #: scheme 2: the sessions and prekeys to commit with the message (§19.13)
    book: SessionBook | None = None
    prekeys: PrekeyStore | None = None
    session_id: bytes | None = None
    #: what a history entry of this message carries to prove its sender (§15.4)
    proof: HistoryProof | None = None

    @property
    def diverged(self) -> tuple[bytes, ...]:
        return tuple(v.account for v in self.views if not v.same)


StateLookup = Callable[[bytes], AccountState | None]


def ledger_lookup(ledger: Ledger) -> StateLookup:
    """Account states from a node's own ``Ledger`` (None for unknown accounts)."""
    return lambda account: ledger.state(account) if account in ledger.accounts else None


# --------------------------------------------------------------------------
# Building (§15.3, §15.5)


def _derive(seed: bytes, label: bytes, size: int) -> bytes:
    return crypto.hash_with(D_ENV_DERIVE, seed + label, size)


def _kek(shared: bytes, eph_public: bytes, enc_public: bytes) -> bytes:
    return crypto.hash32(D_ENV_WRAP, shared + eph_public + enc_public)


def _make_wrap(seed: bytes, content_key: bytes, device: bytes, enc_public: bytes) -> Wrap:
    crypto.check_x25519_public(enc_public)  # checked at ingest too (PROTOCOL.md §3.3)
    eph_secret = _derive(seed, b"eph" + device + enc_public, 32)
    eph_public = bytes(sodium.crypto_scalarmult_base(eph_secret))
    shared = bytes(sodium.crypto_scalarmult(eph_secret, enc_public))
    kek = _kek(shared, eph_public, enc_public)
    boxed = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(content_key, None, _ZERO_NONCE, kek)
    return Wrap(device, WRAP_STATIC_X25519, enc_public, eph_public + bytes(boxed))


def _view(state: AccountState) -> list[object]:
    return [len(state.heads), list(state.heads[:MAX_VIEW_HEADS])]


def seal(
    params: NetworkParams,
    sender: DeviceKeys,
    sender_state: AccountState,
    recipient_state: AccountState,
    content: Content,
    *,
    counter: int,
    timestamp: int,
    seed: bytes,
    force: bool = False,
    only_devices: Iterable[bytes] | None = None,
    sessions: SendSessions | None = None,
    message_id: bytes | None = None,
) -> SealedEnvelope:
    """Encrypt ``content`` once and wrap its key for the devices that may read it.

    ``counter`` is the sender device's next counter for this recipient
    account (1, 2, ...; the node persists it); ``seed`` is 32 fresh random
    bytes.  ``only_devices`` restricts the wraps (history bundles).
    ``sessions``: the devices to wrap for with scheme 2 and the sender's
    sessions; the advanced book comes back in ``SealedEnvelope.book``.
    ``message_id``: re-send a message under its id (after a session reset,
    §19.15); else it is derived from the seed.
    """
    if len(seed) != 32:
        raise UsageError("seed must be 32 fresh random bytes")
    if counter < 1:
        raise UsageError("counters start at 1")
    me = sender_state.device(sender.sign_public)
    if me is None or me.status is not DeviceStatus.ACTIVE:
        raise NotActiveError("this device is not active in its account")
    if recipient_state.status is not AccountStatus.OK and not force:
        raise RecipientDisputedError(recipient_state.account_id, recipient_state.status)
    if isinstance(content, HistoryBundle) and recipient_state.account_id != sender_state.account_id:
        raise UsageError("history goes only to a device of the sender's own account")
    kind, body = encode_content(content)

    # Only ACTIVE devices of the recipient account, read from the caller's
    # own replica: never a revoked, void or unknown key (S6), and never the
    # sender's own devices, which would name the sender (§15.1): they get a
    # copy in an envelope of their own (``SentCopy``, §15.22).
    targets: dict[bytes, bytes] = {}
    for d in recipient_state.devices:
        if d.status is DeviceStatus.ACTIVE and d.sign_public != sender.sign_public:
            targets[d.sign_public] = d.enc_public  # as open_envelope reads it
    if only_devices is not None:
        wanted = set(only_devices)
        if not wanted <= set(targets):
            raise UsageError("only_devices names a device that is not active")
        targets = {k: v for k, v in targets.items() if k in wanted}
    if not targets:
        raise UsageError("no device to send to")
    if len(targets) > MAX_WRAPS:
        raise UsageError(f"more than {MAX_WRAPS} devices")

    content_key = _derive(seed, b"key", KEY_BYTES)
    if message_id is None:
        message_id = _derive(seed, b"id", MESSAGE_ID_BYTES)
    elif len(message_id) != MESSAGE_ID_BYTES:
        raise UsageError(f"a message id is {MESSAGE_ID_BYTES} bytes")
    wraps: list[Wrap] = []
    book = None if sessions is None else sessions.book
    unreachable: list[bytes] = []
    me_party = party_of(sender_state, sender.sign_public)
    assert me_party is not None  # active, checked above
    for dev, enc in sorted(targets.items()):
        reach = None if sessions is None else sessions.reach.get(dev)
        if reach is None or book is None:
            wraps.append(_make_wrap(seed, content_key, dev, enc))
            continue
        peer = party_of(recipient_state, dev) or party_of(sender_state, dev)
        assert peer is not None  # an active target
        if not reachable(book, peer, reach):
            unreachable.append(dev)
            continue
        book, x, data = make_wrap2(
            params, sender, me_party, book, peer, reach, content_key,
            lambda label, n: _derive(seed, label, n),
        )  # fmt: skip
        wraps.append(Wrap(dev, WRAP_SCHEME_2, x, data))
    if wraps and only_devices is None and recipient_state.account_id == sender_state.account_id:
        # to its own account: a decoy for the sending device too, so that the
        # header lists every device and none stands out as the sender (§15.22)
        prekey = None if sessions is None else sessions.self_prekey
        wraps.append(Wrap(*decoy_wrap(sender, prekey, [(w.scheme, w.data) for w in wraps], seed)))
        wraps.sort(key=lambda w: w.device)
    if not wraps:
        raise UsageError("no device to send to: every one needs a session first")
    header = [
        FORMAT_VERSION,
        params.suite,
        params.network_id,
        recipient_state.account_id,
        message_id,
        [w.to_wire() for w in wraps],
    ]
    header_raw = encode_flat(header)
    views = [_view(sender_state)]
    if recipient_state.account_id != sender_state.account_id:
        views.append(_view(recipient_state))
    inner = encode_flat(
        [
            sender_state.account_id,
            sender.sign_public,
            counter,
            timestamp,
            views,
            kind,
            body,
            [],  # extensions: empty in version 1 (§15.9)
        ]
    )
    signature = sender.sign(_signed_message(header_raw, inner))
    proof = HistoryProof(
        crypto.hash32(D_ENV_HEADER, header_raw),
        counter,
        tuple(
            (len(st.heads), tuple(st.heads[:MAX_VIEW_HEADS]))
            for st in (sender_state, recipient_state)[: len(views)]
        ),
        signature,
    )
    plaintext = padded_plaintext(inner, signature)  # to its size bucket (§15.3 step 7)
    # Nonce from the seed and the plaintext: a reused seed cannot reuse a
    # (key, nonce) pair for two different plaintexts (§15.3).
    nonce = _derive(seed + crypto.hash32(D_ENV_INNER, plaintext), b"nonce", NONCE_BYTES)
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, header_raw, nonce, content_key
    )
    raw = encode_flat([*header, nonce, bytes(ciphertext)])
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise UsageError("envelope too large: split the content")
    return SealedEnvelope(
        raw,
        message_id,
        recipient_state.account_id,
        tuple(w.device for w in wraps if w.device != sender.sign_public),
        book,
        tuple(unreachable),
        proof,
    )


def _signed_message(header_raw: bytes, inner_raw: bytes) -> bytes:
    return (
        D_ENV_SIG + crypto.hash32(D_ENV_HEADER, header_raw) + crypto.hash32(D_ENV_INNER, inner_raw)
    )


# --------------------------------------------------------------------------
# Parsing (§15.7)


def _parse_outer(raw: bytes, params: NetworkParams) -> tuple[Header, bytes, bytes]:
    fields = decode_flat(raw, MAX_ENVELOPE_BYTES)
    if type(fields) is not list or len(fields) != OUTER_FIELDS:
        raise SchemaError(f"an envelope is an array of {OUTER_FIELDS}")
    version, suite, network, recipient, message_id, wraps, nonce, ciphertext = fields
    if type(version) is not int or type(suite) is not int:
        raise SchemaError("version and suite are integers")
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(f"envelope format {version!r}/{suite!r} is not known here")
    check_suite(params, suite, "an envelope")
    if network != params.network_id:
        raise WrongNetworkError(f"envelope is for network {network!r}")
    _bin(recipient, 32, "recipient account")
    _bin(message_id, MESSAGE_ID_BYTES, "message id")
    _bin(nonce, NONCE_BYTES, "nonce")
    if type(ciphertext) is not bytes or len(ciphertext) < AEAD_TAG:
        raise SchemaError("ciphertext too short")
    if type(wraps) is not list or not 0 < len(wraps) <= MAX_WRAPS:
        raise SchemaError(f"an envelope has 1 to {MAX_WRAPS} wraps")
    parsed = []
    for w in wraps:
        if type(w) is not list or len(w) != 4:
            raise SchemaError("a wrap is [device, scheme, key, data]")
        device, scheme, enc, data = w
        if type(scheme) is not int or scheme not in (WRAP_STATIC_X25519, WRAP_SCHEME_2):
            raise UnsupportedVersionError(f"wrap scheme {scheme!r} is not known here")
        if scheme == WRAP_STATIC_X25519:
            data = _bin(data, WRAP_BYTES, "wrap")
        elif type(data) is not bytes or not 48 <= len(data) <= wrap2.MAX_DATA_BYTES:
            raise SchemaError("a scheme-2 wrap's data is bin of 48 to MAX_DATA_BYTES")
        parsed.append(
            Wrap(_bin(device, 32, "wrap device"), scheme, _bin(enc, 32, "wrap key"), data)
        )
    if any(a.device >= b.device for a, b in pairwise(parsed)):
        raise SchemaError("wraps must be sorted by device, one per device")
    header_raw = encode_flat(fields[:HEADER_FIELDS])
    return Header(network, recipient, message_id, tuple(parsed), header_raw), nonce, ciphertext


def peek(raw: bytes, params: NetworkParams) -> Header:
    """The clear header of an envelope: structure only, nothing authenticated."""
    return _parse_outer(raw, params)[0]


def _parse_view(v: object) -> tuple[int, tuple[bytes, ...]]:
    if type(v) is not list or len(v) != 2 or type(v[1]) is not list:
        raise SchemaError("a view is [count, [heads]]")
    count = _uint(v[0], "head count")
    heads = tuple(_bin(h, 32, "head") for h in v[1])
    if (
        count <= 0
        or len(heads) != min(count, MAX_VIEW_HEADS)
        or any(a >= b for a, b in pairwise(heads))
    ):
        raise SchemaError("a view lists min(count, 32) heads, ascending")
    return count, heads


# --------------------------------------------------------------------------
# Opening (§15.5)


def _active_enc(state: AccountState | None, device: bytes) -> bytes | None:
    if state is None:
        return None
    d = state.device(device)
    if d is None or d.status is not DeviceStatus.ACTIVE:
        return None
    return d.enc_public


def open_envelope(
    params: NetworkParams,
    raw: bytes,
    my_account: bytes,
    me: DeviceKeys,
    states: StateLookup,
    guard: ReplayState,
    sessions: ReceiveSessions | None = None,
) -> OpenedEnvelope:
    """Decrypt, authenticate and replay-check an envelope (§15.5, steps 1-9).

    On success the counter is recorded in ``guard``; on any error nothing
    changes.  Checks run against the caller's *own* replica (``states``).
    A scheme-2 wrap needs ``sessions``; the new book and prekey store come
    back in the result, to be committed with the message (§19.13).
    """
    header, nonce, ciphertext = _parse_outer(raw, params)
    mine = next((w for w in header.wraps if w.device == me.sign_public), None)
    if mine is None:
        raise NotForThisDeviceError("no key wrap for this device")
    opened2 = None
    if mine.scheme == WRAP_SCHEME_2:
        # Step 3 (scheme 2): the session message carries the content key.
        if sessions is None:
            raise UnsupportedVersionError("this device keeps no sessions: wrap scheme 2 unknown")
        opened2 = open_wrap2(params, me, my_account, sessions, mine.enc_public, mine.data, states)
    elif mine.enc_public != me.enc_public:
        raise DecryptError("wrapped for an encryption key this device no longer holds")

    # Step 3: unwrap the content key.
    eph_public = mine.data[:32]
    try:
        if opened2 is not None:
            content_key: bytes = opened2.content_key
        else:
            crypto.check_x25519_public(eph_public)
            shared = bytes(sodium.crypto_scalarmult(me.enc_secret, eph_public))
            content_key = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                mine.data[32:], None, _ZERO_NONCE, _kek(shared, eph_public, me.enc_public)
            )
        # Step 4: decrypt, the clear header as associated data.
        plaintext = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, header.raw, nonce, content_key
        )
    except (InvalidKeyError, nacl.exceptions.CryptoError) as exc:
        raise DecryptError("key wrap or ciphertext does not authenticate") from exc

    # Step 5: parse [inner, signature], then the inner array.
    outer_plain = decode_flat(bytes(plaintext), MAX_ENVELOPE_BYTES)
    if type(outer_plain) is not list or len(outer_plain) != 3:
        raise SchemaError("plaintext is [inner, signature, pad]")
    inner_raw, signature, pad = outer_plain
    if type(inner_raw) is not bytes:
        raise SchemaError("inner must be bin")
    _bin(signature, crypto.ED25519_SIGNATURE_BYTES, "signature")
    check_pad(inner_raw, signature, pad)
    inner = decode_flat(inner_raw, MAX_ENVELOPE_BYTES)
    if type(inner) is not list or len(inner) != INNER_FIELDS:
        raise SchemaError(f"inner is an array of {INNER_FIELDS}")
    s_account, s_device, counter, timestamp, views_w, kind, body, ext = inner
    _bin(s_account, 32, "sender account")
    _bin(s_device, 32, "sender device")
    _uint(counter, "counter")
    _uint(timestamp, "timestamp")
    _uint(kind, "kind")
    if type(body) is not bytes or len(body) > MAX_CONTENT_BYTES:
        raise SchemaError("body must be bin within the content limit")
    if type(ext) is not list or ext:
        raise UnsupportedVersionError("envelope extensions are not known in this version")
    same_account = s_account == header.recipient_account
    if type(views_w) is not list or len(views_w) != (1 if same_account else 2):
        raise SchemaError("one view per account of the conversation")
    parsed_views = [_parse_view(v) for v in views_w]

    # Step 6: the signature, by the device the inner names.
    try:
        crypto.verify(s_device, _signed_message(header.raw, inner_raw), signature)
    except BadSignatureError as exc:
        raise BadSignatureError("envelope signature does not verify under its sender") from exc

    sender_state = states(s_account)
    recipient_state = sender_state if same_account else states(header.recipient_account)
    views = tuple(
        HeadsView(acc, count, heads, None if st is None else st.heads)
        for acc, st, (count, heads) in zip(
            (s_account, header.recipient_account),
            (sender_state, recipient_state),
            parsed_views,
            strict=False,
        )
    )

    # Step 7: the sender is active *here*; the envelope is for one of our accounts.
    if my_account not in (header.recipient_account, s_account):
        raise NotForThisDeviceError("envelope names neither account of this device")
    if _active_enc(sender_state, s_device) is None:
        raise SenderNotActiveError("sender device is not active in the sender account here", views)
    if opened2 is not None and (opened2.peer.account, opened2.peer.device) != (s_account, s_device):
        # the session's peer signed nothing here: another device sent it (§19.13)
        raise UnauthorisedError("the signed sender is not the session's peer")

    # Step 8: every wrap is for the current key of an active device of the
    # recipient account (scheme 2: an active device; its key field may be a
    # prekey).  A wrap for the sender's own device would name the sender.
    for w in header.wraps:
        enc = _active_enc(recipient_state, w.device)
        if enc is not None and w.scheme == WRAP_SCHEME_2:
            continue
        if enc != w.enc_public:
            raise UnauthorisedWrapError(
                f"key wrapped for {w.device.hex()[:12]}, not an active device key here", views
            )

    content = decode_content(kind, body)
    if isinstance(content, HistoryBundle) and not same_account:  # kinds 3 and 4
        raise UnauthorisedError("history comes only from a device of one's own account")
    if content_range(kind) is ContentRange.ACCOUNT_SYNC and not same_account:
        # known or not: a contact cannot write into this account's own sync (§15.4)
        raise UnauthorisedError("account sync comes only from a device of one's own account")
    if isinstance(content, TokenBatch) and content.device != s_device:
        # a device hands out tokens for itself only (§15.16)
        raise UnauthorisedError("a token batch is for its sender device only")

    # Step 9: replay, last, so that only a fully valid envelope is recorded.
    key: ReplayKey = (s_account, s_device, header.recipient_account)
    guard.accept(key, counter)

    wrapped = set(header.devices)
    missing = tuple(
        d.sign_public
        for d in (recipient_state.devices if recipient_state is not None else ())
        if d.status is DeviceStatus.ACTIVE
        and d.sign_public not in wrapped
        and d.sign_public != s_device
    )
    return OpenedEnvelope(
        message_id=header.message_id,
        recipient_account=header.recipient_account,
        sender_account=s_account,
        sender_device=s_device,
        counter=counter,
        timestamp=timestamp,
        content=content,
        views=views,
        wrapped_for=header.devices,
        missing_wraps=missing,
        scheme=mine.scheme,
        book=None if opened2 is None else opened2.book,
        prekeys=None if opened2 is None else opened2.store,
        session_id=None if opened2 is None else opened2.session_id,
        proof=HistoryProof(
            crypto.hash32(D_ENV_HEADER, header.raw), counter, tuple(parsed_views), signature
        ),
    )


# --------------------------------------------------------------------------
# Direct delivery: the stream ``/smu/message/1`` (§15.14)

MESSAGE_PROTOCOL_ID = "/smu/message/1"
DELIVERY_VERSION = 1


class DeliveryFrame(IntEnum):
    ENVELOPE = 1  # [envelope]
    ACCEPTED = 16  # []: opened and stored
    REFUSED = 31  # [code, message]


@dataclass(frozen=True, slots=True)
class DeliveryRefused:
    code: str
    message: str


def delivery_frame(envelope: bytes) -> bytes:
    return encode_flat([DELIVERY_VERSION, int(DeliveryFrame.ENVELOPE), envelope])


def delivery_answer(error: InvalidInput | None) -> bytes:
    """ACCEPTED once the message is stored; otherwise REFUSED with the error's code."""
    if error is None:
        return encode_flat([DELIVERY_VERSION, int(DeliveryFrame.ACCEPTED)])
    return encode_flat([DELIVERY_VERSION, int(DeliveryFrame.REFUSED), error.code, str(error)[:200]])


def _delivery(raw: bytes, max_size: int) -> tuple[int, list[object]]:
    f = decode_flat(raw, max_size)
    if type(f) is not list or len(f) < 2 or type(f[0]) is not int or type(f[1]) is not int:
        raise SchemaError("a delivery frame is [version, type, ...]")
    if f[0] != DELIVERY_VERSION:
        raise UnsupportedVersionError(f"delivery version {f[0]} is not known here")
    return f[1], f[2:]


def decode_delivery(raw: bytes) -> bytes:
    """The envelope in an ENVELOPE frame (then ``open_envelope`` it)."""
    t, f = _delivery(raw, MAX_ENVELOPE_BYTES + 64)
    if t != DeliveryFrame.ENVELOPE or len(f) != 1 or type(f[0]) is not bytes:
        raise SchemaError("expected [1, 1, envelope]")
    return f[0]


def decode_delivery_answer(raw: bytes) -> DeliveryRefused | None:
    """None: the recipient device stored the message."""
    t, f = _delivery(raw, 1024)
    if t == DeliveryFrame.ACCEPTED and not f:
        return None
    if t == DeliveryFrame.REFUSED and len(f) == 2:
        code, message = f
        if type(code) is str and type(message) is str:
            return DeliveryRefused(code, message)
    raise SchemaError("expected ACCEPTED or REFUSED")


__all__ = [
    "WRAP_SCHEME_2",
    "DecodeError",
    "DecryptError",
    "DeliveryRefused",
    "EnvelopeError",
    "Header",
    "HeadsView",
    "NotForThisDeviceError",
    "OpenedEnvelope",
    "RecipientDisputedError",
    "RequestsFullError",
    "SealedEnvelope",
    "SenderNotActiveError",
    "UnauthorisedWrapError",
    "Wrap",
    "decode_delivery",
    "decode_delivery_answer",
    "delivery_answer",
    "delivery_frame",
    "ledger_lookup",
    "open_envelope",
    "peek",
    "seal",
]
