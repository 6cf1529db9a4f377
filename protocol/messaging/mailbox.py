"""Store-and-forward mailboxes, sans-I/O (PROTOCOL.md §15.10-§15.18).

A mailbox node holds envelopes for devices that are offline.  It holds only
ciphertext: it cannot read an envelope or check who sent it; it checks
sizes, the clear header's shape (``envelope.peek``), the recipient's grant
and, for a contact's deposit, the one-time token the recipient handed out
(``tokens``).  The envelope's own replay protection (§15.6) is what keeps a
mailbox that drops, reorders or replays envelopes from making a message
appear twice or from someone else.

Quotas are earned, not claimed (DESIGN §5): nothing here counts by peer id,
which costs nothing.  A deposit with a valid unspent token is a contact's
and counts against the device's grant, its account and the mailbox; a
deposit without one is a stranger's and also has to fit the small
strangers' pool: per device, per network group of the depositing
connection (the caller names the group), and a rate per group (§15.17).

The ``Mailbox`` follows the machine contract (``core.machine``, §18):
every entry point takes one ``Now``; ``handle`` answers every request frame
with outputs (``Send`` of the answer, and ``Misbehaved`` when it refused
the request), never with an exception; ``tick(now)`` at ``next_deadline()``
(monotonic seconds) drops what has expired and reports ``Expired``.  What
it holds lives in a ``MailboxStore`` (``mailbox_store``): the node's is
SQLite, and a change is durable before the answer that reports it.
Its bounds, per-device counts and per-group stranger rates are in
``mailbox_limits``.

Mailbox side (stream ``/smu/mailbox/1``, one request frame, one answer)::

    box = Mailbox(params, MailboxIdentity(seed32), peer_id=my_peer_id,
                  grant_policy=lambda account, device: <active in my replica?>,
                  store=my_store)
    grant = box.issue_grant(account, device, now=now)   # e.g. the node's own devices
    outs = box.handle(frame, peer=remote_peer_id, group=network_group_of_connection,
                      now=now, random16=os.urandom(16))
    # [Send(peer, answer)] (+ Misbehaved(peer, error)): write it, close the stream
    box.tick(now)                 # at box.next_deadline()

Device side: ``mailbox_wire`` has the frames (``grant_request`` with the
device's token key, ``challenge_request``, ``fetch_request``,
``delete_request``, ``deposit_request`` with or without a token,
``decode_answer``); ``mailbox_client.MailboxClient`` decides when.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from protocol.core import crypto
from protocol.core.canonical import encode_flat
from protocol.core.errors import (
    BadTimestampError,
    InvalidInput,
    LimitExceededError,
    UsageError,
)
from protocol.core.machine import Misbehaved, Now, Send
from protocol.core.params import NetworkParams
from protocol.messaging.envelope import peek
from protocol.messaging.mailbox_limits import (
    DeviceBox,
    GroupRates,
    MailboxLimits,
    Use,
)
from protocol.messaging.mailbox_store import (
    ItemMeta,
    MailboxStore,
    MemoryMailboxStore,
    SpentToken,
    StoreChange,
)
from protocol.messaging.mailbox_wire import (
    D_MAILBOX_AUTH,
    D_MAILBOX_ITEM,
    ITEM_ID_BYTES,
    MAX_ANSWER_BYTES,
    MAX_ANSWER_FRAME,
    MAX_DELETE,
    MAX_FETCH,
    MAX_REQUEST_BYTES,
    NONCE_BYTES,
    PROTOCOL_ID,
    WIRE_VERSION,
    Answer,
    ChallengeError,
    ChallengeIssued,
    ChallengeRequest,
    Deleted,
    DeleteRequest,
    Deposited,
    DepositRequest,
    FetchRequest,
    Frame,
    Granted,
    GrantRefusedError,
    GrantRequest,
    Item,
    Items,
    MailboxError,
    MailboxFullError,
    MailboxIdentity,
    NoGrantError,
    Op,
    QuotaExceededError,
    Refused,
    StrangerPoolFullError,
    auth_message,
    challenge_request,
    decode_answer,
    decode_request,
    delete_request,
    deposit_request,
    error_frame,
    fetch_request,
    frame_of,
    grant_args,
    grant_request,
    item_id_of,
)
from protocol.messaging.tokens import (
    Token,
    TokenExpiredError,
    TokenInvalidError,
    TokenSpentError,
    verify_token,
)
from protocol.records.grant import (
    D_MAILBOX_GRANT,
    GRANT_V2,
    Grant,
    check_peer_id,
    decode_grant,
    grant_fields,
)

#: open challenges per device; a new one pushes out the oldest
CHALLENGES_PER_DEVICE = 4
#: how far a grant request's timestamp may be from the mailbox's clock
GRANT_REQUEST_SKEW_MS = 5 * 60 * 1000
CHALLENGE_TTL_MS = 60_000
#: stranger items one deposit may push out of a full pool (§15.17)
MAX_EVICTIONS = 16


@dataclass(frozen=True, slots=True)
class Expired:
    """``tick`` dropped ``items`` held too long and ``grants`` expired with
    nothing left under them."""

    items: int
    grants: int


#: what ``Mailbox.handle`` and ``Mailbox.tick`` return
MailboxOutput = Send | Misbehaved | Expired


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
        store: MailboxStore | None = None,
    ) -> None:
        self.params = params
        #: decides GRANT_REQUESTs: ``(account, device) -> bool``; None refuses all
        self.grant_policy = grant_policy
        self.identity = identity
        self.peer_id = check_peer_id(peer_id)
        self.limits = limits or MailboxLimits()
        self.store: MailboxStore = store if store is not None else MemoryMailboxStore()
        self._boxes: dict[bytes, DeviceBox] = {}  # by device key
        self._accounts: dict[bytes, Use] = {}
        self._total = Use()
        self._all_strangers = Use()
        self._groups: dict[str, Use] = {}
        self._rates = GroupRates(self.limits)
        #: (device, nonce) -> expiry, a heap of the same by expiry, per device counts
        self._spent: dict[tuple[bytes, bytes], int] = {}
        self._spent_heap: list[tuple[int, bytes, bytes]] = []
        self._spent_count: Counter[bytes] = Counter()
        self._challenges: dict[bytes, tuple[bytes, int]] = {}  # nonce -> (device, expires)
        self._seq = 0
        #: the last time an entry point was given, for ``next_deadline``
        self._now: Now | None = None
        self._load()

    # -- loading what the store holds ----------------------------------------

    def _load(self) -> None:
        snap = self.store.load()
        orphans: list[tuple[bytes, bytes]] = []
        for raw in snap.grants:
            try:
                g = decode_grant(raw, self.params)
            except InvalidInput:
                continue  # a grant of another network or version: nothing to serve
            if g.mailbox_key == self.identity.public:
                self._boxes[g.device] = DeviceBox(g, g.account)
        for m in snap.items:
            box = self._boxes.get(m.device)
            if box is None:
                orphans.append((m.device, m.item_id))
                continue
            self._account_item(box, m, +1)
            self._seq = max(self._seq, m.seq + 1)
        for s in snap.spent:
            self._remember_spent(s)
        if orphans:
            self.store.apply(StoreChange(drop_items=tuple(orphans)))

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
        """Sign, store and install a grant (the node's policy decided to
        serve this device).  Always a v2 grant (§15.11), naming the device's
        token key if it gave one."""
        self._now = now
        box = self._boxes.get(device)
        if box is not None and box.account != account and not box.empty:
            raise UsageError("that device's box holds items of another account")
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
        self.store.apply(StoreChange(put_grants=((device, grant.raw),)))
        if box is None:
            self._boxes[device] = DeviceBox(grant, account)
        else:
            box.grant, box.account = grant, account
        return grant

    def grant_of(self, device: bytes) -> Grant | None:
        box = self._boxes.get(device)
        return box.grant if box else None

    def held(self, device: bytes) -> tuple[int, int]:
        """(bytes, count) held for a device."""
        box = self._boxes.get(device)
        return (box.use.bytes, box.use.count) if box else (0, 0)

    def held_by_strangers(self, device: bytes) -> tuple[int, int]:
        box = self._boxes.get(device)
        return (box.strangers.bytes, box.strangers.count) if box else (0, 0)

    def devices(self) -> tuple[bytes, ...]:
        """The devices with a box here (a grant, or items under an expired one)."""
        return tuple(self._boxes)

    @property
    def total(self) -> tuple[int, int]:
        """(bytes, count) held in all."""
        return self._total.bytes, self._total.count

    @property
    def spent_count(self) -> int:
        return len(self._spent)

    def token_spent(self, device: bytes, nonce: bytes) -> bool:
        """Has this token paid here (a deposit or a prekey fetch, §19.16)?"""
        return (device, nonce) in self._spent

    def spend_token(self, device: bytes, token: Token) -> None:
        """A token that paid for a prekey fetch (§19.16): spent durably in
        the set deposits use, so it cannot pay again for either."""
        s = SpentToken(device, token.nonce, token.expires)
        self.store.apply(StoreChange(put_spent=(s,)))
        self._remember_spent(s)

    # -- accounting --------------------------------------------------------

    def _account_item(self, box: DeviceBox, m: ItemMeta, sign: int) -> None:
        """Add (+1) or remove (-1) an item from every count it is in."""
        size = sign * m.size
        items = box.stranger if m.stranger else box.contact
        if sign > 0:
            items[m.item_id] = m
        else:
            del items[m.item_id]
        box.use.add(size, sign)
        self._accounts.setdefault(box.account, Use()).add(size, sign)
        self._total.add(size, sign)
        if m.stranger:
            box.strangers.add(size, sign)
            box.groups[m.group] += sign
            if box.groups[m.group] <= 0:
                del box.groups[m.group]
            self._all_strangers.add(size, sign)
            g = self._groups.setdefault(m.group, Use())
            g.add(size, sign)
            if g.count <= 0:
                del self._groups[m.group]
        if self._accounts[box.account].count <= 0:
            del self._accounts[box.account]

    def _remember_spent(self, s: SpentToken) -> None:
        key = (s.device, s.nonce)
        if key not in self._spent:
            self._spent[key] = s.expires
            heapq.heappush(self._spent_heap, (s.expires, s.device, s.nonce))
            self._spent_count[s.device] += 1

    # -- deposits (§15.16, §15.17) --------------------------------------------

    def deposit(
        self,
        device: bytes,
        envelope: bytes,
        *,
        group: str,
        now: Now,
        token: Token | None = None,
    ) -> bytes:
        """Store an envelope for ``device``; returns its item id (idempotent).
        With ``token`` it is a contact's deposit, else a stranger's from the
        network ``group`` of the depositing connection.  A refusal raises its
        ``InvalidInput`` (``handle`` turns it into outputs); the cheap checks
        come first, and nothing is stored or counted for a refused deposit."""
        self._now = now
        box = self._boxes.get(device)
        if box is None or now.wall_ms >= box.grant.expires:
            raise NoGrantError("no current grant for that device here")
        item_id = item_id_of(device, envelope)
        if box.get(item_id) is not None:
            # The same envelope again (a retry whose answer was lost): no
            # second copy, nothing spent, whatever token it carries.
            return item_id
        if token is not None:
            self._check_token(box, device, token, now)
        else:
            self._rates.take(group, now)
        header = peek(envelope, self.params)  # shape and size only
        if device not in header.devices:
            raise MailboxError("the envelope has no key wrap for that device")
        size = len(envelope)
        victims = self._stranger_room(box, group, size) if token is None else []
        freed = sum(v.size for v in victims)
        self._check_quotas(box, size - freed, 1 - len(victims))
        stranger = token is None
        meta = ItemMeta(
            device, item_id, self._seq, now.wall_ms, size, stranger, group if stranger else ""
        )
        spent = () if token is None else (SpentToken(device, token.nonce, token.expires),)
        self.store.apply(
            StoreChange(
                put_items=((meta, envelope),),
                drop_items=tuple((device, v.item_id) for v in victims),
                put_spent=spent,
            )
        )
        # Durable now: count it.
        self._seq += 1
        for v in victims:
            self._account_item(box, v, -1)
        self._account_item(box, meta, +1)
        for s in spent:
            self._remember_spent(s)
        return item_id

    def _check_token(self, box: DeviceBox, device: bytes, token: Token, now: Now) -> None:
        lim = self.limits
        if token.expires <= now.wall_ms:
            raise TokenExpiredError("the token has expired")
        if token.expires > now.wall_ms + lim.max_token_lifetime_ms:
            raise TokenInvalidError("the token claims to live longer than this mailbox keeps it")
        if (device, token.nonce) in self._spent:
            raise TokenSpentError("that token was spent here already")
        if self._spent_count[device] >= lim.spent_per_device or len(self._spent) >= lim.max_spent:
            raise QuotaExceededError("too many tokens spent here lately; retry later")
        verify_token(
            self.params,
            self.identity.public,
            device,
            box.grant.token_key,
            token,
            now.wall_ms,
            lim.max_token_lifetime_ms,
        )

    def _stranger_room(self, box: DeviceBox, group: str, size: int) -> list[ItemMeta]:
        """Make room for a stranger's item of ``size`` from ``group``, or
        refuse.  When the device's pool is full, a group holding fewer of
        its items than the group holding most pushes out that group's
        oldest item: many peer ids in one network cannot keep another
        network's stranger out.  Returns the items to push out."""
        lim = self.limits
        mine = box.groups[group]
        if mine + 1 > lim.group_device_count:
            raise StrangerPoolFullError("your network holds its share of this device's pool")
        g = self._groups.get(group, Use())
        if g.count + 1 > lim.group_count or g.bytes + size > lim.group_bytes:
            raise StrangerPoolFullError("your network holds its share of this mailbox")
        victims: list[ItemMeta] = []
        counts = Counter(box.groups)
        count, nbytes = box.strangers.count, box.strangers.bytes
        while count + 1 > lim.stranger_count or nbytes + size > lim.stranger_bytes:
            top, top_n = max(counts.items(), key=lambda kv: (kv[1], kv[0]), default=("", 0))
            if mine >= top_n or len(victims) >= MAX_EVICTIONS:
                raise StrangerPoolFullError("this device's pool for strangers is full")
            chosen = {v.item_id for v in victims}
            v = next(m for m in box.stranger.values() if m.group == top and m.item_id not in chosen)
            victims.append(v)
            counts[top] -= 1
            count, nbytes = count - 1, nbytes - v.size
        total = self._all_strangers
        if (
            total.count - len(victims) + 1 > lim.strangers_count
            or total.bytes - sum(v.size for v in victims) + size > lim.strangers_bytes
        ):
            raise StrangerPoolFullError("this mailbox's pool for strangers is full")
        return victims

    def _check_quotas(self, box: DeviceBox, size: int, count: int) -> None:
        """The device's grant, its account and the whole mailbox, with
        ``size`` and ``count`` the net change of the deposit."""
        g, lim = box.grant, self.limits
        if box.use.bytes + size > g.quota_bytes or box.use.count + count > g.quota_count:
            raise QuotaExceededError("the device's mailbox is full")
        acc = self._accounts.get(box.account, Use())
        if acc.bytes + size > lim.account_bytes or acc.count + count > lim.account_count:
            raise QuotaExceededError("the account's devices hold their share here")
        if self._total.bytes + size > lim.max_bytes or self._total.count + count > lim.max_items:
            raise MailboxFullError("this mailbox is full")

    # -- fetch and delete (§15.12) --------------------------------------------

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
    ) -> DeviceBox:
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
        chosen: list[ItemMeta] = []
        size = 0
        for m in box.ordered():
            if len(chosen) >= min(limit, MAX_FETCH) or (
                chosen and size + m.size > MAX_ANSWER_BYTES
            ):
                break
            chosen.append(m)
            size += m.size
        bodies = self.store.read(device, [m.item_id for m in chosen])
        return tuple(
            Item(m.item_id, m.deposited_at, e) for m, e in zip(chosen, bodies, strict=True)
        )

    def delete(
        self, device: bytes, nonce: bytes, item_ids: list[bytes], signature: bytes, now: Now
    ) -> int:
        box = self._authenticate(Op.DELETE, device, nonce, [item_ids], signature, now)
        return self._drop(box, [m for i in set(item_ids) if (m := box.get(i)) is not None])

    def _drop(self, box: DeviceBox, items: list[ItemMeta]) -> int:
        if items:
            self.store.apply(StoreChange(drop_items=tuple((m.device, m.item_id) for m in items)))
            for m in items:
                self._account_item(box, m, -1)
        return len(items)

    # -- grant requests (§15.11) -----------------------------------------------

    def request_grant(self, req: GrantRequest, now: Now) -> Grant:
        """A device asks for a grant, signing a fresh timestamp (and its
        token key, if it gives one)."""
        self._now = now
        now_ms = now.wall_ms
        if abs(req.timestamp - now_ms) > GRANT_REQUEST_SKEW_MS:
            raise BadTimestampError("grant request timestamp too far from our clock")
        args = grant_args(req.account, req.timestamp, req.token_key)
        msg = auth_message(
            self.params.network_id, self.identity.public, Op.GRANT, req.device, b"", args
        )
        crypto.verify(req.device, msg, req.signature)
        token_key = req.token_key or b""
        if token_key:
            crypto.check_ed25519_public(token_key)  # the grant decoder would refuse it too
        if self.grant_policy is None or not self.grant_policy(req.account, req.device):
            raise GrantRefusedError("this mailbox does not serve that device")
        held = self.grant_of(req.device)
        if held is None:
            lim = self.limits
            same_account = sum(1 for b in self._boxes.values() if b.account == req.account)
            if len(self._boxes) >= lim.max_grants or same_account >= lim.account_grants:
                raise GrantRefusedError("this mailbox serves as many devices as it will")
        elif (
            held.account == req.account
            and held.token_key == token_key
            and now_ms < (held.issued + held.expires) // 2
        ):
            return held  # still in the first half of its life: no need for a new one
        box = self._boxes.get(req.device)
        if box is not None and box.account != req.account and not box.empty:
            raise GrantRefusedError("that device's box holds another account's items")
        return self.issue_grant(req.account, req.device, now=now, token_key=token_key)

    # -- the timer ----------------------------------------------------------

    def _expire_challenges(self, now_ms: int) -> None:
        for n in [n for n, (_, exp) in self._challenges.items() if now_ms >= exp]:
            del self._challenges[n]

    def tick(self, now: Now) -> list[MailboxOutput]:
        """Drop old items, spent tokens past their expiry, stale challenges,
        and expired grants with nothing left; ``[Expired(items, grants)]``
        if any item or grant went."""
        self._now = now
        now_ms = now.wall_ms
        lim = self.limits
        self._expire_challenges(now_ms)
        dropped = grants = 0
        gone: list[bytes] = []
        for device, box in list(self._boxes.items()):
            old = [m for m in box.contact.values() if now_ms >= m.deposited_at + lim.item_ttl_ms]
            old += [
                m for m in box.stranger.values() if now_ms >= m.deposited_at + lim.stranger_ttl_ms
            ]
            dropped += self._drop(box, old)
            if box.empty and now_ms >= box.grant.expires:
                del self._boxes[device]
                gone.append(device)
                grants += 1
        spent: list[tuple[bytes, bytes]] = []
        while self._spent_heap and self._spent_heap[0][0] <= now_ms:
            _, device, nonce = heapq.heappop(self._spent_heap)
            if self._spent.pop((device, nonce), None) is not None:
                spent.append((device, nonce))
                self._spent_count[device] -= 1
                if self._spent_count[device] <= 0:
                    del self._spent_count[device]
        if gone or spent:
            self.store.apply(StoreChange(drop_spent=tuple(spent), drop_grants=tuple(gone)))
        if len(self._rates) > lim.max_groups // 2:
            self._rates.prune(now)
        return [Expired(dropped, grants)] if dropped or grants else []

    def next_deadline(self) -> float | None:
        """Monotonic seconds of the next expiry (of a challenge, an item, a
        spent token, or an empty box's grant), through the last ``Now``
        seen; None if none."""
        lim = self.limits
        times: list[int] = []
        if self._challenges:  # one lifetime for all: the first is the oldest
            times.append(next(iter(self._challenges.values()))[1])
        if self._spent_heap:
            times.append(self._spent_heap[0][0])
        for box in self._boxes.values():
            if box.empty:  # the box goes with its last item, not with its grant
                times.append(box.grant.expires)
                continue
            if box.contact:
                times.append(next(iter(box.contact.values())).deposited_at + lim.item_ttl_ms)
            if box.stranger:
                times.append(next(iter(box.stranger.values())).deposited_at + lim.stranger_ttl_ms)
        if not times or self._now is None:
            return None
        return self._now.mono_at_wall(min(times))

    # -- the wire ----------------------------------------------------------

    def handle(
        self, frame: bytes, *, peer: str, group: str, now: Now, random16: bytes
    ) -> list[MailboxOutput]:
        """Answer one request frame: ``[Send(peer, answer)]``.  A refused
        request is answered with an ERROR frame and reported as
        ``Misbehaved(peer, error)`` (the node may score the peer); remote
        input never raises.

        ``group`` is the network group of the connection the frame came on
        (§15.17); it alone decides a stranger's share, and the peer id
        decides nothing.  ``random16`` is fresh randomness for a challenge
        nonce (used only by CHALLENGE_REQUEST).  One request, one answer:
        the caller then closes the stream.
        """
        self._now = now
        try:
            return [Send(peer, self._handle(frame, group, now, random16))]
        except InvalidInput as exc:
            return [Send(peer, error_frame(exc)), Misbehaved(peer, exc)]

    def _handle(self, frame: bytes, group: str, now: Now, random16: bytes) -> bytes:
        req = decode_request(frame)
        if isinstance(req, DepositRequest):
            item_id = self.deposit(req.device, req.envelope, group=group, now=now, token=req.token)
            return frame_of(Frame.DEPOSITED, item_id)
        if isinstance(req, ChallengeRequest):
            c = self.challenge(req.device, random16, now)
            return frame_of(Frame.CHALLENGE, c.nonce, c.expires)
        if isinstance(req, FetchRequest):
            items = self.fetch(req.device, req.nonce, req.limit, req.signature, now)
            return frame_of(Frame.ITEMS, [[i.item_id, i.deposited_at, i.envelope] for i in items])
        if isinstance(req, DeleteRequest):
            n = self.delete(req.device, req.nonce, list(req.item_ids), req.signature, now)
            return frame_of(Frame.DELETED, n)
        grant = self.request_grant(req, now)
        return frame_of(Frame.GRANTED, grant.raw)


__all__ = [
    "CHALLENGE_TTL_MS",
    "D_MAILBOX_AUTH",
    "D_MAILBOX_ITEM",
    "ITEM_ID_BYTES",
    "MAX_ANSWER_BYTES",
    "MAX_ANSWER_FRAME",
    "MAX_DELETE",
    "MAX_FETCH",
    "MAX_REQUEST_BYTES",
    "PROTOCOL_ID",
    "WIRE_VERSION",
    "Answer",
    "ChallengeError",
    "ChallengeIssued",
    "Deleted",
    "Deposited",
    "Expired",
    "GrantRefusedError",
    "Granted",
    "Item",
    "Items",
    "Mailbox",
    "MailboxError",
    "MailboxFullError",
    "MailboxIdentity",
    "MailboxLimits",
    "MailboxOutput",
    "NoGrantError",
    "QuotaExceededError",
    "Refused",
    "StrangerPoolFullError",
    "challenge_request",
    "decode_answer",
    "decode_grant",
    "delete_request",
    "deposit_request",
    "fetch_request",
    "grant_request",
    "item_id_of",
]
