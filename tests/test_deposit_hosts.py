"""The identity a node deposits and fetches prekeys under at a mailbox
(PROTOCOL.md §15.13.1): derived per mailbox from the node seed, never the
node's own; and the pool of dial-only hosts that carries it, against real
libp2p listeners in this process."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from node.deposit_hosts import DepositHosts, deposit_peer_id, deposit_seed
from node.errors import NodeUsageError, PeerUnreachable
from node.gate import remote_peer
from node.relay import DialGuard
from node.transport import make_host, parse_multiaddr
from protocol.links.addresses import DEFAULT

PROTO = "/smu/test-deposit/1"
NODE_SEED = bytes(range(32))


def _peer_of(seed: bytes) -> str:
    return str(ID.from_pubkey(create_new_key_pair(seed).public_key).to_base58())


MAILBOX_1 = _peer_of(b"\x01" * 32)
MAILBOX_2 = _peer_of(b"\x02" * 32)


def test_the_identity_is_stable_per_mailbox_and_differs_between_them() -> None:
    node = _peer_of(NODE_SEED)
    at_1 = deposit_peer_id(NODE_SEED, MAILBOX_1)
    assert at_1 == deposit_peer_id(NODE_SEED, MAILBOX_1)  # derived, the same every run
    assert at_1 != deposit_peer_id(NODE_SEED, MAILBOX_2)
    assert node not in (at_1, deposit_peer_id(NODE_SEED, MAILBOX_2))
    # another node at the same mailbox: another identity
    assert at_1 != deposit_peer_id(bytes(32), MAILBOX_1)
    seed = deposit_seed(NODE_SEED, MAILBOX_1)
    assert len(seed) == 32 and seed != NODE_SEED
    # the seed is the node seed's keyed hash of the mailbox id, not the id's hash
    assert seed not in (deposit_seed(bytes(32), MAILBOX_1), deposit_seed(NODE_SEED, MAILBOX_2))


def test_bad_inputs_are_typed_refusals() -> None:
    with pytest.raises(PeerUnreachable):
        deposit_seed(NODE_SEED, "not a peer id")
    with pytest.raises(NodeUsageError):
        deposit_seed(NODE_SEED[:31], MAILBOX_1)


class _Mailbox:
    """A listening libp2p host that notes who opened each stream."""

    def __init__(self, seed: bytes) -> None:
        self.host = make_host(seed)
        self.seen: list[str] = []
        self.host.set_stream_handler(TProtocol(PROTO), self._on_stream)

    async def _on_stream(self, stream: Any) -> None:
        self.seen.append(remote_peer(stream))
        await stream.write(b"ok")
        await stream.close()

    @property
    def peer(self) -> str:
        return str(self.host.get_id().to_base58())

    @property
    def addrs(self) -> list[str]:
        return [str(a).split("/p2p/")[0] for a in self.host.get_addrs()]


@asynccontextmanager
async def _mailboxes(n: int, seeds: list[bytes] | None = None) -> AsyncIterator[list[_Mailbox]]:
    boxes = [_Mailbox(seed) for seed in seeds or [os.urandom(32) for _ in range(n)]]
    async with trio.open_nursery() as nursery:
        for box in boxes:
            ready = trio.Event()

            async def serve(box: _Mailbox = box, ready: trio.Event = ready) -> None:
                async with box.host.run([parse_multiaddr("/ip4/127.0.0.1/tcp/0")]):
                    ready.set()
                    await trio.sleep_forever()

            nursery.start_soon(serve)
            await ready.wait()
        yield boxes
        for box in boxes:
            await box.host.close()
        nursery.cancel_scope.cancel()


def _pool(**kw: Any) -> DepositHosts:
    guard = DialGuard(lambda: [ipaddress.ip_network("127.0.0.0/8")], DEFAULT)
    return DepositHosts(NODE_SEED, guard, lambda peer, addrs: list(addrs), **kw)


async def _ask(pool: DepositHosts, box: _Mailbox) -> bytes:
    return await _ask_at(pool, box.peer, box.addrs)


async def test_each_mailbox_sees_one_identity_of_its_own() -> None:
    pool = _pool()
    async with _mailboxes(2) as (m1, m2), trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        assert await _ask(pool, m1) == b"ok"
        assert await _ask(pool, m1) == b"ok"
        assert await _ask(pool, m2) == b"ok"
        assert m1.seen == [deposit_peer_id(NODE_SEED, m1.peer)] * 2
        assert m2.seen == [deposit_peer_id(NODE_SEED, m2.peer)]
        assert m1.seen[0] != m2.seen[0]
        assert _peer_of(NODE_SEED) not in m1.seen + m2.seen
        assert pool.status() == {"open": 2, "opened": 2, "closed": 0}
        await pool.close_all()
        assert pool.status() == {"open": 0, "opened": 2, "closed": 2}
        nursery.cancel_scope.cancel()


async def test_idle_hosts_close_and_the_pool_is_bounded() -> None:
    pool = _pool(max_hosts=1, idle_after=3600.0)
    async with _mailboxes(2) as (m1, m2), trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        async with pool.stream(m1.peer, m1.addrs, PROTO) as stream:
            assert await stream.read(2) == b"ok"
            # the one host is busy: a second mailbox is refused, not queued
            with pytest.raises(PeerUnreachable, match="in use"):
                await _ask(pool, m2)
        # now idle: it makes room for the second mailbox's host
        assert await _ask(pool, m2) == b"ok"
        assert pool.status()["open"] == 1
        assert m2.seen == [deposit_peer_id(NODE_SEED, m2.peer)]
        # unused for idle_after: closed
        pool.close_idle(trio.current_time() + 3600.0)
        assert pool.status()["open"] == 0
        await pool.close_all()
        assert pool.status() == {"open": 0, "opened": 2, "closed": 2}
        nursery.cancel_scope.cancel()


async def test_a_mailbox_behind_a_relay_only_is_not_dialled() -> None:
    pool = _pool()
    async with _mailboxes(1) as (m1,), trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        relayed = [f"/ip4/127.0.0.1/tcp/1/p2p/{MAILBOX_2}/p2p-circuit"]
        with pytest.raises(PeerUnreachable, match="no direct address"):
            async with pool.stream(m1.peer, relayed, PROTO):
                pass
        assert m1.seen == []
        await pool.close_all()
        nursery.cancel_scope.cancel()


async def test_a_mailbox_back_at_a_new_address_is_reached_at_once() -> None:
    """A failed dial does not hold the next one back (py-libp2p's own 60 s
    block): the outbox decides when to try again."""
    pool = _pool()
    seed = os.urandom(32)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        async with _mailboxes(1, [seed]) as (before,):
            assert await _ask(pool, before) == b"ok"
            old = before.addrs
        with pytest.raises(PeerUnreachable):  # gone: the dial fails
            await _ask_at(pool, before.peer, old)
        async with _mailboxes(1, [seed]) as (after,):
            assert after.addrs != old
            assert await _ask_at(pool, after.peer, [*old, *after.addrs]) == b"ok"
            assert after.seen == before.seen == [deposit_peer_id(NODE_SEED, after.peer)]
        await pool.close_all()
        nursery.cancel_scope.cancel()


async def _ask_at(pool: DepositHosts, peer: str, addrs: list[str]) -> bytes:
    async with pool.stream(peer, addrs, PROTO) as stream:
        return bytes(await stream.read(2))
