"""Signed account events: their fields, encoding, ids and signatures.

PROTOCOL.md §5 is the normative text.  An event is the canonical MessagePack
array

    [version, suite, network, kind, account, parents, timestamp, body,
     signer, nonce, signature]

The first ten elements are the event's *core*; its id, its proof-of-work and
its signature are all computed over the core's own canonical encoding (the
10-element array), so the signature is a witness of the event, not part of
what it says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise

import msgpack

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    BadParentsError,
    BadTimestampError,
    InsufficientWorkError,
    SchemaError,
    UnsupportedVersionError,
    UsageError,
    WrongNetworkError,
)
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import integer as _int
from protocol.core.keys import recovery_commitment
from protocol.core.names import check_name
from protocol.core.params import FORMAT_VERSION, SUITE_V3, NetworkParams, check_suite

#: the current recovery key's co-signature on a rotate-recovery event (§6.8)
D_ROTATE_RECOVERY = b"smu/rotate-recovery/v1\x00"
NONCE_BYTES = 8
ID_BYTES = 32
CORE_FIELDS = 10
EVENT_FIELDS = 11


class EventKind(IntEnum):
    GENESIS = 1
    ADD_DEVICE = 2
    REVOKE_DEVICE = 3
    RECOVER = 4
    ROTATE_ENC_KEY = 5
    PROFILE = 6
    #: suite 3 only (PROTOCOL.md §6.8)
    ROTATE_RECOVERY = 7


@dataclass(frozen=True, slots=True)
class DeviceIntro:
    """A device as it enters an account (genesis, add-device, recover)."""

    sign_public: bytes
    enc_public: bytes
    name: str
    #: the new device's signature over PROTOCOL.md §5.4's proof-of-possession
    pop: bytes

    def to_wire(self) -> list[object]:
        return [self.sign_public, self.enc_public, self.name, self.pop]


@dataclass(frozen=True, slots=True)
class GenesisBody:
    display_name: str
    device: DeviceIntro
    recovery_commitment: bytes


@dataclass(frozen=True, slots=True)
class AddDeviceBody:
    device: DeviceIntro


@dataclass(frozen=True, slots=True)
class RevokeDeviceBody:
    device: bytes  # the revoked device's Ed25519 public key


@dataclass(frozen=True, slots=True)
class RecoverBody:
    device: DeviceIntro
    recovery_commitment: bytes  # commitment to the *next* recovery key


@dataclass(frozen=True, slots=True)
class RotateEncKeyBody:
    enc_public: bytes


@dataclass(frozen=True, slots=True)
class ProfileBody:
    display_name: str


@dataclass(frozen=True, slots=True)
class RotateRecoveryBody:
    """A device and the current recovery key replace the recovery key
    (PROTOCOL.md §6.8): the event's signer is the device; the recovery key
    co-signs ``rotation_message``."""

    recovery_public: bytes  # the recovery key in force at the parents
    recovery_commitment: bytes  # commitment to the *next* recovery key
    recovery_signature: bytes  # the current recovery key's co-signature


Body = (
    GenesisBody
    | AddDeviceBody
    | RevokeDeviceBody
    | RecoverBody
    | RotateEncKeyBody
    | ProfileBody
    | RotateRecoveryBody
)


def body_to_wire(body: Body) -> list[object]:
    match body:
        case GenesisBody(display_name, device, commitment):
            return [display_name, device.to_wire(), commitment]
        case AddDeviceBody(device):
            return [device.to_wire()]
        case RevokeDeviceBody(device):
            return [device]
        case RecoverBody(device, commitment):
            return [device.to_wire(), commitment]
        case RotateEncKeyBody(enc_public):
            return [enc_public]
        case ProfileBody(display_name):
            return [display_name]
        case RotateRecoveryBody(public, commitment, signature):
            return [public, commitment, signature]
    raise UsageError(f"unknown body {body!r}")  # pragma: no cover


KIND_OF_BODY: dict[type, EventKind] = {
    GenesisBody: EventKind.GENESIS,
    AddDeviceBody: EventKind.ADD_DEVICE,
    RevokeDeviceBody: EventKind.REVOKE_DEVICE,
    RecoverBody: EventKind.RECOVER,
    RotateEncKeyBody: EventKind.ROTATE_ENC_KEY,
    ProfileBody: EventKind.PROFILE,
    RotateRecoveryBody: EventKind.ROTATE_RECOVERY,
}


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded, structurally valid event.  Signatures are checked separately."""

    network: str
    kind: EventKind
    #: the account id; empty for a genesis, whose id *is* the account id
    account: bytes
    parents: tuple[bytes, ...]
    timestamp: int
    body: Body
    signer: bytes
    nonce: bytes
    signature: bytes
    id: bytes
    raw: bytes
    version: int = FORMAT_VERSION
    suite: int = SUITE_V3

    @property
    def account_id(self) -> bytes:
        return self.id if self.kind is EventKind.GENESIS else self.account

    @property
    def core(self) -> bytes:
        """Canonical encoding of the 10-element core (PROTOCOL.md §5.2)."""
        return core_of(self.raw)

    @property
    def introduced_device(self) -> DeviceIntro | None:
        body = self.body
        if isinstance(body, _INTRO_BODIES):
            return body.device
        return None

    def __repr__(self) -> str:
        return f"Event({self.kind.name}, id={self.id.hex()[:12]})"


