"""Signed device records: soft state beside the log (PROTOCOL.md §16).

A device publishes where it can be reached (libp2p peer ids and
multiaddrs; later mailbox grants and prekeys) in a record it signs.  Records
are not events: the newest one per device wins, each expires, and a node
accepts one only from a device that is active in the node's *own* view of
the account, with a timestamp no further ahead of the node's clock than the
allowed skew.  When a device stops being active its records are dropped.

Wire form, canonical MessagePack:

    [version, suite, network, account, device, timestamp, expires,
     peer_ids, addrs, signature]

The signature is Ed25519 by ``device`` over ``D_DEVICE_RECORD`` followed by
the canonical encoding of the first nine elements as an array.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    BadTimestampError,
    SchemaError,
    SizeLimitError,
    UnauthorisedError,
    UnsupportedVersionError,
    WrongNetworkError,
)
from protocol.core.keys import DeviceKeys
from protocol.core.params import FORMAT_VERSION, SUITE_V1, NetworkParams
from protocol.records.grant import decode_grant

MAX_RECORD_BYTES = 2048
MAX_PEER_IDS = 4
MAX_ADDRS = 8
MAX_TEXT = 160
#: how far a record's timestamp may be ahead of the receiver's clock
MAX_SKEW_MS = 5 * 60 * 1000
#: longest validity a record may claim
MAX_LIFETIME_MS = 30 * 24 * 3600 * 1000
FIELDS = 11
#: mailboxes a record may name, and addresses per mailbox
MAX_MAILBOXES = 2
MAX_MAILBOX_ADDRS = 2


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
    mailboxes: tuple[tuple[bytes, tuple[str, ...]], ...]
    signature: bytes
    raw: bytes

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.account, self.device)


def _unsigned(
    network: str,
    account: bytes,
    device: bytes,
    timestamp: int,
    expires: int,
    peer_ids: tuple[str, ...],
    addrs: tuple[str, ...],
    mailboxes: tuple[tuple[bytes, tuple[str, ...]], ...],
) -> list[object]:
    return [
        FORMAT_VERSION,
        SUITE_V1,
        network,
        account,
        device,
        timestamp,
        expires,
        list(peer_ids),
        list(addrs),
        [[grant, list(mb_addrs)] for grant, mb_addrs in mailboxes],
    ]


def make_record(
    params: NetworkParams,
    account: bytes,
    device: DeviceKeys,
    *,
    timestamp: int,
    lifetime_ms: int,
    peer_ids: tuple[str, ...],
    addrs: tuple[str, ...],
    mailboxes: tuple[tuple[bytes, tuple[str, ...]], ...] = (),
) -> SignedDeviceRecord:
    fields = _unsigned(
        params.network_id,
        account,
        device.sign_public,
        timestamp,
        timestamp + lifetime_ms,
        peer_ids,
        addrs,
        mailboxes,
    )
    signature = device.sign(crypto.D_DEVICE_RECORD + encode_flat(fields))
    return decode_record(encode_flat([*fields, signature]), params)


def _texts(value: object, limit: int, what: str) -> tuple[str, ...]:
    if type(value) is not list or len(value) > limit:
        raise SchemaError(f"{what}: an array of at most {limit}")
    for v in value:
        if type(v) is not str or not 0 < len(v) <= MAX_TEXT or not v.isprintable():
            raise SchemaError(f"{what}: printable strings of at most {MAX_TEXT} characters")
    return tuple(value)


def _mailboxes(
    value: object, params: NetworkParams, account: bytes, device: bytes
) -> tuple[tuple[bytes, tuple[str, ...]], ...]:
    """Each entry is [grant, [multiaddr...]]; the grant must be a mailbox's
    valid signature for this very account and device (PROTOCOL.md §16)."""
    if type(value) is not list or len(value) > MAX_MAILBOXES:
        raise SchemaError(f"mailboxes: an array of at most {MAX_MAILBOXES}")
    out = []
    for entry in value:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not bytes:
            raise SchemaError("a mailbox entry is [grant, [addresses]]")
        grant = decode_grant(entry[0], params)
        if grant.account != account or grant.device != device:
            raise SchemaError("a mailbox grant must name the record's account and device")
        out.append((entry[0], _texts(entry[1], MAX_MAILBOX_ADDRS, "mailbox addresses")))
    return tuple(out)


def decode_record(raw: bytes, params: NetworkParams, *, verify: bool = True) -> SignedDeviceRecord:
    """Structure and (unless ``verify`` is False) signature; not the
    acceptance rules (``RecordBook.offer``).  A caller that skips the
    signature here -- to drop stale copies before paying for a verification
    (PROTOCOL.md §11.7.2) -- MUST call ``verify_record`` before it trusts
    the record."""
    if len(raw) > MAX_RECORD_BYTES:
        raise SizeLimitError(f"a device record is at most {MAX_RECORD_BYTES} bytes")
    fields = decode_flat(raw, MAX_RECORD_BYTES)
    if type(fields) is not list or len(fields) != FIELDS:
        raise SchemaError(f"a device record is an array of {FIELDS}")
    version, suite, network, account, device, ts, expires, peer_ids, addrs, boxes, sig = fields
    if version != FORMAT_VERSION or suite != SUITE_V1 or type(version) is not int:
        raise UnsupportedVersionError(f"record format {version}/{suite} is not known here")
    if network != params.network_id:
        raise WrongNetworkError(f"record is for network {network!r}")
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
    record = SignedDeviceRecord(
        network,
        account,
        device,
        ts,
        expires,
        _texts(peer_ids, MAX_PEER_IDS, "peer ids"),
        _texts(addrs, MAX_ADDRS, "addresses"),
        _mailboxes(boxes, params, account, device),
        sig,
        raw,
    )
    if verify:
        crypto.verify(device, crypto.D_DEVICE_RECORD + encode_flat(fields[:-1]), sig)
    return record


def verify_record(record: SignedDeviceRecord) -> None:
    """The signature of a record decoded with ``verify=False``.  The decoded
    form was canonical, so re-encoding the fields gives the signed bytes."""
    unsigned = _unsigned(
        record.network,
        record.account,
        record.device,
        record.timestamp,
        record.expires,
        record.peer_ids,
        record.addrs,
        record.mailboxes,
    )
    crypto.verify(record.device, crypto.D_DEVICE_RECORD + encode_flat(unsigned), record.signature)


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
