"""Prekeys for setting up sessions (PROTOCOL.md §19.2, §19.3).

A device has one **signed prekey** at a time, published in its device
record v2 (``signed_prekey``, §16.2; the record's signature covers it), and
batches of **one-time prekeys**.  A batch is signed once by the device key,
over the root of a Merkle tree of its keys, so that each one-time prekey can
be handed to a fetcher on its own with a short proof (``PrekeyProof``)
that it belongs to a batch the device signed::

    batch  = [1, suite, network, account, device, first_id, expires, [key...], signature]
    signed = D_PREKEY_BATCH ‖ enc([1, suite, network, account, device, first_id,
                                   count, expires, root])

The device keeps the secrets in a ``PrekeyStore``: one-time secrets are
taken once (``take_one_time``); a second set-up naming the same one gets
``PrekeyReusedError`` until the batch expires, so the sender fetches a
fresh bundle.  Pure: secrets come in as bytes, time as a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    BadSignatureError,
    SchemaError,
    UnsupportedVersionError,
    WrongNetworkError,
)
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.keys import DeviceKeys
from protocol.core.params import NetworkParams, check_suite
from protocol.messaging.ratchet import MAX_COUNTER, x25519_public
from protocol.messaging.session_errors import (
    PrekeyError,
    PrekeyExpiredError,
    PrekeyReusedError,
    SessionUsageError,
    UnknownPrekeyError,
)

D_PREKEY_BATCH = b"smu/prekey-batch/v1\x00"
D_PREKEY_LEAF = b"smu/prekey-leaf/v1\x00"
D_PREKEY_NODE = b"smu/prekey-node/v1\x00"
BATCH_VERSION = 1
#: keys per batch: a power of two, so the tree is complete (§19.2)
MAX_BATCH_KEYS = 128
#: the batch a device makes: 64 keys, a 6-hash proof per key
BATCH_KEYS = 64
#: a batch lives at most this long; its spent ids are kept as long
MAX_BATCH_LIFETIME_MS = 35 * 24 * 3600 * 1000
#: a superseded signed prekey stays usable this long: the longest life of
#: the record that named it (§16.2), plus the record skew
SIGNED_PREKEY_GRACE_MS = 30 * 24 * 3600 * 1000 + 5 * 60 * 1000
#: whole encodings, checked before parsing
MAX_BATCH_BYTES = 4800
MAX_PROOF_BYTES = 640
#: the device's own store (§19.3): entries per list, and its whole encoding
STORE_VERSION = 1
MAX_STORE_ENTRIES = 65_536
MAX_STORE_BYTES = 4 * 1024 * 1024


def _leaf(prekey_id: int, key: bytes) -> bytes:
    return crypto.hash32(D_PREKEY_LEAF, prekey_id.to_bytes(4, "big") + key)


def _node(left: bytes, right: bytes) -> bytes:
    return crypto.hash32(D_PREKEY_NODE, left + right)


def _levels(first_id: int, keys: Sequence[bytes]) -> list[list[bytes]]:
    level = [_leaf(first_id + i, k) for i, k in enumerate(keys)]
    out = [level]
    while len(level) > 1:
        level = [_node(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        out.append(level)
    return out


def _power_of_two(n: int) -> bool:
    return 0 < n <= MAX_BATCH_KEYS and n & (n - 1) == 0


def batch_message(
    params: NetworkParams,
    account: bytes,
    device: bytes,
    first_id: int,
    count: int,
    expires: int,
    root: bytes,
) -> bytes:
    """What the device key signs (§19.2)."""
    return D_PREKEY_BATCH + encode_flat(
        [BATCH_VERSION, params.suite, params.network_id, account, device, first_id, count,
         expires, root]
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class OneTimePrekey:
    """A verified one-time prekey of a device."""

    prekey_id: int
    key: bytes
    expires: int


@dataclass(frozen=True, slots=True)
class PrekeyProof:
    """One key of a signed batch, with its Merkle path (leaf to root)."""

    account: bytes
    device: bytes
    first_id: int
    count: int
    expires: int
    signature: bytes
    index: int
    key: bytes
    path: tuple[bytes, ...]

    def encode(self, params: NetworkParams) -> bytes:
        return encode_flat(
            [BATCH_VERSION, params.suite, params.network_id, self.account, self.device,
             self.first_id, self.count, self.expires, self.signature, self.index, self.key,
             list(self.path)]
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PrekeyBatch:
    account: bytes
    device: bytes
    first_id: int
    expires: int
    keys: tuple[bytes, ...]
    signature: bytes

    def encode(self, params: NetworkParams) -> bytes:
        return encode_flat(
            [BATCH_VERSION, params.suite, params.network_id, self.account, self.device,
             self.first_id, self.expires, list(self.keys), self.signature]
        )  # fmt: skip

    @property
    def root(self) -> bytes:
        return _levels(self.first_id, self.keys)[-1][0]

    def proof(self, index: int) -> PrekeyProof:
        """The proof a device's node or mailbox hands a fetcher for one key."""
        if not 0 <= index < len(self.keys):
            raise SessionUsageError("no such key in the batch")
        path, i = [], index
        for level in _levels(self.first_id, self.keys)[:-1]:
            path.append(level[i ^ 1])
            i //= 2
        return PrekeyProof(
            self.account, self.device, self.first_id, len(self.keys), self.expires,
            self.signature, index, self.keys[index], tuple(path),
        )  # fmt: skip


