"""`smu node run`: the daemon (DESIGN §2, §4, §7).

Lifecycle only: it opens the store, builds the services (one per
control-API namespace, ``node/services/``) over a ``NodeContext`` that it
implements itself, puts every SMU protocol behind the admission gate, and
runs everything in one trio nursery.  Decisions live in the protocol
machines; ``node/links.py`` and ``node/replication.py`` adapt the link
manager and the replication machine to libp2p.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, Unpack

import trio
from libp2p.tools.anyio_service import background_trio_service

from protocol.core.errors import InvalidInput
from protocol.core.keys import DeviceKeys, handle
from protocol.core.params import NetworkParams, network_by_id
from protocol.linking.wire import PROTOCOL_ID as LINK_PROTOCOL_ID
from protocol.links.addresses import DEFAULT, Classifier
from protocol.links.reachability import ReachConfig
from protocol.log.ledger import Ledger
from protocol.log.store import Escrow
from protocol.messaging.envelope import MESSAGE_PROTOCOL_ID
from protocol.messaging.mailbox import PROTOCOL_ID as MAILBOX_PROTOCOL_ID
from protocol.messaging.prekey_fetch import PROTOCOL_ID as PREKEY_PROTOCOL
from protocol.messaging.tokens import Token, TokenSigner
from protocol.records.device import Capability, RecordBook, make_record, text_ok
from protocol.sync.replication import ReplicationConfig

from . import control, heap
from .api.node import DiskStatus
from .api.schema import BoundMethod
from .channels import CHANNEL_PROTOCOL, ChannelService
from .config import NodeConfig
from .context import Published
from .control import RpcFailure
from .datadir import DataDir, Secrets
from .deposit_hosts import DepositHosts
from .errors import StoreError
from .gate import Gate, StreamCaps
from .links import LinkService
from .metrics import CountingStream, Figures, Metrics
from .nat import NatWiring
from .prekeys import PrekeyKeeper
from .push import PushService
from .reach import REACH_PROTOCOL
from .relay import (
    CIRCUIT_BYTES,
    prefer_direct,
)
from .replication import ReplicationService
from .services.accounts import AccountService
from .services.backup import BackupService
from .services.channel_delivery import ChannelDelivery
from .services.clock import PROTOCOL_ID as CLOCK_PROTOCOL
from .services.clock import ClockService
from .services.contacts import ContactService, ContactSet
from .services.devices import DeviceService
from .services.events import EventService
from .services.linking import LinkService as LinkingService
from .services.mailbox import MailboxService, deposit_group
from .services.messages import MessageService
from .services.node import NodeService
from .services.peers import PeerService
from .services.prekey_client import PrekeyClient
from .services.prekey_serve import PrekeyServeService
from .services.prekey_shelf import MailboxPrekeys
from .services.reads import ReadMarks
from .services.sync import SyncService
from .services.tokens import TokenService
from .services.trash import TrashService
from .storage import (
    ContactStore,
    MessageStore,
    ReadStore,
    SqliteMailboxStore,
    SyncStore,
    TokenStore,
    open_database,
)
from .storage.budget import DiskBudget
from .storage.events import SqliteEventStore
from .storage.prekey_shelf import PrekeyShelfStore
from .tasks import TaskStatus
from .transport import REPLICATION_PROTOCOL, make_host, parse_multiaddr, probe_listen

if TYPE_CHECKING:  # imported when the web app runs: a node without it never loads starlette
    from .web.server import WebServer


log = logging.getLogger("smu.node")

ESCROW_EVENTS = 40_000
ESCROW_BYTES = 32 << 20
ESCROW_PER_PEER = 16_000
RECORD_LIFETIME_MS = 24 * 3600 * 1000
#: the replication stream is the link itself: one per peer (the link
#: manager admits it); linking needs one stream per attempt
LINK_STREAM_CAPS = StreamCaps(per_peer=2, total=64)
REPLICATION_STREAM_CAPS = StreamCaps(per_peer=2, total=256)
#: one channel per link; a second is the replacement of the first
CHANNEL_STREAM_CAPS = StreamCaps(per_peer=2, total=256)
#: a probe or a dial-back at a time per peer (§17.4.1)
REACH_STREAM_CAPS = StreamCaps(per_peer=1, total=32)
#: one clock question per link (§17.6)
CLOCK_STREAM_CAPS = StreamCaps(per_peer=1, total=64)
#: a fetch at a time per peer; its answer is one small frame (§19.16)
PREKEY_STREAM_CAPS = StreamCaps(per_peer=1, total=32)
DISK_CHECK_SECONDS = 5.0
#: event kinds (as delivery notes name them) that never end a device's
#: ACTIVE status or replace its key: no session to end (§19.11)
DEVICE_KEEPING_KINDS = frozenset({"genesis", "add_device", "profile"})
#: event kinds that never make a device ACTIVE (only an addition or a
#: recover can): no account to adopt (§14.6)
NEVER_ADDING_KINDS = frozenset(
    {"genesis", "profile", "revoke_device", "rotate_enc_key", "rotate_recovery"}
)
#: what the user may not start while the disk budget is full (§13.3)
DISK_WRITES = frozenset({"message.send", "event.submit", "contact.add", "backup.restore"})


class NatOptions(TypedDict, total=False):
    """The NAT switches of ``smu node run`` (§17.4, §17.5)."""

    offer_relay: bool
    classifier: Classifier
    circuit_bytes: int
    reach_config: ReachConfig | None


class Service(Protocol):
    """A part of the node that serves control methods (``node/services``)."""

    def handlers(self) -> dict[str, control.Handler]: ...


class Daemon:
    """Implements ``node.context.NodeContext`` for the services."""

    def __init__(
        self,
        datadir: DataDir,
        secrets: Secrets,
        listen: list[str],
        bootstrap: list[str],
        replication: ReplicationConfig | None = None,
        web_port: int | None = None,
        *,
        offer_relay: bool = True,
        classifier: Classifier = DEFAULT,
        circuit_bytes: int = CIRCUIT_BYTES,
        reach_config: ReachConfig | None = None,
        mailbox_group_of: Callable[[str], str] | None = None,
        settings: NodeConfig | None = None,
    ) -> None:
        """``mailbox_group_of`` is for lab tests only, and no flag or config
        file reaches it: it replaces how this node's mailbox maps a
        depositor's address to its network group (PROTOCOL.md §15.17), so
        that a test on loopback can stand for depositors in many networks.
        None (always, outside such a test): ``deposit_group``."""
        self.datadir = datadir
        self.classifier = classifier
        self._mailbox_group_of = mailbox_group_of
        self.secrets = secrets
        self.config = datadir.read_config()
        #: the operator's settings (node.toml and flags, PROTOCOL.md §13.3)
        self.settings = settings or NodeConfig(listen=list(listen), bootstrap=list(bootstrap))
        self._params: NetworkParams = network_by_id(str(self.config["network"]))
        self.listen = listen
        self.bootstrap = list(bootstrap)
        # texts, names and synced edits are sealed under the storage key (§15.21)
        self.db = open_database(datadir.db_path, secrets.storage_key or None)
        self.store = SqliteEventStore(self.db)
        self.budget = DiskBudget(self.db, self.settings.disk_budget_bytes)
        started = time.monotonic()
        # Events in the store were verified before they were stored;
        # `smu log verify` re-checks them from scratch.
        self._ledger = Ledger(
            self._params,
            store=self.store,
            # A catching-up node receives many events before their parents;
            # the escrow holds them in memory (bounded), never on disk.
            escrow=Escrow(
                max_events=ESCROW_EVENTS, max_bytes=ESCROW_BYTES, per_source=ESCROW_PER_PEER
            ),
            verify_signatures_on_load=False,
        )
        log.info("loaded %d events in %.2fs", self._ledger.event_count, time.monotonic() - started)
        self.host: Any = make_host(secrets.node_seed)
        self._peer_id = str(self.host.get_id().to_base58())
        self.links = LinkService(
            self.host, self._peer_id, REPLICATION_PROTOCOL, classifier=classifier
        )
        self.nat = NatWiring(
            self.host,
            self.links,
            classifier,
            offer_relay=offer_relay,
            circuit_bytes=circuit_bytes,
            reach_config=reach_config,
            records=lambda: self.records,
            bootstrap=lambda: self.bootstrap,
            score=lambda peer: float(self.replication.replicator.score(peer)),
            on_advertise=self._advertise_changed,
        )
        # deposits and prekey fetches at a mailbox: an identity per mailbox (§15.13.1)
        self.deposit_hosts = DepositHosts(
            secrets.node_seed, self.nat.guard, lambda p, addrs: self.links.dialable(p, addrs, None)
        )
        self.gate = Gate(self.links.manager)
        self.gate.on_admitted = self.links.heard
        self.replication = ReplicationService(self._ledger, self.store, self.links, replication)
        self.channels = ChannelService(self.links)
        self.links.on_opened.append(self.channels.link_opened)
        self.links.on_closed.append(self.channels.link_closed)
        #: account-wide state among this account's devices; the contact set
        #: reads contacts, blocks and verification marks from it
        self.sync = SyncService(self, SyncStore(self.db))
        self._contacts = ContactSet(ContactStore(self.db), self._ledger, self.sync)
        self._stop = trio.Event()
        self._last_advertised: list[str] = []
        self._was_linked: set[str] = set()
        self._done = trio.Event()
        self.subscribers: list[Callable[[dict[str, object]], None]] = []
        self._build_services()
        self.web = self._build_web(web_port)

    def _advertise_changed(self) -> None:
        self.replication.set_self(self._peer_id, self.advertised_addrs())
        self.publish_own_record()

    def nat_status(self) -> dict[str, object]:
        pushed, hosts = self.push.status(), self.deposit_hosts.status()
        return {**self.nat.status(), "mailbox_notices": pushed, "deposit_hosts": hosts}

    def advertised_addrs(self) -> list[str]:
        return self.nat.advertised_addrs([a.split("/p2p/")[0] for a in self.addresses()])

    def _build_services(self) -> None:
        self.tokens = TokenService(
            self,
            TokenStore(self.db),
            TokenSigner(self.secrets.token_seed),
            self._contacts,
            grants=lambda: [g for g, _ in self.mailbox.grants],
        )
        contacts = ContactService(self, self._contacts, self.tokens)
        self.messages = MessageService(
            self,
            MessageStore(self.db),
            self._contacts,
            deposit=lambda record, device, env: self.mailbox.deposit(record, device, env),
            reconcile_all=self.replication.reconcile_all,
            contact_changes=contacts.contact_docs,
            tokens=self.tokens,
            sync=self.sync,
            prekeys=PrekeyKeeper(self.datadir),
        )
        self.tokens.send = self.messages.queue_tokens
        self.sync.send = self.messages.queue_sync
        # another device's decisions apply here too: its requests, our tokens
        self.sync.on_changed.append(self.messages.decisions_changed)
        self.sync.on_changed.append(self.tokens.contacts_changed)
        #: read marks, account-wide (``read/<account>``), cached per device
        self.reads = ReadMarks(self, ReadStore(self.db), self.sync)
        self.sync.on_changed.append(self.reads.synced)
        self._contacts.on_added.append(self.tokens.refill)
        self.trash = TrashService(self.messages.store, self.sync)
        self.clock = ClockService(self.open_stream)
        self.links.on_opened.append(self.clock.link_opened)
        self.links.on_closed.append(self.clock.link_closed)
        self._wire_operator()
        self.backup = BackupService(self, self.messages.store, self.sync)
        self.accounts = AccountService(self)
        self.accounts.on_recovery_key.append(self.backup.enroll)
        self.messages.hidden = self.trash.hidden
        self.reads.hidden = self.trash.hidden
        self.sync.on_changed.append(self.trash.changed)
        self._mailbox_store = SqliteMailboxStore(self.db)
        self.mailbox = MailboxService(
            self,
            receive=self.messages.receive,
            store=self._mailbox_store,
            tokens=self.tokens,
            group_of=self._mailbox_group_of or (lambda host: deposit_group(host, self.classifier)),
            deposits=self.deposit_hosts,
        )
        self.mailbox.on_grants_changed = self.tokens.refill_all
        self.mailbox.serves_others = self.settings.mailbox
        self.prekey_serve = PrekeyServeService(
            self,
            self.messages.sessions.prekeys,
            mailbox_key=self.mailbox.identity.public,
            token_key=self.tokens.signer.public,
        )
        shelf = PrekeyShelfStore(self.db, self._params)
        legacy_shelf = self.datadir.take_prekey_shelf()
        if legacy_shelf is not None:  # the file of before the table (§19.16)
            shelf.import_file(legacy_shelf, int(time.time() * 1000))
        self.mailbox_prekeys = MailboxPrekeys(
            self,
            shelf,
            self.mailbox.identity.public,
            grant_of=lambda device: self.mailbox.box.grant_of(device) if self.mailbox.box else None,
            spent=lambda device, nonce: bool(
                self.mailbox.box and self.mailbox.box.token_spent(device, nonce)
            ),
            spend=self._spend_mailbox_token,
        )
        self.prekey_serve.mailbox = self.mailbox_prekeys
        # contacts get tokens for this node too: they pay for its prekeys
        self.tokens.own_mailbox_key = self.mailbox.identity.public
        self.messages.prekey_client = PrekeyClient(
            self, self.messages.sessions, self.tokens, self.deposit_hosts
        )
        self.push = PushService(
            self.channels,
            records=lambda: self.records,
            account_of=self._grant_account,
            held=lambda device: self.mailbox.box.held(device)[1] if self.mailbox.box else 0,
            own_device=self.secrets.device.sign_public,
            notified=self.mailbox.notified,
        )
        self.mailbox.on_deposit = self.push.deposited
        self.messages.direct.channel = ChannelDelivery(
            self.channels,
            admit=lambda peer, envelope: self.messages.admit(envelope),
            refusal=lambda peer: self.gate.item_refusal(MESSAGE_PROTOCOL_ID, peer),
        )
        self.linking = LinkingService(self, on_linked=self._send_history)
        self.replication.on_delivered = self._delivered
        self.replication.on_record = self.messages.record_arrived
        self.links.on_changed = self._links_changed
        self.node_service = NodeService(
            self,
            self.replication,
            self.links,
            self.gate,
            self.channels,
            self.stop,
            parts=lambda: {
                "disk": self._disk_status(),
                "clock": self.clock.status(),
                "metrics_port": self.metrics_port,
                "reachability": self.nat_status(),
            },
        )
        self.services: list[Service] = [
            self.node_service,
            PeerService(self.links, self.replication.replicator.score),
            EventService(self),
            self.accounts,
            DeviceService(self),
            self.linking,
            contacts,
            self.messages,
            self.trash,
            self.backup,
            self.reads,
            self.mailbox,
        ]

    def _build_web(self, port: int | None) -> WebServer | None:
        """The web app (node/web/), unless the node runs without it (None)."""
        from .web.service import WebService

        server = None
        if port is not None:
            from .web.deps import Services
            from .web.server import WebServer

            server = WebServer(self.datadir.path, port, Services.find(self, self.services))
            self.subscribers.append(server.hub.on_note)
            # another device's edits: contacts, blocks, marks, read marks
            self.sync.on_changed.append(server.hub.synced)
        self.services.append(WebService(server))
        return server

    def _grant_account(self, device: bytes) -> bytes | None:
        grant = self.mailbox.box.grant_of(device) if self.mailbox.box else None
        return grant.account if grant is not None else None

    def _links_changed(self) -> None:
        linked = set(self.links.links)
        for peer in linked - self._was_linked:
            # a mailbox of ours came back: what it holds may be for us, so
            # fetch now rather than at the next poll (its push notice may
            # not have reached us; §15.12.1)
            self.mailbox.notified(peer)
        self._was_linked = linked
        self.mailbox.refresh()
        self.nat.reach.refresh()
        addrs = self.advertised_addrs()
        if addrs != self._last_advertised:
            # who may use our private addresses depends on who we are linked with
            self._last_advertised = addrs
            self.replication.set_self(self._peer_id, addrs)

    def _wire_operator(self) -> None:
        """The disk budget, metrics and the clock check (PROTOCOL.md §13.3)."""
        self.metrics = Metrics(self._figures)
        self.metrics_port: int | None = None
        count = self.metrics.traffic
        self.gate.wrap_stream = lambda stream, protocol: CountingStream(stream, protocol, count)
        self.links.wrap_stream = self.gate.wrap_stream
        self.replication.on_ingested = self.metrics.ingest_seconds.observe
        self.messages.on_delivered_after = self.metrics.delivery_seconds.observe
        self.gate.disk_full = lambda: self.budget.full
        self.gate.storing = {MESSAGE_PROTOCOL_ID, MAILBOX_PROTOCOL_ID, PREKEY_PROTOCOL}

    def _figures(self) -> Figures:
        return Figures(
            events=self._ledger.event_count,
            accounts=len(self._ledger.accounts),
            escrow=len(self._ledger.escrow),
            peers=len(self.links.links),
            refused=dict(self.gate.stats.refused),
            admitted=dict(self.gate.stats.admitted),
            mailbox_bytes=self._mailbox_store.stored_bytes(),
            disk_used_bytes=self.budget.state.used_bytes,
            disk_full=self.budget.full,
            clock_offset_ms=self.clock.median_offset(),
        )

    def _disk_status(self) -> DiskStatus:
        s = self.budget.state
        return {
            "used_bytes": s.used_bytes,
            "budget_bytes": s.budget_bytes,
            "disk_free_bytes": s.disk_free_bytes,
            "full": s.full,
            "reason": s.reason,
        }

    async def _disk_loop(self) -> None:
        """Stop accepting while the disk budget is full; resume after."""
        while True:
            was = self.budget.full
            state = self.budget.check()
            self.replication.set_accepting(not state.full)
            if state.full and not was:
                log.warning(
                    "%s: not accepting events, messages or deposits until there is room "
                    "(raise disk_budget_mb in node.toml or free space)",
                    state.reason,
                )
            elif was and not state.full:
                log.info("the disk has room again: accepting")
            await trio.sleep(DISK_CHECK_SECONDS)

    def _delivered(self, note: dict[str, object]) -> None:
        # Both checks look only at the kinds that can matter to them, so a
        # catch-up's bulk of events pays neither: a device revoked or
        # re-keyed ends its sessions at once (§19.11; a genesis, an addition
        # or a profile never does), and only an addition or a recover can
        # make this device ACTIVE in an account it does not know yet (§14.6)
        kind, changed = note.get("kind"), bytes.fromhex(str(note["account"]))
        if kind not in DEVICE_KEEPING_KINDS:
            self.messages.sessions.log_changed(changed)
        if kind not in NEVER_ADDING_KINDS and self.account() is None:
            self._adopt_if_added(changed)
        account = self.account()
        if account is not None and note["account"] == account.hex():
            self.mailbox.refresh()  # this device may have become active, or not
            self.sync.log_changed()  # edits waiting for these events may merge
        self.notify(note)

    def _adopt_if_added(self, account: bytes) -> None:
        """A join whose answer never reached this device (the approver's
        APPROVED came after the joiner's own deadline, or the stream broke,
        §14.6) may still have added it: the log then shows this device ACTIVE
        in the account.  Its add-device event carries this device's proof of
        possession for exactly that account (§5.3), which it gives only in a
        JOIN it confirmed, so the log's word is enough to take the account
        as its own (issue: `device join` failing while the join completes)."""
        ledger = self._ledger
        if account not in ledger.accounts:
            return
        own = self.secrets.device.sign_public
        # Only a key that some event of the account introduces can be ACTIVE
        # in it (§7.1): a dict lookup spares a catch-up the account's state
        # for every addition of somebody else's device (bench/catchup.py)
        if own not in ledger.log(account).introduced:
            return
        if own not in ledger.state(account).active_keys:
            return
        log.info("this device was added to %s: it is now its account", account.hex()[:12])
        self.set_account(account)
        self.publish_own_record()

    def _send_history(self, device: bytes) -> None:
        # History follows only now that the add-device event is in the log
        # (DESIGN §9), encrypted to the approved key; the account-wide state
        # too, so that the new device is an equal from its first minute.
        self.sync.send_snapshot(device)
        try:
            self.messages.send_history(device)
        except RpcFailure as exc:
            log.info("no history sent to the new device: %s", exc)

    def methods(self) -> dict[str, control.Handler]:
        methods: dict[str, control.Handler] = {}
        for service in self.services:
            for name, handler in service.handlers().items():
                assert name not in methods, f"{name} is served twice"
                assert isinstance(handler, BoundMethod) and handler.method.name == name, name
                methods[name] = self._refused_when_full(handler) if name in DISK_WRITES else handler
        return methods

    def _refused_when_full(self, handler: control.Handler) -> control.Handler:
        async def checked(params: dict[str, object]) -> object:
            if self.budget.full:
                raise RpcFailure(control.DISK_FULL, f"{self.budget.state.reason}: not accepted")
            return await handler(params)

        return checked

    # -- running ----------------------------------------------------------

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until stopped: ``node.stop``, SIGINT or SIGTERM shut down in
        order; a second signal stops at once (never a traceback).  The
        signal receiver is open for the whole run, so no signal finds the
        process without one."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._signals, signals, outer.cancel_scope)
                await outer.start(self._serve)
                task_status.started()
                await self._done.wait()
                outer.cancel_scope.cancel()

    async def _serve(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._serve_until_stopped(task_status)
        finally:
            self._done.set()

    async def _serve_until_stopped(self, task_status: TaskStatus[None]) -> None:
        gate = self.gate
        self.host.set_stream_handler(
            REPLICATION_PROTOCOL,
            gate.wrap(REPLICATION_PROTOCOL, self.links.on_inbound, REPLICATION_STREAM_CAPS),
        )
        self.host.set_stream_handler(
            LINK_PROTOCOL_ID, gate.wrap(LINK_PROTOCOL_ID, self.linking.on_stream, LINK_STREAM_CAPS)
        )
        self.host.set_stream_handler(
            MESSAGE_PROTOCOL_ID, gate.wrap(MESSAGE_PROTOCOL_ID, self.messages.on_stream)
        )
        self.host.set_stream_handler(
            MAILBOX_PROTOCOL_ID, gate.wrap(MAILBOX_PROTOCOL_ID, self.mailbox.on_stream)
        )
        self.host.set_stream_handler(
            CHANNEL_PROTOCOL,
            gate.wrap(CHANNEL_PROTOCOL, self.channels.on_stream, CHANNEL_STREAM_CAPS),
        )
        self.host.set_stream_handler(
            REACH_PROTOCOL, gate.wrap(REACH_PROTOCOL, self.nat.reach.on_stream, REACH_STREAM_CAPS)
        )
        self.host.set_stream_handler(
            PREKEY_PROTOCOL,
            gate.wrap(PREKEY_PROTOCOL, self.prekey_serve.on_stream, PREKEY_STREAM_CAPS),
        )
        self.host.set_stream_handler(
            CLOCK_PROTOCOL, gate.wrap(CLOCK_PROTOCOL, self.clock.on_stream, CLOCK_STREAM_CAPS)
        )
        addrs = [parse_multiaddr(a) for a in self.listen]
        async with (
            self.host.run(addrs),
            background_trio_service(self.nat.relay),
            background_trio_service(self.nat.dcutr),
            trio.open_nursery() as nursery,
        ):
            prefer_direct(self.host, nursery, self.links.direct_now)
            self.mailbox.open()  # loaded before the control socket answers
            await nursery.start(control.serve, self.datadir.socket_path, self.methods())
            await nursery.start(self.nat.reach.run)
            await nursery.start(self.deposit_hosts.run)
            await nursery.start(self.replication.run)
            await nursery.start(self.sync.run)
            self._contacts.import_legacy()
            await nursery.start(self.channels.run)
            self.nat.reach.set_listen([a.split("/p2p/")[0] for a in self.addresses()])
            self.replication.set_self(self._peer_id, self.advertised_addrs())
            await nursery.start(self.links.run, self.replication.serve_link, self.bootstrap)
            await nursery.start(self.linking.run)
            await nursery.start(self.mailbox.run)
            nursery.start_soon(self.messages.run_delivery)
            nursery.start_soon(self.tokens.run)
            nursery.start_soon(
                self.mailbox_prekeys.run_uploads,
                self.messages.sessions.prekeys,
                lambda: self.mailbox.grants,
            )
            nursery.start_soon(self.trash.run)
            nursery.start_soon(self.backup.run_auto)
            nursery.start_soon(self._disk_loop)
            nursery.start_soon(self.clock.run)
            if self.settings.metrics_port is not None:
                self.metrics_port = await nursery.start(
                    self.metrics.serve, self.settings.metrics_port
                )
            nursery.start_soon(self._records_loop)
            if self.web is not None:
                nursery.start_soon(self.web.run)  # its own nursery: never stops the node
            log.info("node %s listening on %s", self._peer_id, ", ".join(self.addresses()))
            task_status.started()
            await self._stop.wait()
            log.info("shutting down")
            self.links.stop()
            # Leaving host.run() does not close connections: close explicitly.
            await self.deposit_hosts.close_all()
            with trio.move_on_after(5):
                await self.host.close()
            await self.store.commit()
            self.db.close()
            nursery.cancel_scope.cancel()

    def stop(self) -> None:
        self._stop.set()

    async def _records_loop(self) -> None:
        # A record lives a day; it is renewed four times in its life.
        while True:
            self.publish_own_record()
            await trio.sleep(RECORD_LIFETIME_MS / 4000)

    async def _signals(self, signals: Any, hard: trio.CancelScope) -> None:
        first = True
        async for _ in signals:
            if first:
                log.info("stopping (a second interrupt stops at once)")
                self.stop()
                first = False
            else:
                log.warning("stopping at once")
                hard.cancel()

    # -- NodeContext --------------------------------------------------------

    @property
    def params(self) -> NetworkParams:
        return self._params

    @property
    def device(self) -> DeviceKeys:
        return self.secrets.device

    @property
    def node_seed(self) -> bytes:
        return self.secrets.node_seed

    @property
    def data_path(self) -> Path:
        return self.datadir.path

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def records(self) -> RecordBook:
        return self.replication.replicator.records

    @property
    def contacts(self) -> ContactSet:
        return self._contacts

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def device_name(self) -> str:
        return str(self.config.get("device_name") or "device")

    def account(self) -> bytes | None:
        account = self.config.get("account")
        return bytes.fromhex(str(account)) if account else None

    def own_account(self) -> bytes:
        account = self.account()
        if account is None:
            raise RpcFailure(
                control.USAGE,
                "this device has no account yet: create one with "
                "`smu account create` or join one with `smu device join`",
            )
        return account

    def set_account(self, account: bytes) -> None:
        self.config["account"] = account.hex()
        self.datadir.write_config(self.config)
        self.mailbox.refresh()

    def device_active(self) -> bool:
        account = self.account()
        return (
            account is not None
            and account in self._ledger.accounts
            and self.secrets.device.sign_public in self._ledger.state(account).active_keys
        )

    def resolve_account(self, ref: str | None) -> bytes:
        """An account named by the user: a contact's name, a handle (or the
        end of one), an account id, or the display name of an account this
        node knows (if only one has it)."""
        if not ref:
            return self.own_account()
        ref = ref.strip()
        if len(ref) == 64:
            try:
                return bytes.fromhex(ref)
            except ValueError:
                pass
        try:
            return self._contacts.find(ref)[0]
        except RpcFailure:
            pass
        accounts = self._ledger.accounts
        suffix = ref.rsplit(".", 1)[-1].lower()
        matches = [
            a
            for a, lg in accounts.items()
            if handle(lg.state().display_name, a).rsplit(".", 1)[-1].startswith(suffix)
        ]
        if not matches:
            matches = [
                a for a, lg in accounts.items() if lg.state().display_name.lower() == ref.lower()
            ]
        if len(matches) != 1:
            what = "no account matches" if not matches else f"{len(matches)} accounts match"
            raise RpcFailure(
                control.USAGE,
                f"{what} {ref!r}: name a contact, or give the handle or account id",
            )
        return matches[0]

    async def publish(self, raw: bytes) -> Published:
        return await self.replication.publish(raw)

    def _spend_mailbox_token(self, device: bytes, token: Token) -> None:
        if self.mailbox.box is not None:
            self.mailbox.box.spend_token(device, token)

    def publish_own_record(self) -> None:
        """Sign and publish where this device can be reached (PROTOCOL.md §16)."""
        account_id = self.account()
        if account_id is None or not self.device_active():
            return
        # only what a v2 record may carry (PROTOCOL.md §16): one odd address
        # must not keep the whole record from being published
        addrs = tuple(a for a in self.advertised_addrs() if text_ok(a))[:8]
        now_ms = int(time.time() * 1000)
        # a supply of one-time prekeys for this node to serve (§19.16)
        self.prekey_serve.replenish()
        try:
            record = make_record(
                self._params,
                account_id,
                self.secrets.device,
                timestamp=now_ms,
                lifetime_ms=RECORD_LIFETIME_MS,
                peer_ids=(self._peer_id,),
                addrs=addrs,
                mailboxes=tuple(
                    (grant.raw, mb_addrs[:2]) for grant, mb_addrs in self.mailbox.grants
                ),
                relays=tuple(r for r in self.nat.reach.advertised.relays if text_ok(r))[:4],
                # rotated when due, on disk before the record names it (§19.3)
                signed_prekey=self.messages.sessions.prekeys.current(now_ms),
                capabilities=(int(Capability.WRAP_SCHEME_2),),
            )
            self.replication.driver.call(
                lambda now: self.replication.replicator.publish_record(record.raw, now)
            )
        except InvalidInput as exc:
            log.warning("own device record refused: %s", exc)

    def addresses(self) -> list[str]:
        out = []
        for a in self.host.get_addrs():
            text = str(a)
            out.append(text if "/p2p/" in text else f"{text}/p2p/{self._peer_id}")
        return out

    def linked_peers(self) -> list[str]:
        return sorted(self.links.links)

    def peer_addresses(self, peer: str) -> list[str]:
        return self.links.peer_addresses(peer)

    async def dial(self, addr: str) -> str:
        return await self.links.dial(addr)

    async def open_stream(self, peer: str, addrs: Sequence[str], protocol: str) -> Any:
        return await self.links.open_stream(peer, addrs, protocol, self.nat.relays_of(peer))

    def notify(self, note: dict[str, object]) -> None:
        for subscriber in list(self.subscribers):
            subscriber(note)


def run_daemon(
    datadir: DataDir, secrets: Secrets, settings: NodeConfig, **options: Unpack[NatOptions]
) -> None:
    """``options``: the NAT switches of ``smu node run`` (offer_relay, the
    lab classifier, the lab's circuit limit and fast probes)."""
    lock = datadir.lock()  # one daemon per data directory
    heap.space_out()
    try:
        probe_listen(settings.listen)
        daemon = Daemon(
            datadir,
            secrets,
            settings.listen,
            settings.bootstrap,
            web_port=settings.web_listen_port,
            settings=settings,
            **options,
        )
        heap.settle()  # start-up's objects live as long as the process
        try:
            trio.run(daemon.run)
        except BaseExceptionGroup as group:
            damaged = _store_error(group)
            if damaged is None:
                raise
            raise damaged from None
    finally:
        os.close(lock)


def _store_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """A damaged store (a sealed value that does not open, §15.21) stops the
    daemon with its one-line reason, not a task's traceback (None: the
    group holds no store error, and is raised as it came)."""
    damaged: BaseException | None = group.split(StoreError)[0]
    while isinstance(damaged, BaseExceptionGroup):
        damaged = damaged.exceptions[0]
    return damaged