# The bodies that bring a device in (a constant tuple: ``isinstance`` with
# a ``X | Y`` union would build the union on every call, on the hot path).
_INTRO_BODIES = (GenesisBody, AddDeviceBody, RecoverBody)


def core_of(raw: bytes) -> bytes:
    """The core's encoding, cut from a canonical event.

    A canonical event is a fixarray header (0x9b), the ten core fields, and
    the signature as bin8 (0xc4 0x40 + 64 bytes); the core is the same
    fields under a 10-element header (0x9a).
    """
    return b"\x9a" + raw[1 : -(2 + crypto.ED25519_SIGNATURE_BYTES)]


def event_id(core: bytes) -> bytes:
    return crypto.hash32(crypto.D_EVENT_ID, core)


def raw_event_id(raw: bytes) -> bytes | None:
    """The id ``raw`` would have if it is a canonical event, computed from
    its bytes alone (see ``core_of``); None if it cannot be one.  For
    duplicate lookups only: it says nothing about validity."""
    if len(raw) < 3 + crypto.ED25519_SIGNATURE_BYTES or raw[0] != 0x9B:
        return None
    return _blake2b(crypto.D_EVENT_ID + b"\x9a" + raw[1:_CORE_END], digest_size=32).digest()


def pop_message(network: str, account: bytes, sign_public: bytes, enc_public: bytes) -> bytes:
    """What a new device signs to prove it holds its key (PROTOCOL.md §5.4)."""
    return crypto.D_POP + encode_flat([network, account, sign_public, enc_public])


def rotation_message(
    network: str,
    account: bytes,
    parents: tuple[bytes, ...] | list[bytes],
    signer: bytes,
    next_commitment: bytes,
) -> bytes:
    """What the current recovery key co-signs in a rotate-recovery event
    (PROTOCOL.md §6.8): the point of the history (the parents) and the
    co-signing device, so the co-signature cannot be moved elsewhere."""
    return D_ROTATE_RECOVERY + encode_flat(
        [network, account, list(parents), signer, next_commitment]
    )


# --------------------------------------------------------------------------
# Decoding (structure only: PROTOCOL.md §5.3)


def _str(value: object, what: str) -> str:
    if type(value) is not str:
        raise SchemaError(f"{what} must be a string")
    return value


def _list(value: object, size: int | None, what: str) -> list[object]:
    if type(value) is not list or (size is not None and len(value) != size):
        raise SchemaError(f"{what} must be an array" + (f" of {size}" if size else ""))
    return value


def _name(value: object, what: str, max_bytes: int) -> str:
    """``names.check_name``, with a shortcut for the common case.

    A printable ASCII string has no control, format or non-space
    whitespace character and is already NFC, so only the length and the
    space rules apply to it; anything else, and every name that fails,
    goes through ``check_name`` so the error is the same.
    """
    if type(value) is not str:
        raise SchemaError(f"{what} must be a string")
    if (
        value.isascii()
        and value.isprintable()
        and 0 < len(value) <= max_bytes
        and value[0] != " "
        and value[-1] != " "
        and "  " not in value
    ):
        return value
    check_name(value, max_bytes)
    return value


def _device(value: object, params: NetworkParams) -> DeviceIntro:
    sign_public, enc_public, name, pop = _list(value, 4, "device")
    crypto.check_x25519_public(_bin(enc_public, 32, "encryption key"))
    _name(name, "device name", params.max_name_bytes)
    return DeviceIntro(
        _bin(sign_public, 32, "signing key"),
        enc_public,  # type: ignore[arg-type]
        name,  # type: ignore[arg-type]
        _bin(pop, 64, "proof of possession"),
    )


