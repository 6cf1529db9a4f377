"""The wire format of device linking (PROTOCOL.md §14.2, §14.4, §14.7): the
link string, the frames of ``/smu/link/1`` and the typed refusals.

The two machines that speak it are in ``protocol.linking``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum

from protocol.core import crypto
from protocol.core.canonical import decode, encode
from protocol.core.codes import from_code, to_code
from protocol.core.errors import (
    InvalidInput,
    ProtocolError,
    SchemaError,
    SizeLimitError,
    UnsupportedVersionError,
    UsageError,
)
from protocol.core.fields import MAX_PEER_ID_CHARS
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.names import check_name
from protocol.core.params import NetworkParams
from protocol.log.events import DeviceIntro

PROTOCOL_ID = "/smu/link/1"
LINK_VERSION = 1  # of the link string's payload (§14.2)
FRAME_VERSION = 1  # of every frame (§14.4)

LINK_ID_BYTES = 8
LINK_SECRET_BYTES = 16  # 128 bits: enough that no PAKE is needed (§14.8)
MAC_BYTES = 32
CHECKSUM_BYTES = 4
CODE_DIGITS = 6

LINK_TTL_MS = 10 * 60 * 1000
#: once a valid join request has claimed the offer, the users have this long
#: to confirm and approve
APPROVAL_WINDOW_MS = 5 * 60 * 1000
MAX_FAILURES = 3
#: the joiner refuses a link this long past its expiry by its own clock; the
#: approver's clock is the one that decides
CLOCK_SKEW_MS = 60 * 1000
#: the joiner gives up when the approver has not answered its JOIN within
#: this long, or has not sent APPROVED within APPROVAL_TIMEOUT_MS of the
#: user's confirmation (by the joiner's monotonic clock, §14.6)
ANSWER_TIMEOUT_MS = 30 * 1000
APPROVAL_TIMEOUT_MS = APPROVAL_WINDOW_MS + CLOCK_SKEW_MS

MAX_NETWORK_ID_BYTES = 32
MAX_PEER_ID_BYTES = MAX_PEER_ID_CHARS  # peer ids are ASCII: characters = bytes
MAX_ADDRS = 8
MAX_ADDR_BYTES = 256
MAX_LINK_CHARS = 2048
MAX_ERROR_CODE_BYTES = 32
#: accounts with more events cannot be linked by this version (§14.6)
MAX_LINK_EVENTS = 4096
#: every frame the approver reads is small; the adapter refuses a longer
#: length prefix before reading (§14.6)
APPROVER_BOUND_MAX_BYTES = 1024

TEXT_PREFIX = "smu1link"
URI_PREFIX = "smu://link/"

# Domain labels (§14.3).  Changing one is a protocol change.
D_LINK_CHECKSUM = b"smu/link-checksum/v1\x00"
D_LINK_JOIN = b"smu/link-join/v1\x00"
D_LINK_TRANSCRIPT = b"smu/link-transcript/v1\x00"
D_LINK_ACCEPT = b"smu/link-accept/v1\x00"
D_LINK_CODE = b"smu/link-code/v1\x00"


# --------------------------------------------------------------------------
# Errors (§14.7).  Each class's ``code`` is what travels in an ERROR frame.


class LinkError(InvalidInput):
    code = "link_aborted"
    message = "the other device ended the linking"


class LinkExpiredError(LinkError):
    code = "link_expired"
    message = "the link has expired: make a new one with `smu device link`"


class LinkBurntError(LinkError):
    code = "link_burnt"
    message = "the link was burnt after too many wrong attempts: make a new one"


class LinkUsedError(LinkError):
    code = "link_used"
    message = "the link has already been used"


class LinkMacError(LinkError):
    code = "link_bad_secret"
    message = "the link's secret does not match: check the link string"


class LinkRejectedError(LinkError):
    code = "link_rejected"
    message = "the existing device rejected the request"


class LinkDeclinedError(LinkError):
    code = "link_declined"
    message = "the new device declined to join"


class UnknownLinkError(LinkError):
    code = "link_unknown"
    message = "the other device has no such link offer"


class DeviceKnownError(LinkError):
    code = "link_device_known"
    message = "this device key is already in the account"


class UnexpectedFrameError(LinkError):
    code = "link_unexpected"
    message = "a frame arrived out of order"


class WrongPeerError(LinkError):
    code = "link_wrong_peer"
    message = "the connected peer is not the one the link names"


class LinkTimeoutError(LinkError):
    code = "link_timeout"
    message = "the other device did not answer in time"


# Every code a peer may send, mapped to its class (subclasses are direct).
_LINK_ERRORS: list[type[LinkError]] = [LinkError, *LinkError.__subclasses__()]
_ERROR_CLASSES = {c.code: c for c in _LINK_ERRORS}


def _refuse(cls: type[LinkError], detail: str = "") -> LinkError:
    return cls(cls.message + (f" ({detail})" if detail else ""))


# --------------------------------------------------------------------------
# Field checks shared by the link string and the frames


def _ascii(value: object, max_bytes: int, what: str) -> str:
    """Printable ASCII, 1..max_bytes: peer ids, multiaddrs, codes, network ids."""
    if type(value) is not str or not 0 < len(value) <= max_bytes:
        raise SchemaError(f"{what} must be a string of 1 to {max_bytes} characters")
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise SchemaError(f"{what} must be printable ASCII without spaces")
    return value


def _keyed(secret: bytes, domain: bytes, data: bytes, size: int = MAC_BYTES) -> bytes:
    """Keyed BLAKE2b with the link secret (§14.3)."""
    return hashlib.blake2b(domain + data, key=secret, digest_size=size).digest()


# --------------------------------------------------------------------------
# The link string (§14.2)


@dataclass(frozen=True, slots=True)
class LinkOffer:
    """What the link string carries.  The string itself is a secret."""

    network_id: str
    account_id: bytes
    link_id: bytes
    secret: bytes = field(repr=False)
    #: the approver's libp2p peer id and multiaddrs, as strings
    peer_id: str
    addrs: tuple[str, ...]
    expires_at_ms: int

    def _payload(self) -> list[object]:
        return [
            LINK_VERSION,
            self.network_id,
            self.account_id,
            self.link_id,
            self.secret,
            self.peer_id,
            list(self.addrs),
            self.expires_at_ms,
        ]

    def to_text(self) -> str:
        """``smu1link`` and Crockford base32 (§4.7): one token, safe to copy."""
        return to_code(TEXT_PREFIX, self._payload(), D_LINK_CHECKSUM)

    def to_uri(self) -> str:
        """``smu://link/<base32>``; upper-cased it fits a QR's alphanumeric mode."""
        return to_code(URI_PREFIX, self._payload(), D_LINK_CHECKSUM)

    @classmethod
    def parse(cls, text: str) -> LinkOffer:
        """Parse either form, in any letter case; a typo raises ``ChecksumError``."""
        fields = from_code(text, (URI_PREFIX, TEXT_PREFIX), D_LINK_CHECKSUM, "the link")
        if type(fields) is not list or not fields:
            raise SchemaError("a link's payload is an array")
        if fields[0] != LINK_VERSION or type(fields[0]) is not int:
            raise UnsupportedVersionError(f"link version {fields[0]!r} is not known here")
        if len(fields) != 8:
            raise SchemaError("a version-1 link has 8 fields")
        _, network, account, link_id, secret, peer_id, addrs, expires = fields
        if type(addrs) is not list or len(addrs) > MAX_ADDRS:
            raise SchemaError(f"a link carries at most {MAX_ADDRS} addresses")
        return cls(
            network_id=_ascii(network, MAX_NETWORK_ID_BYTES, "network id"),
            account_id=_bin(account, 32, "account id"),
            link_id=_bin(link_id, LINK_ID_BYTES, "link id"),
            secret=_bin(secret, LINK_SECRET_BYTES, "link secret"),
            peer_id=_ascii(peer_id, MAX_PEER_ID_BYTES, "peer id"),
            addrs=tuple(_ascii(a, MAX_ADDR_BYTES, "address") for a in addrs),
            expires_at_ms=_uint(expires, "expiry"),
        )


