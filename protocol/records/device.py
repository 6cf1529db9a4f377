"""Signed device records: soft state beside the log (PROTOCOL.md §16).

A device publishes where it can be reached (libp2p peer ids and
multiaddrs, the mailboxes that hold envelopes for it, and, from version 2,
its signed prekey, the relays it reserved slots at and what it can do) in
a record it signs.  Records are not events: the newest one per device
wins, each expires, and a node accepts one only from a device that is
active in the node's *own* view of the account, with a timestamp no further
ahead of the node's clock than the allowed skew.  When a device stops being
active its records are dropped.

Wire forms, canonical MessagePack, told apart by their first element:

    v1: [1, suite, network, account, device, timestamp, expires,
         peer_ids, addrs, mailboxes, signature]
    v2: [2, suite, network, account, device, timestamp, expires,
         peer_ids, addrs, mailboxes, signed_prekey, relays, capabilities,
         signature]

The signature is Ed25519 by ``device`` over ``D_DEVICE_RECORD`` followed by
the canonical encoding of every element but the signature, as an array;
the version inside keeps the signed bytes of the two formats apart.  A v1
record names only v1 grants and a v2 record only v2 grants (§15.11).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum, IntEnum

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    BadTimestampError,
    SchemaError,
    SizeLimitError,
    UnauthorisedError,
    UnsupportedVersionError,
    UsageError,
    WrongNetworkError,
)
from protocol.core.fields import MAX_PEER_ID_CHARS
from protocol.core.keys import DeviceKeys
from protocol.core.params import NetworkParams, suite_known
from protocol.records.grant import GRANT_V1, GRANT_V2, decode_grant

RECORD_V1 = 1
RECORD_V2 = 2
#: largest record of any version, checked before parsing: the worst-case
#: v2 record is 4,556 bytes (PROTOCOL.md §16.4 adds it up), plus margin
MAX_RECORD_BYTES = 5120
#: version 1 keeps the limit it always had
MAX_RECORD_V1_BYTES = 2048
MAX_PEER_IDS = 4
MAX_ADDRS = 8
#: peer ids, addresses, mailbox addresses and relays (PROTOCOL.md §1, §16.2)
MAX_TEXT = MAX_PEER_ID_CHARS
#: how far a record's timestamp may be ahead of the receiver's clock
MAX_SKEW_MS = 5 * 60 * 1000
#: longest validity a record may claim
MAX_LIFETIME_MS = 30 * 24 * 3600 * 1000
#: elements of each version's array, signature included
FIELDS = 11
FIELDS_V2 = 14
_FIELDS = {RECORD_V1: FIELDS, RECORD_V2: FIELDS_V2}
#: the grant version each record version may name (one format per record
#: version keeps the size bound and the signature domain simple, §16)
_GRANT_VERSION = {RECORD_V1: GRANT_V1, RECORD_V2: GRANT_V2}
#: mailboxes a record may name, and addresses per mailbox
MAX_MAILBOXES = 2
MAX_MAILBOX_ADDRS = 2
#: v2: relays a record may name, capabilities it may list
MAX_RELAYS = 4
MAX_CAPABILITIES = 16
#: every capability value is below this; a prekey id below ``PREKEY_ID_BOUND``
CAPABILITY_BOUND = 1 << 16
PREKEY_ID_BOUND = 1 << 32
_SIGNATURE_TAIL = 2 + crypto.ED25519_SIGNATURE_BYTES  # bin8 header + 64 bytes


class Capability(IntEnum):
    """Named capability values of a v2 record (PROTOCOL.md §16).  A record
    may list values this code does not name: they are kept and ignored."""

    #: the device opens wrap scheme 2 (forward-secret sessions, §15.9).
    #: Sticky: once a sender has seen it for a device it never wraps for
    #: that device with scheme 1 again, so a stale or forged-by-omission
    #: record cannot downgrade the session.
    WRAP_SCHEME_2 = 1
    #: the device's node speaks the framed, flow-controlled per-link channel
    #: (DESIGN §10)
    LINK_CHANNEL = 2


@dataclass(frozen=True, slots=True)
class SignedPrekey:
    """A v2 record's signed prekey: the record's own signature covers it."""

    prekey_id: int
    public: bytes


Mailboxes = tuple[tuple[bytes, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class SignedDeviceRecord:
    network: str
    account: bytes
    device: bytes
    timestamp: int
    expires: int
    peer_ids: tuple[str, ...]
    addrs: tuple[str, ...]
    #: (the mailbox's grant for this device, the mailbox's multiaddrs)
    mailboxes: Mailboxes
    signature: bytes
    raw: bytes
    version: int = RECORD_V1
    #: v2 only (None, empty in v1): the signed prekey, relay peer ids and
    #: capability values, unknown values included, ascending
    signed_prekey: SignedPrekey | None = None
    relays: tuple[str, ...] = ()
    capabilities: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.account, self.device)

    def has(self, capability: Capability) -> bool:
        return int(capability) in self.capabilities


def _unsigned(
    params: NetworkParams,
    version: int,
    account: bytes,
    device: bytes,
    timestamp: int,
    expires: int,
    peer_ids: tuple[str, ...],
    addrs: tuple[str, ...],
    mailboxes: Mailboxes,
    signed_prekey: SignedPrekey | None,
    relays: tuple[str, ...],
    capabilities: tuple[int, ...],
) -> list[object]:
    fields: list[object] = [
        version,
        params.suite,
        params.network_id,
        account,
        device,
        timestamp,
        expires,
        list(peer_ids),
        list(addrs),
        [[grant, list(mb_addrs)] for grant, mb_addrs in mailboxes],
    ]
    if version == RECORD_V2:
        prekey = [] if signed_prekey is None else [signed_prekey.prekey_id, signed_prekey.public]
        fields += [prekey, list(relays), list(capabilities)]
    return fields


def make_record(
    params: NetworkParams,
    account: bytes,
    device: DeviceKeys,
    *,
    timestamp: int,
    lifetime_ms: int,
    peer_ids: tuple[str, ...],
    addrs: tuple[str, ...],
    mailboxes: Mailboxes = (),
    signed_prekey: SignedPrekey | None = None,
    relays: tuple[str, ...] = (),
    capabilities: tuple[int, ...] = (),
    version: int = RECORD_V2,
) -> SignedDeviceRecord:
    """Sign a record; version 2 unless ``version=RECORD_V1`` (kept for the
    golden vectors and tests: nodes publish v2).  Raises the
    ``InvalidInput`` that a receiver would raise on a field it refuses."""
    if version not in _FIELDS:
        raise UsageError(f"no device record version {version}")
    if version == RECORD_V1 and (signed_prekey is not None or relays or capabilities):
        raise UsageError("a version-1 record has no prekey, relays or capabilities")
    fields = _unsigned(
        params,
        version,
        account,
        device.sign_public,
        timestamp,
        timestamp + lifetime_ms,
        peer_ids,
        addrs,
        mailboxes,
        signed_prekey,
        relays,
        capabilities,
    )
    signature = device.sign(crypto.D_DEVICE_RECORD + encode_flat(fields))
    return decode_record(encode_flat([*fields, signature]), params)


def text_ok(v: object, version: int = RECORD_V2) -> bool:
    """A peer id or multiaddr as a record of ``version`` may carry it.
    v1: 1 to 160 printable characters (Python's ``str.isprintable``).  v2:
    1 to 160 visible ASCII characters (0x21-0x7e), which is all a peer id
    or a multiaddr ever holds, so that the rule is the same in every
    language and the worst-case size of a record is a plain sum (§16)."""
    if type(v) is not str or not 0 < len(v) <= MAX_TEXT:
        return False
    if version == RECORD_V1:
        return v.isprintable()
    return v.isascii() and v.isprintable() and " " not in v


def _texts(value: object, limit: int, what: str, version: int) -> tuple[str, ...]:
    if type(value) is not list or len(value) > limit:
        raise SchemaError(f"{what}: an array of at most {limit}")
    if not all(text_ok(v, version) for v in value):
        raise SchemaError(f"{what}: 1 to {MAX_TEXT} printable characters each")
    return tuple(value)


def _mailboxes(
    value: object, params: NetworkParams, version: int, account: bytes, device: bytes
) -> Mailboxes:
    """Each entry is [grant, [multiaddr...]]; the grant must be a mailbox's
    valid signature for this very account and device (PROTOCOL.md §16), in
    the grant format of this record version."""
    if type(value) is not list or len(value) > MAX_MAILBOXES:
        raise SchemaError(f"mailboxes: an array of at most {MAX_MAILBOXES}")
    out = []
    for entry in value:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not bytes:
            raise SchemaError("a mailbox entry is [grant, [addresses]]")
        grant = decode_grant(entry[0], params)
        if grant.version != _GRANT_VERSION[version]:
            raise SchemaError(
                f"a version-{version} record names version-{_GRANT_VERSION[version]} grants"
            )
        if grant.account != account or grant.device != device:
            raise SchemaError("a mailbox grant must name the record's account and device")
        out.append((entry[0], _texts(entry[1], MAX_MAILBOX_ADDRS, "mailbox addresses", version)))
    return tuple(out)


def _prekey(value: object) -> SignedPrekey | None:
    """``[]`` or ``[prekey_id uint32, x25519 bin(32)]``; the key must pass
    the X25519 checks of §3.3 (``InvalidKeyError``), as an event's would."""
    if type(value) is not list or len(value) not in (0, 2):
        raise SchemaError("a signed prekey is [] or [prekey_id, key]")
    if not value:
        return None
    prekey_id, public = value
    if type(prekey_id) is not int or not 0 <= prekey_id < PREKEY_ID_BOUND:
        raise SchemaError("a prekey id is an unsigned 32-bit integer")
    if type(public) is not bytes or len(public) != 32:
        raise SchemaError("a prekey is 32 bytes")
    crypto.check_x25519_public(public)
    return SignedPrekey(prekey_id, public)


def _capabilities(value: object) -> tuple[int, ...]:
    """At most 16 values below 2**16, strictly increasing: one encoding per
    set, so a record's bytes (and which of two records wins) do not depend
    on how its signer ordered them."""
    if type(value) is not list or len(value) > MAX_CAPABILITIES:
        raise SchemaError(f"capabilities: an array of at most {MAX_CAPABILITIES}")
    previous = -1
    for c in value:
        if type(c) is not int or not 0 <= c < CAPABILITY_BOUND:
            raise SchemaError(f"a capability is an integer below {CAPABILITY_BOUND}")
        if c <= previous:
            raise SchemaError("capabilities must be strictly increasing")
        previous = c
    return tuple(value)


def _signed_bytes(raw: bytes) -> bytes:
    """``D_DEVICE_RECORD`` and the canonical encoding of every element but
    the signature.  Both versions are fixarrays (11 and 14 elements, header
    0x90 + n) ending in the signature's 66 bytes (c4 40 + 64), so that
    encoding is the raw record with the header one less and the tail cut:
    no re-encoding (§2.1)."""
    return crypto.D_DEVICE_RECORD + bytes((raw[0] - 1,)) + raw[1:-_SIGNATURE_TAIL]


def decode_record(raw: bytes, params: NetworkParams, *, verify: bool = True) -> SignedDeviceRecord:
    """Structure and (unless ``verify`` is False) signature; not the
    acceptance rules (``RecordBook.offer``).  A caller that skips the
    signature here -- to drop stale copies before paying for a verification
    (PROTOCOL.md §11.7.2) -- MUST call ``verify_record`` before it trusts
    the record."""
    if len(raw) > MAX_RECORD_BYTES:
        raise SizeLimitError(f"a device record is at most {MAX_RECORD_BYTES} bytes")
    fields = decode_flat(raw, MAX_RECORD_BYTES)
    if type(fields) is not list or len(fields) < 3:
        raise SchemaError("a device record is an array [version, suite, network, ...]")
    # The version first: an unknown one is dropped without blame by a relay
    # (§11.7.2), so a later format may change everything after
    # [version, suite, network].  For version 1, the checks it always made.
    version = fields[0]
    if type(version) is not int or version not in _FIELDS:
        raise UnsupportedVersionError(f"record format {version!r} is not known here")
    if version == RECORD_V1 and len(raw) > MAX_RECORD_V1_BYTES:
        raise SizeLimitError(f"a version-1 device record is at most {MAX_RECORD_V1_BYTES} bytes")
    if len(fields) != _FIELDS[version]:
        raise SchemaError(f"a version-{version} device record is an array of {_FIELDS[version]}")
    suite, network, account, device, ts, expires, peer_ids, addrs, boxes = fields[1:10]
    if not suite_known(params, suite):
        raise UnsupportedVersionError(f"record format {version}/{suite!r} is not known here")
    if network != params.network_id:
        raise WrongNetworkError(f"record is for network {network!r}")
    sig = fields[-1]
    for value, size, what in (
        (account, 32, "account"),
        (device, 32, "device"),
        (sig, 64, "signature"),
    ):
        if type(value) is not bytes or len(value) != size:
            raise SchemaError(f"{what} must be {size} bytes")
    if type(ts) is not int or type(expires) is not int or not ts < expires:
        raise BadTimestampError("a record's timestamps are integers and it expires after it starts")
    if (
        not params.min_timestamp_ms <= ts <= params.max_timestamp_ms
        or expires - ts > MAX_LIFETIME_MS
    ):
        raise BadTimestampError("record timestamps out of bounds")
    texts = (
        _texts(peer_ids, MAX_PEER_IDS, "peer ids", version),
        _texts(addrs, MAX_ADDRS, "addresses", version),
    )
    mailboxes = _mailboxes(boxes, params, version, account, device)
    common = (network, account, device, ts, expires, *texts, mailboxes, sig, raw)
    if version == RECORD_V1:
        record = SignedDeviceRecord(*common)
    else:
        record = SignedDeviceRecord(
            *common,
            RECORD_V2,
            _prekey(fields[10]),
            _texts(fields[11], MAX_RELAYS, "relays", version),
            _capabilities(fields[12]),
        )
    if verify:
        crypto.verify(device, _signed_bytes(raw), sig)
    return record


def verify_record(record: SignedDeviceRecord) -> None:
    """The signature of a record decoded with ``verify=False``."""
    crypto.verify(record.device, _signed_bytes(record.raw), record.signature)


class Offer(Enum):
    ACCEPTED = "accepted"
    STALE = "stale"  # we hold this record or a newer one: not an offence


#: ``is_active(account, device) -> bool`` in the receiver's own state
ActiveCheck = Callable[[bytes, bytes], bool]


class RecordBook:
    """The newest valid record per (account, device), indexed by account."""

    def __init__(self, params: NetworkParams, max_records: int = 100_000) -> None:
        self.params = params
        self.max_records = max_records
        self._records: dict[tuple[bytes, bytes], SignedDeviceRecord] = {}
        self._by_account: dict[bytes, dict[bytes, SignedDeviceRecord]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def offer(
        self, raw: bytes, is_active: ActiveCheck, now_ms: int
    ) -> tuple[Offer, SignedDeviceRecord]:
        return self.admit(decode_record(raw, self.params), is_active, now_ms)

    def is_stale(self, record: SignedDeviceRecord) -> bool:
        """We hold this record or a newer one of its device (newest wins)."""
        held = self._records.get(record.key)
        return held is not None and (held.timestamp, held.raw) >= (record.timestamp, record.raw)

    def admit(
        self, record: SignedDeviceRecord, is_active: ActiveCheck, now_ms: int
    ) -> tuple[Offer, SignedDeviceRecord]:
        """The acceptance rules (PROTOCOL.md §16) for a record whose
        structure and signature were checked."""
        if record.timestamp > now_ms + MAX_SKEW_MS:
            raise BadTimestampError("record timestamp is ahead of our clock by more than the skew")
        if record.expires <= now_ms:
            raise BadTimestampError("record has expired")
        if not is_active(record.account, record.device):
            raise UnauthorisedError("record signed by a device that is not active here")
        held = self._records.get(record.key)
        if held is not None and (held.timestamp, held.raw) >= (record.timestamp, record.raw):
            return Offer.STALE, held
        if held is None and len(self._records) >= self.max_records:
            return Offer.STALE, record  # full: keep what we have; the sender will retry
        self._records[record.key] = record
        self._by_account.setdefault(record.account, {})[record.device] = record
        return Offer.ACCEPTED, record

    def _remove(self, record: SignedDeviceRecord) -> None:
        del self._records[record.key]
        devices = self._by_account[record.account]
        del devices[record.device]
        if not devices:
            del self._by_account[record.account]

    def prune(self, is_active: ActiveCheck, now_ms: int) -> list[SignedDeviceRecord]:
        """Drop expired records and those of devices no longer active."""
        dropped = [
            r
            for r in self._records.values()
            if r.expires <= now_ms or not is_active(r.account, r.device)
        ]
        for r in dropped:
            self._remove(r)
        return dropped

    def prune_account(
        self, account: bytes, is_active: ActiveCheck, now_ms: int
    ) -> list[SignedDeviceRecord]:
        """``prune`` for one account: after its state changed."""
        dropped = [
            r
            for r in self._by_account.get(account, {}).values()
            if r.expires <= now_ms or not is_active(r.account, r.device)
        ]
        for r in dropped:
            self._remove(r)
        return sorted(dropped, key=lambda r: r.device)

    def has_account(self, account: bytes) -> bool:
        return account in self._by_account

    def get(self, account: bytes, device: bytes) -> SignedDeviceRecord | None:
        return self._records.get((account, device))

    def for_account(self, account: bytes) -> list[SignedDeviceRecord]:
        return sorted(self._by_account.get(account, {}).values(), key=lambda r: r.device)

    def __iter__(self) -> Iterator[SignedDeviceRecord]:
        return iter(sorted(self._records.values(), key=lambda r: r.key))
