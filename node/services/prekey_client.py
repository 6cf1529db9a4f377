"""Fetching a contact device's one-time prekey before a set-up (PROTOCOL.md
§19.16, §19.4).

Before a message to an account is sealed, every ACTIVE scheme-2 device of
it with which this device has no session, and for which it holds a token
of that device's node (the node's identity key, from the peer id its
record names), is asked once on ``/smu/prekey/1``, within
``FETCH_TIMEOUT``; if it serves none (offline, exhausted), the mailboxes
its record names are asked in turn, with tokens naming each.  A verified
proof becomes the set-up's one-time prekey (``SessionService.fetched``);
anything else (no token, unreachable, SIGNED_ONLY, a bad proof) leaves
the signed-prekey-only set-up, as before.
A token the server called spent, invalid or expired, or that bought a key,
is dropped; one that was not looked at (unreachable, exhausted) is kept.
A fetch at a mailbox goes under this node's identity at that mailbox
(``deposits``, §15.13.1), as a deposit there does; a fetch at the device's
own node goes under the node's identity, as a direct delivery does (that
device learns the sender from the message anyway, DESIGN §10).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import trio
from libp2p.peer.id import ID

from protocol.core.errors import InvalidInput
from protocol.log.state import AccountState, DeviceStatus
from protocol.messaging.prekey_fetch import (
    MAX_ANSWER_BYTES,
    PROTOCOL_ID,
    Answer,
    FetchRequest,
    OneTimeAnswer,
    SignedOnly,
    SignedOnlyAnswer,
    decode_answer,
)
from protocol.messaging.prekeys import verify_proof
from protocol.messaging.scheme2 import party_of
from protocol.records.device import Capability
from protocol.records.grant import decode_grant

from ..context import DepositStreams, NodeContext
from ..transport import frame, read_frame
from .sessions import SessionService
from .tokens import TokenService

log = logging.getLogger("smu.prekeys")
#: how long a sender waits for one device's prekey before it sets up
#: without one (§19.16): a send waits at most this per device, in parallel
FETCH_TIMEOUT = 3.0
#: the identity multihash of an Ed25519 libp2p key: 0x00, length 36, then
#: the key's protobuf (type 1 = Ed25519, 32 bytes of data)
_ED25519_PEER_PREFIX = bytes.fromhex("002408011220")
#: answers after which the token is of no further use
_DROP = {SignedOnly.TOKEN_SPENT, SignedOnly.TOKEN_INVALID, SignedOnly.TOKEN_EXPIRED}


def node_key(peer_id: str) -> bytes | None:
    """The Ed25519 identity key a peer id embeds (a node's mailbox key)."""
    try:
        raw = ID.from_base58(peer_id).to_bytes()
    except Exception:
        return None
    if len(raw) != 38 or not raw.startswith(_ED25519_PEER_PREFIX):
        return None
    return raw[6:]


class PrekeyClient:
    def __init__(
        self,
        ctx: NodeContext,
        sessions: SessionService,
        tokens: TokenService,
        deposits: DepositStreams | None = None,
    ) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self.tokens = tokens
        #: streams under this node's identity at each mailbox (§15.13.1);
        #: without them mailboxes are not asked (never under the node's own)
        self.deposits = deposits

    async def prefetch(self, state: AccountState) -> int:
        """Fetch one-time prekeys for the devices of ``state`` that need a
        set-up; the number fetched."""
        me = self.ctx.device.sign_public
        wanted = []
        for d in state.devices:
            if d.status is not DeviceStatus.ACTIVE or d.sign_public == me:
                continue
            record = self.ctx.records.get(state.account_id, d.sign_public)
            if record is None or not record.has(Capability.WRAP_SCHEME_2) or not record.peer_ids:
                continue
            party = party_of(state, d.sign_public)
            if party is None or self.sessions.has_session(party):
                continue
            wanted.append((d.sign_public, record.peer_ids[0], record.addrs))
        got = 0

        async def one(device: bytes, peer: str, addrs: tuple[str, ...]) -> None:
            nonlocal got
            if await self._fetch_one(state.account_id, device, peer, addrs):
                got += 1

        async with trio.open_nursery() as nursery:
            for device, peer, addrs in wanted:
                nursery.start_soon(one, device, peer, addrs)
        return got

    async def _fetch_one(
        self, account: bytes, device: bytes, peer: str, addrs: tuple[str, ...]
    ) -> bool:
        """The device's own node first, then the mailboxes its record names
        (§19.16): the first that serves a key, within ``FETCH_TIMEOUT`` each."""
        record = self.ctx.records.get(account, device)
        # (peer, its addresses, the key its tokens name, whether it is a mailbox)
        targets: list[tuple[str, tuple[str, ...], bytes | None, bool]] = [
            (peer, addrs, node_key(peer), False)
        ]
        for grant_raw, mb_addrs in record.mailboxes if record is not None else ():
            try:
                grant = decode_grant(grant_raw, self.ctx.params)
            except InvalidInput:
                continue
            if grant.mailbox_peer != peer:
                # what libp2p knows of it now (fresher), then the record's
                known = tuple(self.ctx.peer_addresses(grant.mailbox_peer))
                mb = (*known, *(a for a in mb_addrs if a not in known))
                targets.append((grant.mailbox_peer, mb, grant.mailbox_key, True))
        for target, target_addrs, key, mailbox in targets:
            if key is None or (mailbox and self.deposits is None):
                continue
            if await self._fetch_at(account, device, target, target_addrs, key, mailbox):
                return True
        return False

    async def _fetch_at(
        self,
        account: bytes,
        device: bytes,
        peer: str,
        addrs: tuple[str, ...],
        key: bytes,
        mailbox: bool,
    ) -> bool:
        tokens = self.tokens.take(device, key, limit=1)
        if not tokens:
            return False
        token = tokens[0]
        answer: Answer | None = None
        try:
            request = FetchRequest(account, device, token).encode()
            answer = await self._ask(peer, addrs, request, mailbox)
        finally:
            if isinstance(answer, OneTimeAnswer) or (
                isinstance(answer, SignedOnlyAnswer) and answer.reason in _DROP
            ):
                self.tokens.spent(device, key, token)
            else:
                self.tokens.release(device, key, tokens)
        if not isinstance(answer, OneTimeAnswer):
            log.debug("no one-time prekey from %s: %s", peer, answer)
            return False
        try:
            opk = verify_proof(self.ctx.params, answer.proof, account, device, _now_ms())
        except InvalidInput as exc:
            log.info("a bad one-time prekey from %s: %s", peer, exc)
            return False
        self.sessions.fetched_for(account, device, opk)
        return True

    async def _ask(
        self, peer: str, addrs: tuple[str, ...], request: bytes, mailbox: bool
    ) -> Answer | None:
        try:
            with trio.fail_after(FETCH_TIMEOUT):
                if mailbox:
                    assert self.deposits is not None  # checked by _fetch_one
                    async with self.deposits.stream(peer, addrs, PROTOCOL_ID) as stream:
                        return await _exchange(stream, request)
                stream = await self.ctx.open_stream(peer, addrs, PROTOCOL_ID)
                try:
                    return await _exchange(stream, request)
                finally:
                    with contextlib.suppress(Exception):
                        await stream.close()
        except Exception as exc:  # unreachable, slow, a bad answer: set up without one
            log.debug("prekey fetch from %s failed: %s", peer, exc)
            return None


async def _exchange(stream: Any, request: bytes) -> Answer:
    await stream.write(frame(request))
    return decode_answer(await read_frame(stream, MAX_ANSWER_BYTES))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
