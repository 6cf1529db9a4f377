"""Helpers for tests that run real ``smu node`` processes on loopback, in
one place: starting nodes, waiting with failures that explain themselves,
a raw libp2p peer in the test process, and small readers of node state.

A wait that times out says what it waited for, the last value it saw, and
the tail of every running node's log.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from node.netdemo import Demo, DemoNode
from node.transport import REPLICATION_PROTOCOL, frame, make_host, parse_multiaddr, read_frame
from protocol.messaging.mailbox import MAX_ANSWER_FRAME, Answer, decode_answer
from protocol.messaging.mailbox import PROTOCOL_ID as MAILBOX_PROTOCOL

#: every Demo a test opened, so a failed wait can show its nodes' logs
ACTIVE: list[Demo] = []
LOG_TAIL_LINES = 25

T = TypeVar("T")


def log_tails(lines: int = LOG_TAIL_LINES) -> str:
    out = []
    for demo in ACTIVE:
        for node in demo.nodes:
            path = node.dir / "node.log"
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                text = ["(no log)"]
            state = "running" if node.proc is not None and node.proc.poll() is None else "stopped"
            out.append(f"--- {node.name} ({state}), last {len(text)} lines of {path} ---")
            out.extend(text)
    return "\n".join(out)


def _describe(fn: Callable[[], object]) -> str:
    try:
        return inspect.getsource(fn).strip()
    except (OSError, TypeError):
        return repr(fn)


def wait_for(fn: Callable[[], T], timeout: float = 30.0, what: str | None = None) -> T:
    """Poll ``fn`` until it returns something truthy (real processes settle
    in their own time); on timeout, fail with what was awaited, the last
    value and the nodes' logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for: {what or _describe(fn)}\n"
                f"last value: {value!r}\n{log_tails()}"
            )
        time.sleep(0.05)


