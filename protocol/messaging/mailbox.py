"""Store-and-forward mailboxes, sans-I/O (PROTOCOL.md §15.10-§15.13).

A mailbox node holds envelopes for devices that are offline.  It holds only
ciphertext: it cannot read an envelope or check who sent it; it checks
sizes, the clear header's shape (``envelope.peek``) and the recipient's
grant.  The envelope's own replay protection (§15.6) is what keeps a
mailbox that drops, reorders or replays envelopes from making a message
appear twice or from someone else.

The ``Mailbox`` follows the machine contract (``core.machine``, §18):
every entry point takes one ``Now``; ``handle`` answers every request frame
with outputs (``Send`` of the answer, and ``Misbehaved`` when it refused
the request), never with an exception; ``tick(now)`` at ``next_deadline()``
(monotonic seconds) drops what has expired and reports ``Expired``.

Mailbox side (stream ``/smu/mailbox/1``, one request frame, one answer)::

    box = Mailbox(params, MailboxIdentity(seed32), peer_id=my_peer_id,
                  grant_policy=lambda account, device: <active in my replica?>)
    grant = box.issue_grant(account, device, now=now)   # e.g. the node's own devices
    outs = box.handle(frame, peer=remote_peer_id, now=now, random16=os.urandom(16))
    # [Send(peer, answer)] (+ Misbehaved(peer, error)): write it, close the stream
    box.tick(now)                 # at box.next_deadline()

Device side (``mailbox_client.MailboxClient`` decides when)::

    frame = grant_request(params, keys, account, mailbox_key, now_ms)  # -> Granted
    grant = decode_grant(granted.grant, params)  # check valid_for before naming it
    frame = challenge_request(device_key)      # -> ChallengeIssued(nonce, expires)
    frame = fetch_request(params, keys, grant.mailbox_key, nonce, limit=100)  # -> Items
    answer = decode_answer(raw_answer)         # Items / Deleted / Granted / Refused ...
    # open each envelope, persist it, then (new challenge) delete_request(... ids ...)

Any peer deposits with ``deposit_request(device, envelope_raw)``; the peer
id the node passes to ``handle`` is opaque here and only counts quotas.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import nacl.bindings as sodium

from protocol.core import crypto
from protocol.core.canonical import decode_flat, encode_flat
from protocol.core.errors import (
    BadTimestampError,
    InvalidInput,
    LimitExceededError,
    SchemaError,
    UnsupportedVersionError,
    UsageError,
)
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.keys import DeviceKeys
from protocol.core.machine import Misbehaved, Now, Send
from protocol.core.params import NetworkParams
from protocol.messaging.envelope import MAX_ENVELOPE_BYTES, peek
from protocol.records.grant import (
    D_MAILBOX_GRANT,
    GRANT_V2,
    MAX_GRANT_BYTES,
    Grant,
    check_peer_id,
    decode_grant,
    grant_fields,
)

PROTOCOL_ID = "/smu/mailbox/1"
WIRE_VERSION = 1

D_MAILBOX_AUTH = b"smu/mailbox-auth/v1\x00"
D_MAILBOX_ITEM = b"smu/mailbox-item/v1\x00"

ITEM_ID_BYTES = 16
NONCE_BYTES = 16
#: a request frame: one envelope plus a little framing
MAX_REQUEST_BYTES = MAX_ENVELOPE_BYTES + 256
MAX_FETCH = 256
#: an ITEMS answer stops adding envelopes past this (it holds at least one)
MAX_ANSWER_BYTES = 8 * 1024 * 1024
MAX_ANSWER_FRAME = MAX_ANSWER_BYTES + MAX_ENVELOPE_BYTES + 64 * 1024
#: open challenges per device; a new one pushes out the oldest
CHALLENGES_PER_DEVICE = 4
#: how far a grant request's timestamp may be from the mailbox's clock
GRANT_REQUEST_SKEW_MS = 5 * 60 * 1000
MAX_DELETE = 1024
CHALLENGE_TTL_MS = 60_000


class MailboxError(InvalidInput):
    code = "mailbox"


class NoGrantError(MailboxError):
    """No (unexpired) grant for that device here."""

    code = "no_grant"


class QuotaExceededError(LimitExceededError):
    code = "quota"


class GrantRefusedError(MailboxError):
    """This mailbox's policy does not serve that device."""

    code = "grant_refused"