def make_batch(
    params: NetworkParams,
    keys: DeviceKeys,
    account: bytes,
    first_id: int,
    expires: int,
    secrets: Sequence[bytes],
) -> PrekeyBatch:
    """Sign a batch of one-time prekeys from fresh 32-byte secrets."""
    if not _power_of_two(len(secrets)):
        raise SessionUsageError(f"a batch holds a power of two keys, at most {MAX_BATCH_KEYS}")
    if first_id + len(secrets) - 1 > MAX_COUNTER:
        raise SessionUsageError("prekey ids are below 2^32")
    publics = tuple(x25519_public(s) for s in secrets)
    root = _levels(first_id, publics)[-1][0]
    msg = batch_message(params, account, keys.sign_public, first_id, len(publics), expires, root)
    return PrekeyBatch(account, keys.sign_public, first_id, expires, publics, keys.sign(msg))


def _head(params: NetworkParams, value: object, size: int, what: str) -> list[object]:
    if type(value) is not list or len(value) < 3 or type(value[0]) is not int:
        raise SchemaError(f"a {what} is an array starting with its version")
    if value[0] != BATCH_VERSION:
        raise UnsupportedVersionError(f"unknown {what} version")
    if len(value) != size:
        raise SchemaError(f"a {what} has {size} elements")
    check_suite(params, value[1], what)
    if value[2] != params.network_id:
        raise WrongNetworkError(f"a {what} of another network")
    return value


def _id_range(first_id: object, count: int) -> int:
    fid = _uint(first_id, "first prekey id")
    if fid + count - 1 > MAX_COUNTER:
        raise SchemaError("prekey ids are below 2^32")
    return fid


def _check_expiry(expires: int, now_ms: int) -> None:
    if expires <= now_ms:
        raise PrekeyExpiredError("the prekey batch has expired")
    if expires > now_ms + MAX_BATCH_LIFETIME_MS:
        raise PrekeyError("the prekey batch claims too long a life")


def _verify(params: NetworkParams, device: bytes, msg: bytes, signature: bytes) -> None:
    try:
        crypto.verify(device, msg, signature)
    except BadSignatureError as exc:
        raise PrekeyError("the prekey batch is not signed by its device") from exc


