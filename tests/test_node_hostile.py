"""A hostile peer against a real node over loopback (issue: Node, Tests).

The peer is a libp2p host in this process; the node is a separate process.
Forged, malformed and oversized frames get the peer disconnected and
backed off, nothing invalid is stored, and honest replication goes on.
Repeating valid events is normal and is not punished.
"""

from __future__ import annotations

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from node.netdemo import Demo, DemoNode
from node.transport import FRAME_HEADER, frame, parse_multiaddr
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import TESTNET
from protocol.log import authoring
from protocol.sync.wire import EventsFrame, encode_frame

from .process import Hostile, hostile_peer, start_nodes

pytestmark = pytest.mark.process


T = 1_750_000_000_000


@pytest.fixture
def nodes(demo: Demo) -> tuple[DemoNode, DemoNode]:
    a, b = start_nodes(demo, ["honest-a", "honest-b"])
    demo.connect(a, b)
    return a, b


def _events() -> list[bytes]:
    k0, k1 = DeviceKeys.from_random(b"\x01" * 64), DeviceKeys.from_random(b"\x02" * 64)
    g = authoring.genesis(
        TESTNET, k0, RecoveryKey(b"\x03" * 32), display_name="victim", device_name="d0", timestamp=T
    )
    add = authoring.add_device(
        TESTNET, g.id, [g.id], k0, authoring.introduce(TESTNET, g.id, k1, "d1"), timestamp=T + 1
    )
    return [g.raw, add.raw]


def _forged(raw: bytes) -> bytes:
    bad = bytearray(raw)
    bad[-1] ^= 0x40  # the signature's last byte
    return bytes(bad)


def _has(node: DemoNode, raw: bytes) -> bool:
    from protocol.log.events import decode_event

    event_id = decode_event(raw, TESTNET).id.hex()
    return bool(node.client.call("event.has", ids=[event_id])["present"])


async def _honest_replication_goes_on(a: DemoNode, b: DemoNode, seed: int) -> None:
    k = DeviceKeys.from_random(bytes([seed]) * 64)
    g = authoring.genesis(
        TESTNET,
        k,
        RecoveryKey(bytes([seed]) * 32),
        display_name=f"honest{seed}",
        device_name="d",
        timestamp=T,
    )
    await trio.to_thread.run_sync(b.submit, g)
    with trio.fail_after(20):
        while not await trio.to_thread.run_sync(_has, a, g.raw):
            await trio.sleep(0.05)


@pytest.mark.parametrize(
    "attack",
    ["garbage", "non_canonical", "forged_event", "oversized_length"],
)
async def test_misbehaving_peer_is_cut_off(nodes: tuple[DemoNode, DemoNode], attack: str) -> None:
    a, b = nodes
    genesis, _ = _events()
    async with hostile_peer(a.addr) as peer:
        if attack == "garbage":
            await peer.send(b"\xff\x00 not msgpack at all")
        elif attack == "non_canonical":
            # a uint8-encoded 1 where a positive fixint is canonical
            await peer.send(b"\x93\xcc\x01\x02\xc4\x00")
        elif attack == "forged_event":
            await peer.send(encode_frame(EventsFrame(events=(_forged(genesis),))))
        else:
            await peer.send_raw(FRAME_HEADER.pack(64 * 1024 * 1024) + b"x" * 1024)
        assert await peer.disconnected_within(10), "the node kept a misbehaving peer"
        assert await peer.refused(a.addr), "the node accepted the peer again at once"
        if attack == "forged_event":
            assert not await trio.to_thread.run_sync(_has, a, genesis)
        peers = await trio.to_thread.run_sync(lambda: a.client.call("peers.list"))
        assert peer.host.get_id().to_base58() not in {p["peer_id"] for p in peers["peers"]}
    await _honest_replication_goes_on(a, b, seed=10 + len(attack))
    assert not await trio.to_thread.run_sync(_has, b, _forged(genesis))


async def test_repeating_valid_events_is_not_punished(nodes: tuple[DemoNode, DemoNode]) -> None:
    a, _ = nodes
    genesis, add = _events()
    async with hostile_peer(a.addr) as peer:
        for _ in range(50):
            await peer.send(encode_frame(EventsFrame(events=(genesis, add))))
        assert not await peer.disconnected_within(2)
        peers = await trio.to_thread.run_sync(lambda: a.client.call("peers.list"))
        mine = [p for p in peers["peers"] if p["peer_id"] == peer.host.get_id().to_base58()]
        assert mine and mine[0]["score"] >= 0
        assert await trio.to_thread.run_sync(_has, a, add)