class ChallengeError(MailboxError):
    """Unknown, expired, already used, or issued for another device."""

    code = "challenge"


class MailboxIdentity:
    """The mailbox's dedicated Ed25519 key (not the node's libp2p key)."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise UsageError("a mailbox seed is 32 bytes")
        pk, sk = sodium.crypto_sign_seed_keypair(seed)
        self.public = bytes(pk)
        self._secret = bytes(sk)

    def sign(self, message: bytes) -> bytes:
        return crypto.sign(self._secret, message)


# --------------------------------------------------------------------------
# Device authentication (§15.12)


class Op(IntEnum):
    FETCH = 1
    DELETE = 2
    GRANT = 3


def auth_message(
    network: str, mailbox_key: bytes, op: Op, device: bytes, nonce: bytes, args: list[object]
) -> bytes:
    """What a device signs to fetch or delete: bound to the mailbox and the nonce."""
    return D_MAILBOX_AUTH + encode_flat([network, mailbox_key, int(op), device, nonce, args])


# --------------------------------------------------------------------------
# Frames (§15.13): [version, type, ...fields]


class Frame(IntEnum):
    DEPOSIT = 1  # [device, envelope]
    CHALLENGE_REQUEST = 2  # [device]
    FETCH = 3  # [device, nonce, limit, signature]
    DELETE = 4  # [device, nonce, [item ids], signature]
    GRANT_REQUEST = 5  # [account, device, timestamp, signature]
    DEPOSITED = 16  # [item id]
    CHALLENGE = 17  # [nonce, expires]
    ITEMS = 18  # [[item id, deposited at, envelope], ...]
    DELETED = 19  # [count]
    GRANTED = 20  # [grant]
    ERROR = 31  # [code, message]


@dataclass(frozen=True, slots=True)
class Item:
    item_id: bytes
    deposited_at: int
    envelope: bytes


@dataclass(frozen=True, slots=True)
class Deposited:
    item_id: bytes


@dataclass(frozen=True, slots=True)
class ChallengeIssued:
    nonce: bytes
    expires: int


@dataclass(frozen=True, slots=True)
class Items:
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class Deleted:
    count: int


@dataclass(frozen=True, slots=True)
class Granted:
    #: check with ``decode_grant`` and ``Grant.valid_for`` before use
    grant: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    code: str
    message: str


Answer = Deposited | ChallengeIssued | Items | Deleted | Granted | Refused


def _frame(t: Frame, *fields: object) -> bytes:
    return encode_flat([WIRE_VERSION, int(t), *fields])


def deposit_request(device: bytes, envelope: bytes) -> bytes:
    return _frame(Frame.DEPOSIT, device, envelope)


def challenge_request(device: bytes) -> bytes:
    return _frame(Frame.CHALLENGE_REQUEST, device)


def fetch_request(
    params: NetworkParams, me: DeviceKeys, mailbox_key: bytes, nonce: bytes, limit: int
) -> bytes:
    msg = auth_message(params.network_id, mailbox_key, Op.FETCH, me.sign_public, nonce, [limit])
    return _frame(Frame.FETCH, me.sign_public, nonce, limit, me.sign(msg))


def delete_request(
    params: NetworkParams,
    me: DeviceKeys,
    mailbox_key: bytes,
    nonce: bytes,
    item_ids: list[bytes],
) -> bytes:
    ids = sorted(set(item_ids))
    msg = auth_message(params.network_id, mailbox_key, Op.DELETE, me.sign_public, nonce, [ids])
    return _frame(Frame.DELETE, me.sign_public, nonce, ids, me.sign(msg))


def grant_request(
    params: NetworkParams, me: DeviceKeys, account: bytes, mailbox_key: bytes, now_ms: int
) -> bytes:
    """Ask a mailbox for a grant; proves possession of the device key."""
    msg = auth_message(
        params.network_id, mailbox_key, Op.GRANT, me.sign_public, b"", [account, now_ms]
    )
    return _frame(Frame.GRANT_REQUEST, account, me.sign_public, now_ms, me.sign(msg))


def _split(raw: bytes, max_size: int) -> tuple[Frame, list[object]]:
    f = decode_flat(raw, max_size)
    if type(f) is not list or len(f) < 2 or type(f[0]) is not int or type(f[1]) is not int:
        raise SchemaError("a frame is [version, type, ...]")
    if f[0] != WIRE_VERSION:
        raise UnsupportedVersionError(f"mailbox wire version {f[0]} is not known here")
    try:
        return Frame(f[1]), f[2:]
    except ValueError as exc:
        raise SchemaError(f"unknown frame type {f[1]}") from exc


def _arity(fields: list[object], n: int, what: str) -> None:
    if len(fields) != n:
        raise SchemaError(f"{what} has {n} fields")


def decode_answer(raw: bytes) -> Answer:
    """The client's decoder of a mailbox's answer."""
    t, f = _split(raw, MAX_ANSWER_FRAME)
    if t is Frame.DEPOSITED:
        _arity(f, 1, "deposited")
        return Deposited(_bin(f[0], ITEM_ID_BYTES, "item id"))
    if t is Frame.CHALLENGE:
        _arity(f, 2, "challenge")
        return ChallengeIssued(_bin(f[0], NONCE_BYTES, "nonce"), _uint(f[1], "expires"))
    if t is Frame.ITEMS:
        _arity(f, 1, "items")
        rows = f[0]
        if type(rows) is not list or len(rows) > MAX_FETCH:
            raise SchemaError(f"at most {MAX_FETCH} items")
        items = []
        for r in rows:
            if type(r) is not list or len(r) != 3 or type(r[2]) is not bytes:
                raise SchemaError("an item is [id, deposited at, envelope]")
            if len(r[2]) > MAX_ENVELOPE_BYTES:
                raise SchemaError("item larger than an envelope")
            items.append(Item(_bin(r[0], ITEM_ID_BYTES, "item id"), _uint(r[1], "time"), r[2]))
        return Items(tuple(items))
    if t is Frame.DELETED:
        _arity(f, 1, "deleted")
        return Deleted(_uint(f[0], "count"))
    if t is Frame.GRANTED:
        _arity(f, 1, "granted")
        if type(f[0]) is not bytes or len(f[0]) > MAX_GRANT_BYTES:
            raise SchemaError("a grant is bin")
        return Granted(f[0])
    if t is Frame.ERROR:
        _arity(f, 2, "error")
        if type(f[0]) is not str or type(f[1]) is not str or len(f[0]) + len(f[1]) > 512:
            raise SchemaError("an error is [code, message]")
        return Refused(f[0], f[1])
    raise SchemaError(f"{t.name} is not an answer")


# --------------------------------------------------------------------------
# The mailbox machine (§15.12)


@dataclass(frozen=True, slots=True)
class Expired:
    """``tick`` dropped ``items`` held too long and ``grants`` expired with
    nothing left under them."""

    items: int
    grants: int


#: what ``Mailbox.handle`` and ``Mailbox.tick`` return
MailboxOutput = Send | Misbehaved | Expired


@dataclass(frozen=True, slots=True)
class MailboxLimits:
    #: defaults of a grant
    quota_bytes: int = 64 * 1024 * 1024
    quota_count: int = 10_000
    grant_lifetime_ms: int = 30 * 24 * 3600 * 1000
    #: what one depositing peer may hold here, over all devices
    peer_bytes: int = 16 * 1024 * 1024
    peer_count: int = 2_000
    #: an item not fetched and deleted within this is dropped
    item_ttl_ms: int = 14 * 24 * 3600 * 1000
    #: open challenges over all devices
    max_challenges: int = 10_000


@dataclass(slots=True)
class _Stored:
    item_id: bytes
    depositor: str
    deposited_at: int
    raw: bytes


@dataclass(slots=True)
class _Box:
    grant: Grant
    items: dict[bytes, _Stored] = field(default_factory=dict)  # insertion = deposit order
    used_bytes: int = 0


#: ``(account, device) -> bool``: serve this device?  E.g. "active in my replica"
GrantPolicy = Callable[[bytes, bytes], bool]


class Mailbox:
    """Holds envelopes for granted devices; every transition is a method here."""

    def __init__(
        self,
        params: NetworkParams,
        identity: MailboxIdentity,
        peer_id: str,
        limits: MailboxLimits | None = None,
        grant_policy: GrantPolicy | None = None,
    ) -> None:
        self.params = params
        #: decides GRANT_REQUESTs: ``(account, device) -> bool``; None refuses all
        self.grant_policy = grant_policy
        self.identity = identity
        self.peer_id = check_peer_id(peer_id)
        self.limits = limits or MailboxLimits()
        self._boxes: dict[bytes, _Box] = {}  # by device key
        self._peer_use: dict[str, tuple[int, int]] = {}  # peer -> (bytes, count)
        self._challenges: dict[bytes, tuple[bytes, int]] = {}  # nonce -> (device, expires)
        #: the last time an entry point was given, for ``next_deadline``
        self._now: Now | None = None

    # -- grants ------------------------------------------------------------

    def issue_grant(
        self,
        account: bytes,
        device: bytes,
        *,
        now: Now,
        quota_bytes: int | None = None,
        quota_count: int | None = None,
        lifetime_ms: int | None = None,
        token_key: bytes = b"",
    ) -> Grant:
        """Sign and install a grant (the node's policy decided to serve this
        device).  Always a v2 grant (§15.11), the only kind a v2 device record
        may name; ``token_key`` stays empty until deposit tokens exist."""
        self._now = now
        now_ms = now.wall_ms
        lim = self.limits
        fields = grant_fields(
            self.params,
            GRANT_V2,
            self.identity.public,
            self.peer_id,
            account,
            device,
            lim.quota_bytes if quota_bytes is None else quota_bytes,
            lim.quota_count if quota_count is None else quota_count,
            now_ms,
            now_ms + (lim.grant_lifetime_ms if lifetime_ms is None else lifetime_ms),
            token_key,
        )
        sig = self.identity.sign(D_MAILBOX_GRANT + encode_flat(fields))
        grant = decode_grant(encode_flat([*fields, sig]), self.params)
        box = self._boxes.get(device)
        if box is None:
            self._boxes[device] = _Box(grant)
        else:
            box.grant = grant
        return grant

    def grant_of(self, device: bytes) -> Grant | None:
        box = self._boxes.get(device)
        return box.grant if box else None

    def held(self, device: bytes) -> tuple[int, int]:
        """(bytes, count) held for a device."""
        box = self._boxes.get(device)
        return (box.used_bytes, len(box.items)) if box else (0, 0)

    # -- operations --------------------------------------------------------

    def deposit(self, device: bytes, envelope: bytes, peer: str, now: Now) -> bytes:
        """Store an envelope for ``device``; returns its item id (idempotent).
        A refusal raises its ``InvalidInput`` (``handle`` turns it into outputs)."""
        self._now = now
        box = self._boxes.get(device)
        if box is None or now.wall_ms >= box.grant.expires:
            raise NoGrantError("no current grant for that device here")
        header = peek(envelope, self.params)  # shape and size only
        if device not in header.devices:
            raise MailboxError("the envelope has no key wrap for that device")
        item_id = crypto.hash_with(D_MAILBOX_ITEM, device + envelope, ITEM_ID_BYTES)
        if item_id in box.items:
            return item_id
        size = len(envelope)
        g = box.grant
        if box.used_bytes + size > g.quota_bytes or len(box.items) + 1 > g.quota_count:
            raise QuotaExceededError("the device's mailbox is full")
        pbytes, pcount = self._peer_use.get(peer, (0, 0))
        if pbytes + size > self.limits.peer_bytes or pcount + 1 > self.limits.peer_count:
            raise QuotaExceededError("this peer holds too much here already")
        box.items[item_id] = _Stored(item_id, peer, now.wall_ms, envelope)
        box.used_bytes += size
        self._peer_use[peer] = (pbytes + size, pcount + 1)
        return item_id

    def challenge(self, device: bytes, nonce: bytes, now: Now) -> ChallengeIssued:
        """A single-use nonce for ``device`` (``nonce``: fresh random bytes)."""
        if len(nonce) != NONCE_BYTES:
            raise UsageError(f"a nonce is {NONCE_BYTES} random bytes")
        self._now = now
        if device not in self._boxes:
            raise NoGrantError("no grant for that device here")
        self._expire_challenges(now.wall_ms)
        mine = [n for n, (d, _) in self._challenges.items() if d == device]
        for n in mine[: max(0, len(mine) - CHALLENGES_PER_DEVICE + 1)]:
            del self._challenges[n]  # oldest first: dicts keep insertion order
        if len(self._challenges) >= self.limits.max_challenges:
            raise LimitExceededError("too many open challenges; retry later")
        expires = now.wall_ms + CHALLENGE_TTL_MS
        self._challenges[nonce] = (device, expires)
        return ChallengeIssued(nonce, expires)

    def _authenticate(
        self, op: Op, device: bytes, nonce: bytes, args: list[object], sig: bytes, now: Now
    ) -> _Box:
        self._now = now
        # The nonce is consumed by any attempt, good or bad: single use.
        entry = self._challenges.pop(nonce, None)
        if entry is None or entry[0] != device or now.wall_ms >= entry[1]:
            raise ChallengeError("challenge unknown, used, expired or for another device")
        box = self._boxes.get(device)
        if box is None:
            raise NoGrantError("no grant for that device here")
        msg = auth_message(self.params.network_id, self.identity.public, op, device, nonce, args)
        crypto.verify(device, msg, sig)
        return box

    def fetch(
        self, device: bytes, nonce: bytes, limit: int, signature: bytes, now: Now
    ) -> tuple[Item, ...]:
        box = self._authenticate(Op.FETCH, device, nonce, [limit], signature, now)
        out: list[Item] = []
        size = 0
        for s in box.items.values():
            if len(out) >= min(limit, MAX_FETCH) or (out and size + len(s.raw) > MAX_ANSWER_BYTES):
                break
            out.append(Item(s.item_id, s.deposited_at, s.raw))
            size += len(s.raw)
        return tuple(out)

    def delete(
        self, device: bytes, nonce: bytes, item_ids: list[bytes], signature: bytes, now: Now
    ) -> int:
        box = self._authenticate(Op.DELETE, device, nonce, [item_ids], signature, now)
        return sum(self._drop(box, i) for i in item_ids)

    def request_grant(
        self, account: bytes, device: bytes, timestamp: int, signature: bytes, now: Now
    ) -> Grant:
        """A device asks for a grant, signing a fresh timestamp (§15.11)."""
        self._now = now
        now_ms = now.wall_ms
        if abs(timestamp - now_ms) > GRANT_REQUEST_SKEW_MS:
            raise BadTimestampError("grant request timestamp too far from our clock")
        msg = auth_message(
            self.params.network_id,
            self.identity.public,
            Op.GRANT,
            device,
            b"",
            [account, timestamp],
        )
        crypto.verify(device, msg, signature)
        if self.grant_policy is None or not self.grant_policy(account, device):
            raise GrantRefusedError("this mailbox does not serve that device")
        held = self.grant_of(device)
        if (
            held is not None
            and held.account == account
            and now_ms < (held.issued + held.expires) // 2
        ):
            return held  # still in the first half of its life: no need for a new one
        return self.issue_grant(account, device, now=now)

    def _drop(self, box: _Box, item_id: bytes) -> int:
        s = box.items.pop(item_id, None)
        if s is None:
            return 0
        box.used_bytes -= len(s.raw)
        pb, pc = self._peer_use[s.depositor]
        if pc == 1:
            del self._peer_use[s.depositor]
        else:
            self._peer_use[s.depositor] = (pb - len(s.raw), pc - 1)
        return 1

    def _expire_challenges(self, now_ms: int) -> None:
        for n in [n for n, (_, exp) in self._challenges.items() if now_ms >= exp]:
            del self._challenges[n]

    def tick(self, now: Now) -> list[MailboxOutput]:
        """Drop old items, stale challenges, and expired grants with nothing
        left; ``[Expired(items, grants)]`` if any item or grant went."""
        self._now = now
        now_ms = now.wall_ms
        self._expire_challenges(now_ms)
        dropped = grants = 0
        ttl = self.limits.item_ttl_ms
        for device, box in list(self._boxes.items()):
            for s in [s for s in box.items.values() if now_ms >= s.deposited_at + ttl]:
                dropped += self._drop(box, s.item_id)
            if not box.items and now_ms >= box.grant.expires:
                del self._boxes[device]
                grants += 1
        return [Expired(dropped, grants)] if dropped or grants else []

    def next_deadline(self) -> float | None:
        """Monotonic seconds of the next expiry (of a challenge, an item, or
        an empty box's grant), through the last ``Now`` seen; None if none."""
        times = [exp for _, exp in self._challenges.values()]
        for box in self._boxes.values():
            if box.items:  # the box goes with its last item, not with its grant
                times.extend(s.deposited_at + self.limits.item_ttl_ms for s in box.items.values())
            else:
                times.append(box.grant.expires)
        if not times or self._now is None:
            return None
        return self._now.mono_at_wall(min(times))

    # -- the wire ----------------------------------------------------------

    def handle(self, frame: bytes, *, peer: str, now: Now, random16: bytes) -> list[MailboxOutput]:
        """Answer one request frame: ``[Send(peer, answer)]``.  A refused
        request is answered with an ERROR frame and reported as
        ``Misbehaved(peer, error)`` (the node may score the peer); remote
        input never raises.

        ``random16`` is fresh randomness for a challenge nonce (used only by
        CHALLENGE_REQUEST).  The peer id is opaque here and only counts
        quotas.  One request, one answer: the caller then closes the stream.
        """
        self._now = now
        try:
            return [Send(peer, self._handle(frame, peer, now, random16))]
        except InvalidInput as exc:
            return [
                Send(peer, _frame(Frame.ERROR, exc.code, str(exc)[:200])),
                Misbehaved(peer, exc),
            ]

    def _handle(self, frame: bytes, peer: str, now: Now, random16: bytes) -> bytes:
        t, f = _split(frame, MAX_REQUEST_BYTES)
        if t is Frame.DEPOSIT:
            _arity(f, 2, "deposit")
            device = _bin(f[0], 32, "device")
            if type(f[1]) is not bytes:
                raise SchemaError("envelope must be bin")
            return _frame(Frame.DEPOSITED, self.deposit(device, f[1], peer, now))
        if t is Frame.CHALLENGE_REQUEST:
            _arity(f, 1, "challenge request")
            c = self.challenge(_bin(f[0], 32, "device"), random16, now)
            return _frame(Frame.CHALLENGE, c.nonce, c.expires)
        if t is Frame.FETCH:
            _arity(f, 4, "fetch")
            device, nonce = _bin(f[0], 32, "device"), _bin(f[1], NONCE_BYTES, "nonce")
            limit, sig = _uint(f[2], "limit"), _bin(f[3], 64, "signature")
            items = self.fetch(device, nonce, limit, sig, now)
            return _frame(Frame.ITEMS, [[i.item_id, i.deposited_at, i.envelope] for i in items])
        if t is Frame.DELETE:
            _arity(f, 4, "delete")
            device, nonce = _bin(f[0], 32, "device"), _bin(f[1], NONCE_BYTES, "nonce")
            ids = f[2]
            if type(ids) is not list or len(ids) > MAX_DELETE:
                raise SchemaError(f"at most {MAX_DELETE} ids")
            id_list = [_bin(i, ITEM_ID_BYTES, "item id") for i in ids]
            n = self.delete(device, nonce, id_list, _bin(f[3], 64, "signature"), now)
            return _frame(Frame.DELETED, n)
        if t is Frame.GRANT_REQUEST:
            _arity(f, 4, "grant request")
            grant = self.request_grant(
                _bin(f[0], 32, "account"),
                _bin(f[1], 32, "device"),
                _uint(f[2], "timestamp"),
                _bin(f[3], 64, "signature"),
                now,
            )
            return _frame(Frame.GRANTED, grant.raw)
        raise SchemaError(f"{t.name} is not a request")


def item_id_of(device: bytes, envelope: bytes) -> bytes:
    """The id a mailbox gives an envelope held for ``device`` (§15.12)."""
    return hashlib.blake2b(D_MAILBOX_ITEM + device + envelope, digest_size=ITEM_ID_BYTES).digest()