def decode_batch(
    params: NetworkParams, raw: bytes, account: bytes, device: bytes, now_ms: int
) -> PrekeyBatch:
    """A batch that ``device`` of ``account`` signed, valid at ``now_ms``
    (§19.2, checks in this order)."""
    v = _head(params, decode_flat(raw, MAX_BATCH_BYTES), 9, "prekey batch")
    if _bin(v[3], 32, "account") != account or _bin(v[4], 32, "device") != device:
        raise PrekeyError("a prekey batch of another device")
    if type(v[7]) is not list or not _power_of_two(len(v[7])):
        raise SchemaError(f"a batch holds a power of two keys, at most {MAX_BATCH_KEYS}")
    first_id = _id_range(v[5], len(v[7]))
    expires = _uint(v[6], "expiry")
    publics = tuple(_bin(k, 32, "prekey") for k in v[7])
    for k in publics:
        crypto.check_x25519_public(k)
    if len(set(publics)) != len(publics):
        raise SchemaError("a batch's keys are distinct")
    signature = _bin(v[8], 64, "signature")
    _check_expiry(expires, now_ms)
    root = _levels(first_id, publics)[-1][0]
    _verify(params, device, batch_message(params, account, device, first_id, len(publics),
                                          expires, root), signature)  # fmt: skip
    return PrekeyBatch(account, device, first_id, expires, publics, signature)


def verify_proof(
    params: NetworkParams, raw: bytes, account: bytes, device: bytes, now_ms: int
) -> OneTimePrekey:
    """A one-time prekey handed out for ``device`` of ``account``: its
    path leads to a root the device signed (§19.2, checks in this order)."""
    v = _head(params, decode_flat(raw, MAX_PROOF_BYTES), 12, "prekey proof")
    if _bin(v[3], 32, "account") != account or _bin(v[4], 32, "device") != device:
        raise PrekeyError("a prekey of another device")
    count = _uint(v[6], "count")
    if not _power_of_two(count):
        raise SchemaError(f"a batch holds a power of two keys, at most {MAX_BATCH_KEYS}")
    first_id = _id_range(v[5], count)
    expires = _uint(v[7], "expiry")
    signature = _bin(v[8], 64, "signature")
    index = _uint(v[9], "index")
    if index >= count:
        raise SchemaError("the index is outside the batch")
    key = _bin(v[10], 32, "prekey")
    crypto.check_x25519_public(key)
    if type(v[11]) is not list or len(v[11]) != count.bit_length() - 1:
        raise SchemaError("the path has one hash per level of the tree")
    node, i = _leaf(first_id + index, key), index
    for sibling in v[11]:
        s = _bin(sibling, 32, "path hash")
        node = _node(s, node) if i & 1 else _node(node, s)
        i //= 2
    _check_expiry(expires, now_ms)
    _verify(params, device, batch_message(params, account, device, first_id, count, expires,
                                          node), signature)  # fmt: skip
    return OneTimePrekey(first_id + index, key, expires)