# --------------------------------------------------------------------------
# Frames (§14.4): canonical MessagePack arrays [version, type, ...fields]


class FrameType(IntEnum):
    JOIN = 1  # joiner -> approver
    ACCEPT = 2  # approver -> joiner
    CONFIRM = 3  # joiner -> approver
    APPROVED = 4  # approver -> joiner
    DONE = 5  # joiner -> approver
    ERROR = 6  # either way
    # 7..15 reserved (§14.9)


@dataclass(frozen=True, slots=True)
class JoinFrame:
    link_id: bytes
    intro: DeviceIntro
    mac: bytes


@dataclass(frozen=True, slots=True)
class AcceptFrame:
    #: the account's raw events, parents first
    events: tuple[bytes, ...]
    mac: bytes


@dataclass(frozen=True, slots=True)
class ConfirmFrame:
    pass


@dataclass(frozen=True, slots=True)
class ApprovedFrame:
    #: the account's raw events, parents first, the add-device among them
    events: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DoneFrame:
    pass


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    code: str


Frame = JoinFrame | AcceptFrame | ConfirmFrame | ApprovedFrame | DoneFrame | ErrorFrame


def joiner_bound_max_bytes(params: NetworkParams) -> int:
    """The largest frame a joiner reads (ACCEPT and APPROVED carry events)."""
    return MAX_LINK_EVENTS * (params.max_event_bytes + 3) + 64