def test_preverified_cache_does_not_trust_a_forged_copy() -> None:
    """A forged copy of a genuine event has the genuine id (the id does not
    cover the signature): the cache must not let it skip verification."""
    from node.preverify import VerifiedCache
    from protocol.core.errors import BadSignatureError
    from protocol.log.events import decode_event
    from protocol.sync.wire import WireLimits

    genesis, _ = _events()
    cache = VerifiedCache(TESTNET, WireLimits())
    assert cache.preverify(encode_frame(EventsFrame(events=(genesis,)))) == 1
    forged = decode_event(_forged(genesis), TESTNET)
    assert forged.id == decode_event(genesis, TESTNET).id
    with pytest.raises(BadSignatureError):
        cache.verify(forged, TESTNET)
    cache.verify(decode_event(genesis, TESTNET), TESTNET)  # the genuine one passes
    # The decoded event is handed over for exactly the same bytes only.
    assert (
        cache.decode(_forged(genesis), TESTNET).signature
        != cache.decode(genesis, TESTNET).signature
    )


def test_control_api_survives_hostile_requests(nodes: tuple[DemoNode, DemoNode]) -> None:
    """Deeply nested JSON and wrong params get an error answer; the daemon
    keeps serving (a local caller is trusted, but a crash is still a bug)."""
    import json
    import socket

    a, _ = nodes
    for line in (
        b"[" * 200_000 + b"\n",
        b'{"method": "node.status", "params": []}\n',
        b'{"method": "event.submit", "params": {"event": "zz"}}\n',
    ):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(a.dir / "control.sock"))
            s.sendall(line)
            answer = json.loads(s.makefile("rb").readline())
            assert "error" in answer
    assert a.client.call("node.status")["peer_id"] == a.peer_id


GATED = [
    "/smu/replication/3",
    "/smu/link/1",
    "/smu/message/1",
    "/smu/mailbox/1",
]


async def _answers(peer: Hostile, addr: str, protocol: str, fresh: bool = True) -> bool:
    """Open a ``protocol`` stream (on a fresh connection unless told
    otherwise), send a small well-formed request frame, and say whether any
    answer byte comes back before the stream ends."""
    from protocol.messaging.mailbox import challenge_request

    info = info_from_p2p_addr(parse_multiaddr(addr))
    if fresh:
        await peer.host.disconnect(info.peer_id)
        peer.host.get_network().unblock_peer(info.peer_id)  # libp2p's dial back-off
    try:
        await peer.host.connect(info)
        stream = await peer.host.new_stream(info.peer_id, [TProtocol(protocol)])
        # a mailbox challenge request: every protocol answers a frame it can
        # parse with something (an error frame at least), or closes
        await stream.write(frame(challenge_request(b"\x07" * 32)))
        with trio.move_on_after(5):
            return bool(await stream.read(1))
    except Exception:  # refused: the stream or the connection was closed
        return False
    return False


@pytest.mark.parametrize("cause", ["banned", "refused"])
async def test_a_banned_or_refused_peer_is_refused_on_every_protocol(
    nodes: tuple[DemoNode, DemoNode], cause: str
) -> None:
    """One gate for every SMU protocol (DESIGN §10): before reading a byte,
    each handler asks it; a peer in back-off after misbehaving on
    replication, or on the user's refused list, gets no answer anywhere."""
    a, _ = nodes
    async with hostile_peer(a.addr) as peer:
        me = peer.host.get_id().to_base58()
        # before: the mailbox answers this peer (with a refusal frame)
        assert await _answers(peer, a.addr, "/smu/mailbox/1", fresh=False)
        if cause == "banned":
            await peer.send(b"\xff\x00 not msgpack at all")
            assert await peer.disconnected_within(10)
        else:
            await trio.to_thread.run_sync(lambda: a.client.call("peers.refuse", peer=me))
        for protocol in GATED:
            assert not await _answers(peer, a.addr, protocol), protocol
        status = await trio.to_thread.run_sync(lambda: a.client.call("node.status"))
        # Each attempt met the gate (reset before a byte was read) or found
        # its connection closed at once: a ban or a refusal also closes the
        # peer's connections, and new ones are closed as they open (§17.1).
        refused = sum(status["gate"]["refused"].values())
        assert refused + status["links"]["refused_connections"] >= 1
        if cause == "banned":
            assert status["links"]["bans"] >= 1
    # and the node is still serving everyone else
    assert (await trio.to_thread.run_sync(lambda: a.client.call("node.status")))["peers"] == 1