def _body(kind: EventKind, value: object, params: NetworkParams) -> Body:
    if kind is EventKind.GENESIS:
        name, device, commitment = _list(value, 3, "genesis body")
        _name(name, "display name", params.max_name_bytes)
        return GenesisBody(name, _device(device, params), _bin(commitment, 32, "commitment"))  # type: ignore[arg-type]
    if kind is EventKind.ADD_DEVICE:
        (device,) = _list(value, 1, "add-device body")
        return AddDeviceBody(_device(device, params))
    if kind is EventKind.REVOKE_DEVICE:
        (device,) = _list(value, 1, "revoke-device body")
        return RevokeDeviceBody(_bin(device, 32, "revoked key"))
    if kind is EventKind.RECOVER:
        device, commitment = _list(value, 2, "recover body")
        return RecoverBody(_device(device, params), _bin(commitment, 32, "commitment"))
    if kind is EventKind.ROTATE_ENC_KEY:
        (enc_public,) = _list(value, 1, "rotate body")
        crypto.check_x25519_public(_bin(enc_public, 32, "encryption key"))
        return RotateEncKeyBody(enc_public)  # type: ignore[arg-type]
    if kind is EventKind.PROFILE:
        (name,) = _list(value, 1, "profile body")
        return ProfileBody(_name(name, "display name", params.max_name_bytes))
    public, commitment, signature = _list(value, 3, "rotate-recovery body")
    body = RotateRecoveryBody(
        _bin(public, 32, "recovery key"),
        _bin(commitment, 32, "commitment"),
        _bin(signature, 64, "recovery signature"),
    )
    # A rotation to the same key would change nothing: refused so that "the
    # key in force changed" is what every rotation means (§6.8).
    if recovery_commitment(body.recovery_public) == body.recovery_commitment:
        raise SchemaError("a rotation commits to another recovery key")
    return body


def check_parents(
    parents: list[object] | tuple[bytes, ...], is_genesis: bool, params: NetworkParams
) -> None:
    if is_genesis:
        if parents:
            raise BadParentsError("a genesis event has no parents")
        return
    if not parents:
        raise BadParentsError("every event but a genesis names at least one parent")
    if len(parents) > params.max_parents:
        raise BadParentsError(f"at most {params.max_parents} parents")
    for p in parents:
        _bin(p, ID_BYTES, "parent id")
    if len(parents) > 1 and any(a >= b for a, b in pairwise(parents)):  # type: ignore[operator]
        raise BadParentsError("parents must be sorted and unique")


def decode_event(raw: bytes, params: NetworkParams) -> Event:
    """Parse and structurally validate an event; compute its id.

    Raises an ``InvalidInput`` subclass.  Does not check signatures or
    proof-of-work (``verify_event``) nor account rules (``AccountLog``).
    """
    fields = decode_flat(raw, params.max_event_bytes)
    if type(fields) is not list or len(fields) < 3:
        raise SchemaError("an event is an array")
    version, suite, network = fields[0], fields[1], fields[2]
    if _int(version, "version") != FORMAT_VERSION:
        raise UnsupportedVersionError(f"event format {version}/{suite} is not known here")
    # The suite is the network's rules version (§12): an event of another
    # suite is not evaluated here, whatever its fields say.
    check_suite(params, _int(suite, "suite"), "an event")
    if len(fields) != EVENT_FIELDS:
        raise SchemaError(f"a version-1 event has {EVENT_FIELDS} fields")
    _, _, _, kind_v, account, parents, timestamp, body, signer, nonce, signature = fields
    if _str(network, "network") != params.network_id:
        raise WrongNetworkError(f"event is for network {network!r}, not {params.network_id!r}")
    kind = _KIND_OF_VALUE.get(_int(kind_v, "kind"))
    if kind is None or (kind is EventKind.ROTATE_RECOVERY and not params.has_recovery_rotation):
        raise SchemaError(f"unknown event kind {kind_v}")
    is_genesis = kind is EventKind.GENESIS
    if type(account) is not bytes or len(account) != (0 if is_genesis else ID_BYTES):
        raise SchemaError("account is empty in a genesis and 32 bytes otherwise")
    check_parents(_list(parents, None, "parents"), is_genesis, params)
    if not params.min_timestamp_ms <= _int(timestamp, "timestamp") <= params.max_timestamp_ms:
        raise BadTimestampError(f"timestamp {timestamp} is outside the network's bounds")
    _bin(signer, 32, "signer")
    _bin(nonce, NONCE_BYTES, "nonce")
    _bin(signature, crypto.ED25519_SIGNATURE_BYTES, "signature")
    parsed_body = _body(kind, body, params)
    # Positional, in field order: keyword passing costs measurably here.
    return Event(
        network,
        kind,
        account,
        tuple(parents),
        timestamp,
        parsed_body,
        signer,
        nonce,
        signature,
        _blake2b(crypto.D_EVENT_ID + b"\x9a" + raw[1:_CORE_END], digest_size=32).digest(),
        raw,
        FORMAT_VERSION,
        suite,
    )


