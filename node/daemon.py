"""`smu node run`: the daemon (DESIGN §2, §4, §7).

A thin adapter.  libp2p streams and timers feed the sans-I/O ``Replicator``;
``_apply`` is the one place its outputs are carried out, and it flushes the
SQLite store first, so nothing is forwarded or acknowledged before it is
durable.  All protocol calls run on the trio thread, one at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from protocol.core.errors import InvalidInput, UsageError
from protocol.core.keys import RecoveryKey, handle
from protocol.core.params import NetworkParams, network_by_id
from protocol.links.policy import (
    UNKNOWN_GROUP,
    LinkInfo,
    LinkLimits,
    Verdict,
    addresses_at,
    admit,
    dial_candidates,
    multiaddr_host,
    network_group,
)
from protocol.log import authoring
from protocol.log.ledger import IngestStatus, Ledger
from protocol.log.store import Escrow
from protocol.records.device import make_record, text_ok
from protocol.sync.replication import (
    Delivered,
    Disconnect,
    Misbehaved,
    Output,
    PeersLearned,
    RecordAccepted,
    ReplicationConfig,
    Replicator,
    Send,
)
from protocol.sync.wire import WireLimits

from . import control
from .account_rpc import AccountMethods
from .contacts import ContactMethods
from .control import RpcFailure
from .datadir import DataDir, Secrets
from .errors import PeerError
from .linking_node import LINK_PROTOCOL, LinkMethods
from .mailbox_node import MAILBOX_PROTOCOL, MailboxService
from .messages import MESSAGE_PROTOCOL, MessageMethods
from .preverify import VerifiedCache
from .render import state_json
from .storage import SqliteEventStore
from .transport import REPLICATION_PROTOCOL, frame, make_host, parse_multiaddr, read_frame

log = logging.getLogger("smu.node")

LINK_LIMITS = LinkLimits()
LINK_QUEUE = 1024
BOOTSTRAP_INTERVAL = 2.0
#: after a failed dial, how long the other side's simultaneous dial may take
DIAL_RACE_WAIT = 2.0
#: frames a link's reader and checker may run ahead of the applier
READ_AHEAD = 8
#: worker threads checking signatures (libsodium releases the GIL)
VERIFY_THREADS = 2
ESCROW_EVENTS = 40_000
ESCROW_BYTES = 32 << 20
ESCROW_PER_PEER = 16_000
RECORD_LIFETIME_MS = 24 * 3600 * 1000


@dataclass
class Link:
    peer: str
    stream: Any
    outbound: bool
    #: the remote host of the connection, and its network group
    #: (protocol/links/policy.py)
    host: str
    group: str
    send: trio.MemorySendChannel[bytes]
    recv: trio.MemoryReceiveChannel[bytes]
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)


class Daemon:
    def __init__(
        self,
        datadir: DataDir,
        secrets: Secrets,
        listen: list[str],
        bootstrap: list[str],
        replication: ReplicationConfig | None = None,
    ) -> None:
        self.datadir = datadir
        self.secrets = secrets
        self.config = datadir.read_config()
        self.params: NetworkParams = network_by_id(str(self.config["network"]))
        self.listen = listen
        self.bootstrap = list(bootstrap)
        self.store = SqliteEventStore(datadir.db_path)
        started = time.monotonic()
        # Events in the store were verified before they were stored;
        # `smu log verify` re-checks them from scratch.
        self.ledger = Ledger(
            self.params,
            store=self.store,
            # A catching-up node receives many events before their parents;
            # the escrow holds them in memory (bounded), never on disk.
            escrow=Escrow(
                max_events=ESCROW_EVENTS, max_bytes=ESCROW_BYTES, per_source=ESCROW_PER_PEER
            ),
            verify_signatures_on_load=False,
        )
        self.verified = VerifiedCache(self.params, WireLimits())
        self.verifiers = trio.CapacityLimiter(VERIFY_THREADS)
        self.ledger.verify = self.verified.verify
        self.ledger.decode = self.verified.decode
        log.info("loaded %d events in %.2fs", self.ledger.event_count, time.monotonic() - started)
        self.replicator = Replicator(
            self.ledger,
            random.Random(os.urandom(16)),
            replication or ReplicationConfig(),
            # device records are judged by the wall clock (PROTOCOL.md §16)
            wall_ms=lambda now: int(time.time() * 1000),
        )
        self.links: dict[str, Link] = {}
        self.refused: set[str] = set()
        #: peers that misbehaved: no link with them until then (any direction)
        self.backoff: dict[str, float] = {}
        #: peers a dial of ours failed to reach: not dialled again until then
        #: (they may still connect to us)
        self.redial_after: dict[str, float] = {}
        #: learned peers being dialled (peer -> group), counted as outbound
        self._dialing: dict[str, str] = {}
        #: set when a link with that peer is registered
        self._link_waiters: dict[str, set[trio.Event]] = {}
        self.host: Any = None
        self.peer_id = ""
        self._stop = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.subscribers: list[Callable[[dict[str, Any]], None]] = []
        self.linking = LinkMethods(self)
        self.contacts = ContactMethods(self)
        self.messages = MessageMethods(self)
        self.mailbox = MailboxService(self)

    # -- running ----------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host = make_host(self.secrets.node_seed)
        self.peer_id = self.host.get_id().to_base58()
        self.host.set_stream_handler(TProtocol(REPLICATION_PROTOCOL), self._on_inbound)
        self.host.set_stream_handler(LINK_PROTOCOL, self.linking.on_stream)
        self.host.set_stream_handler(MESSAGE_PROTOCOL, self.messages.on_stream)
        self.host.set_stream_handler(MAILBOX_PROTOCOL, self.mailbox.on_stream)
        addrs = [parse_multiaddr(a) for a in self.listen]
        async with self.host.run(addrs), trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(control.serve, self.datadir.socket_path, self.methods())
            nursery.start_soon(self._timers)
            nursery.start_soon(self._bootstrap_loop)
            nursery.start_soon(self.linking.run_timers)
            nursery.start_soon(self.messages.run_delivery)
            nursery.start_soon(self._records_loop)
            nursery.start_soon(self.mailbox.run)
            nursery.start_soon(self._signals)
            self.mailbox.start()
            self.replicator.set_self(self.peer_id, [a.split("/p2p/")[0] for a in self.addresses()])
            log.info("node %s listening on %s", self.peer_id, ", ".join(self.addresses()))
            task_status.started()
            await self._stop.wait()
            log.info("shutting down")
            for link in list(self.links.values()):
                link.cancel.cancel()
            # Leaving host.run() does not close connections: close explicitly.
            with trio.move_on_after(5):
                await self.host.close()
            self.store.close()
            nursery.cancel_scope.cancel()

    def stop(self) -> None:
        self._stop.set()

    @property
    def account(self) -> bytes | None:
        """This device's account, if it has one."""
        account = self.config.get("account")
        return bytes.fromhex(str(account)) if account else None

    def own_account(self) -> bytes:
        """This device's account, or the control API's one-line answer."""
        account = self.account
        if account is None:
            raise RpcFailure(
                control.USAGE,
                "this device has no account yet: create one with "
                "`smu account create` or join one with `smu device join`",
            )
        return account

    def device_active(self) -> bool:
        account = self.account
        return (
            account is not None
            and self.secrets.device.sign_public in self.ledger.state(account).active_keys
        )

    def publish_own_record(self) -> None:
        """Sign and publish where this device can be reached (PROTOCOL.md §16)."""
        publish = getattr(self.replicator, "publish_record", None)
        account_id = self.account
        if account_id is None or publish is None or self.host is None or not self.device_active():
            return
        # only what a v2 record may carry (PROTOCOL.md §16): one odd address
        # must not keep the whole record from being published
        addrs = tuple(a for a in (a.split("/p2p/")[0] for a in self.addresses()) if text_ok(a))[:8]
        try:
            record = make_record(
                self.params,
                account_id,
                self.secrets.device,
                timestamp=int(time.time() * 1000),
                lifetime_ms=RECORD_LIFETIME_MS,
                peer_ids=(self.peer_id,),
                addrs=addrs,
                mailboxes=tuple(
                    (grant.raw, mb_addrs[:2]) for grant, mb_addrs in self.mailbox.grants
                ),
            )
            self.apply(publish(record.raw, trio.current_time()))
        except InvalidInput as exc:
            log.warning("own device record refused: %s", exc)

    async def _records_loop(self) -> None:
        while True:
            self.publish_own_record()
            await trio.sleep(RECORD_LIFETIME_MS / 4000)

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.stop()
                return

    def addresses(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()] if self.host else []

    async def _timers(self) -> None:
        while True:
            deadline = self.replicator.next_deadline()
            now = trio.current_time()
            wake = now + 1.0 if deadline is None else min(deadline, now + 1.0)
            await trio.sleep_until(wake)
            self.apply(self.replicator.tick(trio.current_time()))

    async def _bootstrap_loop(self) -> None:
        while True:
            for addr in list(self.bootstrap):
                peer = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else None
                if peer is None or peer in self.links or peer in self.refused:
                    continue
                if self._held_back(peer, trio.current_time()):
                    continue
                try:
                    await self.dial(addr)
                except Exception as exc:
                    log.debug("bootstrap dial %s failed: %s", addr, exc)
                    self.redial_after[peer] = trio.current_time() + BOOTSTRAP_INTERVAL * 2
            self._dial_learned()
            self._forget_expired()
            await trio.sleep(BOOTSTRAP_INTERVAL)

    def _held_back(self, peer: str, now: float) -> bool:
        """Not to be dialled on our own yet: it misbehaved, or our last
        dial failed."""
        return max(self.backoff.get(peer, 0.0), self.redial_after.get(peer, 0.0)) > now

    def _forget_expired(self) -> None:
        now = trio.current_time()
        for table in (self.backoff, self.redial_after):
            for peer in [p for p, until in table.items() if until <= now]:
                del table[peer]

    # -- links ----------------------------------------------------------------

    async def dial(self, addr: str) -> str:
        maddr = parse_multiaddr(addr)
        info = info_from_p2p_addr(maddr)
        peer = info.peer_id.to_base58()
        if peer == self.peer_id:
            raise ValueError("that address is this node")
        if peer in self.refused:
            raise ValueError(f"peer {peer} is on the refused list")
        if peer in self.links:
            return peer
        await self.host.connect(info)
        stream = await self.host.new_stream(info.peer_id, [TProtocol(REPLICATION_PROTOCOL)])
        self.replicator.note_addresses(peer, [str(a) for a in info.addrs])
        assert self._nursery is not None
        self._nursery.start_soon(self._run_link, peer, stream, True)
        return peer

    async def wait_linked(self, peer: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a link with ``peer``."""
        if peer in self.links:
            return True
        waiter = trio.Event()
        waiters = self._link_waiters.setdefault(peer, set())
        waiters.add(waiter)
        try:
            with trio.move_on_after(timeout):
                await waiter.wait()
        finally:
            waiters.discard(waiter)
            if not waiters and self._link_waiters.get(peer) is waiters:
                del self._link_waiters[peer]
        return peer in self.links

    def _vouch_for_sender(self, learned: PeersLearned) -> None:
        """A peer's own entry, at the host its connection comes from, is
        shared onwards (PROTOCOL.md §11.8.1): it can vouch for itself only
        where it is, so nobody can make us advertise someone else."""
        link = self.links.get(str(learned.source))
        if link is None:
            return
        here = addresses_at(learned.sender_addrs, link.host)
        if here:
            self.replicator.note_addresses(link.peer, here)

    def _link_infos(self) -> list[LinkInfo]:
        """Our links and the learned peers being dialled (soon links)."""
        links = [LinkInfo(link.outbound, link.group) for link in self.links.values()]
        return links + [LinkInfo(True, group) for group in self._dialing.values()]

    def _dial_learned(self) -> None:
        """Peer exchange (PROTOCOL.md §11.8): dial learned peers while
        outbound links are few, in networks not linked yet (§11.5.3); the
        dial itself authenticates the peer."""
        if self._nursery is None:
            return
        now = trio.current_time()
        addrs: dict[str, str] = {}
        candidates: list[tuple[str, str]] = []
        for peer, peer_addrs in self.replicator.learned_peers():
            if (
                peer in self.links
                or peer in self._dialing
                or peer in self.refused
                or peer == self.peer_id
                or not peer_addrs
                or self._held_back(peer, now)
            ):
                continue
            host = multiaddr_host(peer_addrs[0])
            if host is None:
                continue
            addrs[peer] = peer_addrs[0]
            candidates.append((peer, network_group(host)))
        groups = dict(candidates)
        for peer in dial_candidates(self._link_infos(), candidates, LINK_LIMITS):
            self._dialing[peer] = groups[peer]
            self._nursery.start_soon(self._dial_learned_peer, peer, addrs[peer])

    async def _dial_learned_peer(self, peer: str, addr: str) -> None:
        # On success ``_run_link`` takes the peer off ``_dialing`` as it
        # registers the link, so it counts as outbound all along.
        try:
            await self.dial(f"{addr}/p2p/{peer}")
        except Exception as exc:
            log.debug("peer exchange dial %s failed: %s", peer, exc)
            self.redial_after[peer] = trio.current_time() + 60.0
            self._dialing.pop(peer, None)

    async def _on_inbound(self, stream: Any) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        await self._run_link(peer, stream, False)

    def _keep_new_link(self, peer: str, outbound: bool) -> bool:
        """Both sides may dial at once: keep the stream opened by the lower peer id."""
        existing = self.links.get(peer)
        if existing is None:
            return True
        initiator_new = self.peer_id if outbound else peer
        keep_new = initiator_new == min(self.peer_id, peer)
        if keep_new:
            existing.cancel.cancel()
            self._drop_link(existing)
        return keep_new

    def _admit(self, peer: str, group: str, outbound: bool) -> bool:
        """Room for a new link (§11.5.3)?  A peer already linked is a
        duplicate dial, settled by ``_keep_new_link``."""
        if peer in self.links:
            return True
        verdict = admit(self._link_infos(), group, outbound, LINK_LIMITS)
        if verdict is not Verdict.ACCEPT:
            log.info("refusing a link with %s: %s", peer, verdict.value)
        return verdict is Verdict.ACCEPT

    async def _run_link(self, peer: str, stream: Any, outbound: bool) -> None:
        self._dialing.pop(peer, None)  # registered or refused below, without a pause
        remote = stream.get_remote_address()
        host = str(remote[0]) if remote else ""
        group = network_group(host) if host else UNKNOWN_GROUP
        if (
            peer in self.refused
            or self.backoff.get(peer, 0.0) > trio.current_time()
            or not self._admit(peer, group, outbound)
            or not self._keep_new_link(peer, outbound)
        ):
            await _close_quietly(stream)
            return
        send, recv = trio.open_memory_channel[bytes](LINK_QUEUE)
        link = Link(peer, stream, outbound, host, group, send, recv)
        self.links[peer] = link
        for waiter in self._link_waiters.pop(peer, ()):
            waiter.set()
        log.info("peer %s connected (%s)", peer, "outbound" if outbound else "inbound")
        try:
            with link.cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, link)
                    self.apply(self.replicator.connect(peer, trio.current_time()))
                    await self._reader(link)
                    nursery.cancel_scope.cancel()
        finally:
            if self.links.get(peer) is link:
                self._drop_link(link)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await _close_quietly(stream)

    def _drop_link(self, link: Link) -> None:
        if self.links.get(link.peer) is link:
            del self.links[link.peer]
            log.info("peer %s disconnected", link.peer)
            self.apply(self.replicator.disconnect(link.peer, trio.current_time()))

    async def _reader(self, link: Link) -> None:
        """Read frames, check each in a worker thread (decoding and
        signatures; VERIFY_THREADS at once, since libsodium releases the GIL),
        and apply them strictly in the order they arrived."""
        ordered_send, ordered_recv = trio.open_memory_channel[tuple[bytes, trio.Event]](READ_AHEAD)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_frames, link, ordered_send, nursery)
            async for data, checked in ordered_recv:
                await checked.wait()
                self.apply(self.replicator.receive(link.peer, data, trio.current_time()))
            nursery.cancel_scope.cancel()

    async def _read_frames(
        self,
        link: Link,
        out: trio.MemorySendChannel[tuple[bytes, trio.Event]],
        nursery: trio.Nursery,
    ) -> None:
        limit = self.replicator.config.max_frame_bytes
        async with out:
            while True:
                try:
                    data = await read_frame(link.stream, limit)
                except PeerError as exc:
                    log.warning("peer %s: %s; disconnecting", link.peer, exc)
                    self.backoff[link.peer] = trio.current_time() + 60.0
                    return
                except Exception as exc:  # stream reset, EOF, libp2p errors
                    log.debug("peer %s: link ended: %s", link.peer, exc)
                    return
                checked = trio.Event()
                nursery.start_soon(self._check, data, checked)
                await out.send((data, checked))

    async def _check(self, data: bytes, checked: trio.Event) -> None:
        try:
            await trio.to_thread.run_sync(self.verified.preverify, data, limiter=self.verifiers)
        finally:
            checked.set()

    async def _writer(self, link: Link) -> None:
        async for data in link.recv:
            try:
                await link.stream.write(frame(data))
            except Exception as exc:
                log.debug("peer %s: write failed: %s", link.peer, exc)
                link.cancel.cancel()
                return

    # -- carrying out the machine's outputs ----------------------------------

    def apply(self, outputs: list[Output]) -> None:
        try:
            self.store.flush()  # persist before forwarding or acknowledging
        except Exception:
            # The ledger in memory is now ahead of the disk and nothing of
            # it may be forwarded: stop; a restart loads what is stored and
            # fetches the rest again.
            log.critical("cannot write the event store; stopping", exc_info=True)
            self.stop()
            raise
        for out in outputs:
            if isinstance(out, Send):
                link = self.links.get(out.peer)
                if link is None:
                    continue
                try:
                    link.send.send_nowait(out.frame)
                except trio.WouldBlock:
                    log.warning("peer %s is not reading; disconnecting", out.peer)
                    link.cancel.cancel()
            elif isinstance(out, Disconnect):
                self.backoff[out.peer] = out.until
                link = self.links.get(out.peer)
                log.warning("disconnecting peer %s: %s", out.peer, out.reason)
                if link is not None:
                    link.cancel.cancel()
            elif isinstance(out, Delivered):
                note = {
                    "event_id": out.event.id.hex(),
                    "account": out.event.account_id.hex(),
                    "kind": out.event.kind.name.lower(),
                    "from": out.source,
                }
                for subscriber in list(self.subscribers):
                    subscriber(note)
            elif isinstance(out, RecordAccepted):
                self.messages.wake.set()  # deliveries may have waited for this record
            elif isinstance(out, PeersLearned):
                self._vouch_for_sender(out)
                self._dial_learned()
            elif isinstance(out, Misbehaved):
                log.warning(
                    "peer %s sent invalid input: %s (%s)", out.peer, out.error.code, out.error
                )

    # -- control API -----------------------------------------------------------

    def methods(self) -> dict[str, control.Handler]:
        return {
            "node.status": self._rpc_status,
            "node.stop": self._rpc_stop,
            "peers.list": self._rpc_peers,
            "peers.connect": self._rpc_connect,
            "peers.disconnect": self._rpc_disconnect,
            "peers.refuse": self._rpc_refuse,
            "peers.unrefuse": self._rpc_unrefuse,
            "event.submit": self._rpc_submit,
            "account.create": self._rpc_account_create,
            "account.show": self._rpc_account_show,
            "account.list": self._rpc_account_list,
            "event.has": self._rpc_event_has,
            **AccountMethods(self).handlers(),
            **self.contacts.handlers(),
            **self.linking.handlers(),
            **self.messages.handlers(),
        }

    def set_digest(self) -> str:
        """The §11.3 fingerprint of the whole event set: equal digests, equal
        sets; kept up to date by the reconciliation index, so O(1)."""
        index = self.replicator.index
        return index.fingerprint(0, len(index)).hex()

    async def _rpc_status(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "network": self.params.network_id,
            "listen": self.addresses(),
            "peers": len(self.links),
            "events": self.ledger.event_count,
            "accounts": len(self.ledger.accounts),
            "escrow": len(self.ledger.escrow),
            "event_set_digest": self.set_digest(),
            "account": self.config.get("account"),
            "device_fingerprint": self.secrets.device.fingerprint,
            "replication": dataclasses.asdict(self.replicator.stats),
        }

    async def _rpc_stop(self, params: dict[str, Any]) -> dict[str, Any]:
        self.stop()
        return {"stopping": True}

    async def _rpc_peers(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "peers": [
                {
                    "peer_id": p,
                    "score": round(self.replicator.score(p), 3),
                    "direction": "outbound" if link.outbound else "inbound",
                }
                for p, link in sorted(self.links.items())
            ],
            "refused": sorted(self.refused),
        }

    async def _rpc_connect(self, params: dict[str, Any]) -> dict[str, Any]:
        addr = str(params["addr"])
        try:
            info = info_from_p2p_addr(parse_multiaddr(addr))
        except Exception as exc:
            raise RpcFailure(control.USAGE, f"not a peer address ({exc}): {addr}") from exc
        # Asked explicitly: dial even if libp2p saw the peer fail lately
        # (it refuses such dials for a minute).
        network = self.host.get_network()
        network.unblock_peer(info.peer_id)
        try:
            peer = await self.dial(addr)
        except ValueError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        except Exception as exc:
            # The peer may have dialled us at the same moment: libp2p keeps
            # one connection per peer and can close both.  Its own dial then
            # backs off, so either the link it opened stands, or a second
            # dial of ours meets no race.
            peer = info.peer_id.to_base58()
            if not await self.wait_linked(peer, DIAL_RACE_WAIT):
                log.info("dial %s failed (%s); trying once more", addr, exc)
                network.unblock_peer(info.peer_id)
                try:
                    await self.dial(addr)
                except Exception as again:
                    raise RpcFailure(
                        control.USAGE, f"could not connect to {addr}: {again}"
                    ) from again
        # Wait until the link is registered, so callers can rely on it.
        return {"peer_id": peer, "connected": await self.wait_linked(peer, 5.0)}

    async def _rpc_disconnect(self, params: dict[str, Any]) -> dict[str, Any]:
        peer = str(params["peer"])
        link = self.links.get(peer)
        if link is None:
            raise RpcFailure(control.USAGE, f"not connected to {peer}")
        link.cancel.cancel()
        with trio.move_on_after(5):
            while self.links.get(peer) is link:
                await trio.sleep(0.01)
        return {"peer_id": peer, "disconnected": True}

    async def _rpc_refuse(self, params: dict[str, Any]) -> dict[str, Any]:
        peer = str(params["peer"])
        self.refused.add(peer)
        link = self.links.get(peer)
        if link is not None:
            link.cancel.cancel()
            with trio.move_on_after(5):
                while self.links.get(peer) is link:
                    await trio.sleep(0.01)
        return {"refused": sorted(self.refused)}

    async def _rpc_unrefuse(self, params: dict[str, Any]) -> dict[str, Any]:
        self.refused.discard(str(params["peer"]))
        return {"refused": sorted(self.refused)}

    async def _rpc_submit(self, params: dict[str, Any]) -> dict[str, Any]:
        raw = bytes.fromhex(str(params["event"]))
        try:
            result_status, event_id, _ = self.publish(raw)
        except InvalidInput as exc:
            raise RpcFailure(
                control.INVALID_INPUT, f"{exc.code}: {exc}", {"code": exc.code}
            ) from exc
        return {"status": result_status, "event_id": event_id}

    def publish(self, raw: bytes) -> tuple[str, str, list[Output]]:
        before = self.ledger.event_count
        outputs = self.replicator.publish(raw, trio.current_time())
        self.apply(outputs)  # flushes the store before anything is reported
        from protocol.log.events import decode_event

        event = decode_event(raw, self.params)
        if self.ledger.has(event.id):
            status = (
                IngestStatus.ACCEPTED
                if self.ledger.event_count > before
                else IngestStatus.DUPLICATE
            )
        else:
            status = IngestStatus.ESCROWED
        return status.value, event.id.hex(), outputs

    async def _rpc_account_create(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.config.get("account"):
            raise RpcFailure(control.USAGE, "this device already belongs to an account")
        name = str(params["name"])
        recovery = RecoveryKey(os.urandom(32))
        device_name = str(self.config.get("device_name") or "device")
        try:
            event = await trio.to_thread.run_sync(
                lambda: authoring.genesis(
                    self.params,
                    self.secrets.device,
                    recovery,
                    display_name=name,
                    device_name=device_name,
                    timestamp=int(time.time() * 1000),
                )
            )
        except UsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        self.publish(event.raw)
        self.config["account"] = event.id.hex()
        self.datadir.write_config(self.config)
        self.publish_own_record()
        return {
            "account_id": event.id.hex(),
            "handle": handle(name, event.id),
            # The only time the recovery key leaves the node: the CLI shows it once.
            "recovery_key": recovery.to_paper(),
        }

    def resolve_account(self, ref: str | None) -> bytes:
        if not ref:
            return self.own_account()
        try:
            if len(ref) == 64:
                return bytes.fromhex(ref)
        except ValueError:
            pass
        suffix = ref.rsplit(".", 1)[-1].lower()
        matches = [
            a
            for a, lg in self.ledger.accounts.items()
            if handle(lg.state().display_name, a).rsplit(".", 1)[-1].startswith(suffix)
        ]
        if len(matches) != 1:
            raise RpcFailure(
                control.USAGE,
                f"no single account matches {ref!r} ({len(matches)} found): use the account id",
            )
        return matches[0]

    async def _rpc_account_show(self, params: dict[str, Any]) -> dict[str, Any]:
        account = self.resolve_account(params.get("account"))
        if account not in self.ledger.accounts:
            raise RpcFailure(control.USAGE, f"account {account.hex()} is not known here")
        return state_json(self.ledger.state(account))

    async def _rpc_event_has(self, params: dict[str, Any]) -> dict[str, Any]:
        ids = [str(i) for i in params["ids"]]
        return {"present": [i for i in ids if self.ledger.has(bytes.fromhex(i))]}

    async def _rpc_account_list(self, params: dict[str, Any]) -> dict[str, Any]:
        out = []
        for account in sorted(self.ledger.accounts):
            s = self.ledger.state(account)
            out.append(
                {
                    "account_id": account.hex(),
                    "handle": handle(s.display_name, account),
                    "status": s.status.value,
                    "devices_active": len(s.active_keys),
                    "events": s.event_count,
                }
            )
        return {"accounts": out}


async def _close_quietly(stream: Any) -> None:
    try:
        await stream.reset()
    except Exception:
        with contextlib.suppress(Exception):
            await stream.close()


def run_daemon(datadir: DataDir, secrets: Secrets, listen: list[str], bootstrap: list[str]) -> None:

    daemon = Daemon(datadir, secrets, listen, bootstrap)
    trio.run(daemon.run)