def encode_frame(frame: Frame) -> bytes:
    v = FRAME_VERSION
    match frame:
        case JoinFrame(link_id, intro, mac):
            return encode([v, int(FrameType.JOIN), link_id, intro.to_wire(), mac])
        case AcceptFrame(events, mac):
            return encode([v, int(FrameType.ACCEPT), list(events), mac])
        case ConfirmFrame():
            return encode([v, int(FrameType.CONFIRM)])
        case ApprovedFrame(events):
            return encode([v, int(FrameType.APPROVED), list(events)])
        case DoneFrame():
            return encode([v, int(FrameType.DONE)])
        case ErrorFrame(code):
            return encode([v, int(FrameType.ERROR), code])
    raise UsageError(f"not a frame: {frame!r}")  # pragma: no cover


def error_frame(exc: ProtocolError) -> bytes:
    """The ERROR frame that tells the peer why this side refused or stopped."""
    code = exc.code if isinstance(exc, LinkError) else LinkError.code
    return encode_frame(ErrorFrame(code))


def error_from_code(code: str) -> LinkError:
    """The typed error for a code the peer sent; the message is ours, not theirs."""
    cls = _ERROR_CLASSES.get(code, LinkError)
    return _refuse(cls)


def _intro(value: object, params: NetworkParams) -> DeviceIntro:
    if type(value) is not list or len(value) != 4:
        raise SchemaError("a device intro is [sign key, enc key, name, pop]")
    sign_public, enc_public, name, pop = value
    crypto.check_ed25519_public(_bin(sign_public, 32, "signing key"))
    crypto.check_x25519_public(_bin(enc_public, 32, "encryption key"))
    if type(name) is not str:
        raise SchemaError("a device name is a string")
    check_name(name, params.max_name_bytes)
    return DeviceIntro(sign_public, enc_public, name, _bin(pop, 64, "proof of possession"))


def _events(value: object, params: NetworkParams) -> tuple[bytes, ...]:
    if type(value) is not list or not value:
        raise SchemaError("events are a non-empty array of bin")
    if len(value) > MAX_LINK_EVENTS:
        raise SizeLimitError(f"at most {MAX_LINK_EVENTS} events in a link frame")
    for raw in value:
        if type(raw) is not bytes or not 0 < len(raw) <= params.max_event_bytes:
            raise SchemaError(f"an event is a bin of 1 to {params.max_event_bytes} bytes")
    return tuple(value)


_ARITY = {
    FrameType.JOIN: 5,
    FrameType.ACCEPT: 4,
    FrameType.CONFIRM: 2,
    FrameType.APPROVED: 3,
    FrameType.DONE: 2,
    FrameType.ERROR: 3,
}


def decode_frame(data: bytes, params: NetworkParams, max_bytes: int) -> Frame:
    """Parse and check one frame; every failure is an ``InvalidInput``."""
    value = decode(data, max_bytes)
    if type(value) is not list or len(value) < 2:
        raise SchemaError("a frame is an array [version, type, ...]")
    if value[0] != FRAME_VERSION or type(value[0]) is not int:
        raise UnsupportedVersionError(f"link frame version {value[0]!r}")
    if type(value[1]) is not int or value[1] not in _ARITY:
        raise SchemaError(f"unknown link frame type {value[1]!r}")
    ftype = FrameType(value[1])
    if len(value) != _ARITY[ftype]:
        raise SchemaError(f"a {ftype.name} frame has {_ARITY[ftype]} elements")
    if ftype is FrameType.JOIN:
        return JoinFrame(
            _bin(value[2], LINK_ID_BYTES, "link id"),
            _intro(value[3], params),
            _bin(value[4], MAC_BYTES, "mac"),
        )
    if ftype is FrameType.ACCEPT:
        return AcceptFrame(_events(value[2], params), _bin(value[3], MAC_BYTES, "mac"))
    if ftype is FrameType.APPROVED:
        return ApprovedFrame(_events(value[2], params))
    if ftype is FrameType.ERROR:
        return ErrorFrame(_ascii(value[2], MAX_ERROR_CODE_BYTES, "error code"))
    return ConfirmFrame() if ftype is FrameType.CONFIRM else DoneFrame()


def link_id_of(data: bytes, params: NetworkParams) -> bytes:
    """The link id of the first frame of a stream, for routing to an Approver."""
    frame = decode_frame(data, params, APPROVER_BOUND_MAX_BYTES)
    if not isinstance(frame, JoinFrame):
        raise _refuse(UnexpectedFrameError, "a link stream starts with JOIN")
    return frame.link_id