class LabNode(DemoNode):
    """A node run by ``tests/lab_node.py``: ``smu node run`` but for its
    mailbox's network groups, which tell loopback depositors apart by the
    /24 of their address (a test-only constructor argument of ``Daemon``)."""

    #: more arguments of ``tests/lab_node.py``
    lab_args: tuple[str, ...] = ()

    def start_existing(self, bootstrap: list[str] | None = None, listen: str | None = None) -> None:
        assert listen is None, "a lab node listens where the daemon's default is"
        cmd = [sys.executable, "-m", "tests.lab_node", "--data-dir", str(self.dir), *self.lab_args]
        for b in bootstrap or []:
            cmd += ["--bootstrap", b]
        log = open(self.dir / "node.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)


class NotingLabNode(LabNode):
    """A LabNode that notes the peer id of each deposit and prekey fetch it
    answers in its log (``tests/lab_node.py --note-requests``)."""

    lab_args = ("--note-requests",)

    def noted(self, what: str) -> list[tuple[str, bool]]:
        """(peer id, named by a record it held) per ``what`` request noted:
        ``mailbox`` (a deposit) or ``prekey`` (a fetch)."""
        out = []
        for line in (self.dir / "node.log").read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[:2] == ["lab-note", what]:
                out.append((parts[2], parts[3] == "named=1"))
        return out


def start_nodes(
    d: Demo, names: list[str], bootstrap: list[str] | None = None, kind: type[DemoNode] = DemoNode
) -> list[DemoNode]:
    """Start ``smu node run`` processes and wait until each answers."""
    nodes = [kind(d.base, n) for n in names]
    d.nodes.extend(nodes)
    for n in nodes:
        n.start(bootstrap)
    for n in nodes:
        n.wait_ready()
    return nodes


def alice_and_bob(
    d: Demo, names: list[str], bob_on: int
) -> tuple[list[DemoNode], dict[str, Any], dict[str, Any]]:
    """Start nodes linked in a chain, create alice on the first and bob on
    node ``bob_on``, and wait until every node holds both accounts."""
    nodes = start_nodes(d, names)
    for left, right in itertools.pairwise(nodes):
        d.connect(left, right)
    alice: dict[str, Any] = nodes[0].client.call("account.create", name="alice")
    bob: dict[str, Any] = nodes[bob_on].client.call("account.create", name="bob")
    d.wait_converged(d.nodes)
    return nodes, alice, bob


def contacts_through_a_mailbox(
    d: Demo,
) -> tuple[DemoNode, DemoNode, DemoNode, dict[str, Any], dict[str, Any]]:
    """A mailbox node ``m`` (a LabNode: its peers count as distinct network
    groups) between alice's node ``a`` and bob's ``b``, the two accounts each
    other's contacts: (m, a, b, alice, bob)."""
    (m,) = start_nodes(d, ["mailbox"], kind=LabNode)
    a, b = start_nodes(d, ["alice", "bob"])
    d.connect(a, m)
    d.connect(m, b)
    alice: dict[str, Any] = a.client.call("account.create", name="alice")
    bob: dict[str, Any] = b.client.call("account.create", name="bob")
    d.wait_converged(d.nodes)
    a.client.call("contact.add", ref=bob["account_id"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    return m, a, b, alice, bob


def smu(node: DemoNode, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``smu`` CLI against ``node``."""
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args, "--data-dir", str(node.dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def texts(node: DemoNode, contact: str) -> list[str]:
    return [
        m["text"] for m in node.client.call("message.conversation", contact=contact)["messages"]
    ]


def delivered(node: DemoNode, message_id: str) -> dict[str, int]:
    return dict(node.client.call("message.status", ids=[message_id])["deliveries"][message_id])


def statuses(node: DemoNode, account: str) -> dict[str, str]:
    doc = node.client.call("account.show", account=account)
    return {d["name"]: d["status"] for d in doc["devices"]}


# -- a raw libp2p peer in the test process --------------------------------------


class Hostile:
    """A libp2p host in this process with one replication stream to a node."""

    def __init__(self, host: Any, stream: Any) -> None:
        self.host, self.stream = host, stream

    async def send_raw(self, data: bytes) -> None:
        await self.stream.write(data)

    async def send(self, payload: bytes) -> None:
        await self.stream.write(frame(payload))

    async def disconnected_within(self, seconds: float) -> bool:
        """Read until the node closes the stream (True) or time runs out."""
        with trio.move_on_after(seconds):
            try:
                while True:
                    if not await self.stream.read(65536):
                        return True
            except Exception:
                return True
        return False

    async def refused(self, addr: str) -> bool:
        """A new stream from this peer is closed at once (back-off)."""
        try:
            stream = await self.host.new_stream(
                info_from_p2p_addr(parse_multiaddr(addr)).peer_id, [TProtocol(REPLICATION_PROTOCOL)]
            )
        except Exception:
            return True
        return await Hostile(self.host, stream).disconnected_within(5)


@asynccontextmanager
async def hostile_peer(addr: str, protocol: str = REPLICATION_PROTOCOL) -> AsyncIterator[Hostile]:
    host = make_host(os.urandom(32))
    async with host.run([parse_multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(parse_multiaddr(addr))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [TProtocol(protocol)])
        try:
            yield Hostile(host, stream)
        finally:
            await host.close()


class MailboxPeer:
    """A raw libp2p host in this process that speaks ``/smu/mailbox/1``:
    one request per stream, as a node does."""

    def __init__(self, host: Any, peer_id: Any) -> None:
        self.host, self.peer_id = host, peer_id

    async def ask(self, request: bytes) -> Answer:
        stream = await self.host.new_stream(self.peer_id, [TProtocol(MAILBOX_PROTOCOL)])
        try:
            await stream.write(frame(request))
            return decode_answer(await read_frame(stream, MAX_ANSWER_FRAME))
        finally:
            with contextlib.suppress(Exception):
                await stream.close()


@asynccontextmanager
async def mailbox_peer(addr: str, source_ip: str = "127.0.0.1") -> AsyncIterator[MailboxPeer]:
    """A fresh peer id (a new key every time) connected to the node at
    ``addr`` from ``source_ip``: any 127.x.y.z, so that a lab node's
    mailbox (``LabNode``) sees it in the network group of that address."""
    host = make_host(os.urandom(32))
    for transport in host.get_network().transport_manager.get_transports():
        if hasattr(transport, "dial_with_source"):  # dial from source_ip, not 127.0.0.1
            transport.dial = functools.partial(transport.dial_with_source, source=(source_ip, 0))
    async with host.run([parse_multiaddr(f"/ip4/{source_ip}/tcp/0")]):
        info = info_from_p2p_addr(parse_multiaddr(addr))
        await host.connect(info)
        try:
            yield MailboxPeer(host, info.peer_id)
        finally:
            await host.close()