# -- the device's secrets (§19.3) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrekeyStore:
    """A device's prekey secrets.  Never changed in place: each operation
    returns a new store, which the caller commits with the session that
    used it (so a set-up that fails spends nothing)."""

    #: signed prekey id -> (secret, usable until; 0 = current, no end yet)
    signed: Mapping[int, tuple[bytes, int]] = field(default_factory=dict, repr=False)
    #: one-time prekey id -> (secret, expires)
    one_time: Mapping[int, tuple[bytes, int]] = field(default_factory=dict, repr=False)
    #: one-time prekey id -> expires: used ones, remembered until expiry
    spent: Mapping[int, int] = field(default_factory=dict)

    def with_signed(self, prekey_id: int, secret: bytes, now_ms: int) -> PrekeyStore:
        """A new current signed prekey; the earlier ones stay usable for
        ``SIGNED_PREKEY_GRACE_MS``, as long as a record naming them can."""
        if prekey_id in self.signed:
            raise SessionUsageError("signed prekey ids are not reused")
        signed = {
            i: (s, until or now_ms + SIGNED_PREKEY_GRACE_MS)
            for i, (s, until) in self.signed.items()
        }
        signed[prekey_id] = (secret, 0)
        return replace(self, signed=signed)

    def with_batch(self, first_id: int, expires: int, secrets: Sequence[bytes]) -> PrekeyStore:
        one_time = dict(self.one_time)
        for i, s in enumerate(secrets):
            if first_id + i in one_time or first_id + i in self.spent:
                raise SessionUsageError("one-time prekey ids are not reused")
            one_time[first_id + i] = (s, expires)
        return replace(self, one_time=one_time)

    def signed_secret(self, prekey_id: int, now_ms: int) -> bytes:
        entry = self.signed.get(prekey_id)
        if entry is None or (entry[1] and entry[1] <= now_ms):
            raise UnknownPrekeyError("no such signed prekey (or retired)")
        return entry[0]

    def take_one_time(self, prekey_id: int, now_ms: int) -> tuple[bytes, PrekeyStore]:
        """The secret, and the store in which it is spent."""
        if prekey_id in self.spent:
            raise PrekeyReusedError("this one-time prekey was used already")
        entry = self.one_time.get(prekey_id)
        if entry is None:
            raise UnknownPrekeyError("no such one-time prekey")
        secret, expires = entry
        if expires <= now_ms:
            raise PrekeyExpiredError("this one-time prekey has expired")
        one_time = {i: e for i, e in self.one_time.items() if i != prekey_id}
        return secret, replace(self, one_time=one_time, spent={**self.spent, prekey_id: expires})

    def encode(self) -> bytes:
        """The store as the device keeps it (local, §19.3): every map sorted by id."""
        return encode_flat(
            [STORE_VERSION,
             [[i, sec, t] for i, (sec, t) in sorted(self.signed.items())],
             [[i, sec, t] for i, (sec, t) in sorted(self.one_time.items())],
             [[i, t] for i, t in sorted(self.spent.items())]]
        )  # fmt: skip

    @classmethod
    def decode(cls, raw: bytes) -> PrekeyStore:
        v = decode_flat(raw, MAX_STORE_BYTES)
        if type(v) is not list or len(v) != 4 or type(v[0]) is not int or v[0] != STORE_VERSION:
            raise SchemaError("a prekey store is [1, signed, one_time, spent]")
        if any(type(x) is not list or len(x) > MAX_STORE_ENTRIES for x in v[1:]):
            raise SchemaError("a prekey store's lists are bounded")

        def entries(items: list[object]) -> dict[int, tuple[bytes, int]]:
            out: dict[int, tuple[bytes, int]] = {}
            for e in items:
                if type(e) is not list or len(e) != 3:
                    raise SchemaError("a stored prekey is [id, secret, time]")
                out[_uint(e[0], "id")] = (_bin(e[1], 32, "secret"), _uint(e[2], "time"))
            return out

        spent: dict[int, int] = {}
        for e in v[3]:
            if type(e) is not list or len(e) != 2:
                raise SchemaError("a spent prekey is [id, expires]")
            spent[_uint(e[0], "id")] = _uint(e[1], "expires")
        return cls(entries(v[1]), entries(v[2]), spent)

    def pruned(self, now_ms: int) -> PrekeyStore:
        """Without expired one-time keys, spent ids or retired signed keys."""
        return PrekeyStore(
            {i: e for i, e in self.signed.items() if not e[1] or e[1] > now_ms},
            {i: e for i, e in self.one_time.items() if e[1] > now_ms},
            {i: e for i, e in self.spent.items() if e > now_ms},
        )


__all__ = [
    "BATCH_KEYS",
    "D_PREKEY_BATCH",
    "OneTimePrekey",
    "PrekeyBatch",
    "PrekeyProof",
    "PrekeyStore",
    "batch_message",
    "decode_batch",
    "make_batch",
    "verify_proof",
]