# ``EventKind(v)`` raises through the enum machinery; a dict is cheaper.  Its
# keys are ints, and ``_int`` has already refused bools (True == 1).
_KIND_OF_VALUE: dict[int, EventKind] = {int(k): k for k in EventKind}
_blake2b = hashlib.blake2b
# raw[1:_CORE_END] is the core's fields: everything but the header and the
# signature's bin8 (0xc4 0x40 + 64 bytes); see ``core_of``.
_CORE_END = -(2 + crypto.ED25519_SIGNATURE_BYTES)


def is_special(kind: EventKind, parents: int) -> bool:
    """Revocations, recovers and merges carry ``special_pow_bits`` of work
    (PROTOCOL.md §3.4): each costs a node work in proportion to the account,
    and the first two are exempt from the caps of §7.3."""
    return kind in _SPECIAL or parents > 1


#: Rotations of the recovery key are uses of it, like recovers: each makes a
#: node look at the account's other uses (rule 2, §7.2), so work prices them.
_SPECIAL = frozenset({EventKind.REVOKE_DEVICE, EventKind.RECOVER, EventKind.ROTATE_RECOVERY})


def verify_event(event: Event, params: NetworkParams) -> None:
    """The stateless cryptographic checks: proof-of-work, signature, PoP.

    They depend on the event alone, so their result can be cached by id.
    """
    core = b"\x9a" + event.raw[1:_CORE_END]  # core_of, inlined
    kind = event.kind
    bits = params.pow_bits(kind is EventKind.GENESIS, is_special(kind, len(event.parents)))
    # leading_zero_bits_ok(_, 0) is True whatever the hash: skip hashing.
    if bits and not crypto.leading_zero_bits_ok(
        _blake2b(crypto.D_POW + core, digest_size=32).digest(), bits
    ):
        raise InsufficientWorkError(f"proof-of-work below {bits} bits")
    crypto.verify(event.signer, crypto.D_EVENT_SIG + core, event.signature)
    body = event.body
    if isinstance(body, _INTRO_BODIES):
        device = body.device
        if kind is EventKind.GENESIS and device.sign_public != event.signer:
            raise SchemaError("a genesis is signed by its own first device")
        msg = pop_message(event.network, event.account, device.sign_public, device.enc_public)
        crypto.verify(device.sign_public, msg, device.pop)
    elif isinstance(body, RotateRecoveryBody):
        msg = rotation_message(
            event.network, event.account, event.parents, event.signer, body.recovery_commitment
        )
        crypto.verify(body.recovery_public, msg, body.recovery_signature)


# --------------------------------------------------------------------------
# Building (local): grind the proof-of-work, then sign once.

Signer = Callable[[bytes], bytes]


def build_event(
    params: NetworkParams,
    *,
    account: bytes,
    parents: tuple[bytes, ...] | list[bytes],
    timestamp: int,
    body: Body,
    signer_public: bytes,
    sign: Signer,
    start_nonce: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Event:
    """Create a signed event.  Raises ``UsageError`` if the result would be invalid."""
    kind = KIND_OF_BODY[type(body)]
    parents = tuple(sorted(set(parents)))
    try:
        check_parents(parents, kind is EventKind.GENESIS, params)
    except BadParentsError as exc:
        raise UsageError(str(exc)) from exc
    prefix = bytes(
        msgpack.packb(
            [
                FORMAT_VERSION,
                params.suite,
                params.network_id,
                int(kind),
                account,
                list(parents),
                timestamp,
                body_to_wire(body),
                signer_public,
            ],
            use_bin_type=True,
        )
    )
    # The core is this 9-element array re-headed as 10 elements, plus the
    # nonce (bin8 of 8 bytes) at its end.
    head = b"\x9a" + prefix[1:] + b"\xc4\x08"
    bits = params.pow_bits(kind is EventKind.GENESIS, is_special(kind, len(parents)))
    base = crypto.pow_hasher(head)
    nonce_int = start_nonce
    while True:
        nonce = nonce_int.to_bytes(NONCE_BYTES, "big")
        h = base.copy()
        h.update(nonce)
        if crypto.leading_zero_bits_ok(h.digest(), bits):
            break
        nonce_int += 1
        if progress is not None and nonce_int & 0xFFFF == 0:
            progress(nonce_int)
    core = head + nonce
    signature = sign(crypto.D_EVENT_SIG + core)
    raw = b"\x9b" + core[1:] + b"\xc4\x40" + signature
    try:
        return decode_event(raw, params)
    except Exception as exc:  # local misuse: we built something invalid
        raise UsageError(f"built an invalid event: {exc}") from exc
