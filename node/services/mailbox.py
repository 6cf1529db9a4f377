"""Mailboxes on a running node (PROTOCOL.md §15.10-§15.13): the mailbox this
node serves on ``/smu/mailbox/1``, and this device's use of mailboxes.

Serving: every node holds envelopes for devices active in its own replica
(``protocol.messaging.mailbox.Mailbox``).  Its mailbox key is its libp2p
Ed25519 identity key, which its peer id embeds and Noise authenticates, so a
device can ask any peer for a grant without a lookup first; grant
signatures are domain-separated from libp2p's.  Held envelopes live in
memory: a mailbox that restarts loses them, and the sender's retries cover
that (a mailbox is a shortcut, never the only copy).

Using: ``protocol.messaging.mailbox_client.MailboxClient`` decides when this
device asks its linked peers for grants (up to two, at different peers) and
when it fetches; this adapter does the asking and fetching and reports back.
Grants are written to ``mailboxes.json`` before the device record names
them, so after a restart the device goes on fetching from the mailboxes its
record named.  A sender deposits at a mailbox the recipient's record names
when direct delivery fails, and tries a mailbox on its own node last: it
goes offline with the sender.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.id import ID

from protocol.core.canonical import decode_flat
from protocol.core.errors import InvalidInput, UsageError
from protocol.core.machine import Misbehaved, Send
from protocol.messaging.mailbox import (
    MAX_ANSWER_FRAME,
    MAX_REQUEST_BYTES,
    PROTOCOL_ID,
    Answer,
    ChallengeIssued,
    Deposited,
    Expired,
    Granted,
    Items,
    Mailbox,
    MailboxIdentity,
    MailboxOutput,
    challenge_request,
    decode_answer,
    delete_request,
    deposit_request,
    fetch_request,
    grant_request,
)
from protocol.messaging.mailbox_client import (
    AskGrant,
    ClientConfig,
    ClientOutput,
    Fetch,
    GrantDropped,
    GrantsChanged,
    MailboxClient,
)
from protocol.records.device import MAX_MAILBOXES, SignedDeviceRecord, text_ok
from protocol.records.grant import GRANT_V2, Grant, decode_grant

from ..context import NodeContext, Stream
from ..datadir import write_private
from ..driver import MachineDriver
from ..errors import PeerUnreachable
from ..gate import remote_peer
from ..transport import REQUEST_ERRORS, frame, read_frame

log = logging.getLogger("smu.mailbox")
MAILBOX_PROTOCOL = PROTOCOL_ID
REQUEST_TIMEOUT = 10.0
MAX_OWN_MAILBOXES = MAX_MAILBOXES
#: envelopes fetched per request
FETCH_LIMIT = 100
#: a mailbox pushes a notice to a connected recipient at once (§15.12.1), so
#: polling is only the fallback for a notice lost with its link: every 30 s
#: instead of every 2 s (a fifteenth of the requests to every mailbox)
POLL_INTERVAL = 30.0


def _deposit_device(request: bytes) -> bytes:
    """The device of a DEPOSIT request the mailbox machine accepted."""
    fields = decode_flat(request, MAX_REQUEST_BYTES)
    assert isinstance(fields, list) and isinstance(fields[2], bytes)
    return fields[2]


def _addr_ok(addr: object) -> bool:
    """An address as our (v2) record carries it (PROTOCOL.md §16)."""
    return text_ok(addr)


class MailboxService:
    def __init__(self, ctx: NodeContext, receive: Callable[[bytes], object]) -> None:
        self.ctx = ctx
        #: open and store an envelope fetched from a mailbox (raises InvalidInput)
        self.receive = receive
        self.identity = MailboxIdentity(ctx.node_seed)
        self.box: Mailbox | None = None
        self.box_driver: MachineDriver[MailboxOutput] | None = None
        self.client: MailboxClient | None = None
        self.client_driver: MachineDriver[ClientOutput] | None = None
        #: where each of our mailboxes listens, as the grant's peer told us
        self._addrs: dict[str, tuple[str, ...]] = {}
        self._nursery: trio.Nursery | None = None
        #: told of each deposit this node's mailbox accepted: the device
        self.on_deposit: Callable[[bytes], None] = lambda device: None

    @property
    def _grants_path(self) -> Path:
        return self.ctx.data_path / "mailboxes.json"

    @property
    def grants(self) -> list[tuple[Grant, tuple[str, ...]]]:
        """Our grants and their mailboxes' addresses, for our device record."""
        held = self.client.grants if self.client is not None else ()
        return [(g, self._addrs.get(g.mailbox_peer, ())) for g in held]

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.box = Mailbox(
            self.ctx.params, self.identity, peer_id=self.ctx.peer_id, grant_policy=self._serves
        )
        self.box_driver = MachineDriver("mailbox", self.box, self._box_outputs)
        saved = self._load_grants()
        self._addrs = {g.mailbox_peer: addrs for g, addrs in saved}
        self.client = MailboxClient(
            self.ctx.device.sign_public,
            config=ClientConfig(poll_interval=POLL_INTERVAL),
            grants=[g for g, _ in saved],
        )
        self.client_driver = MachineDriver("mailbox-client", self.client, self._client_outputs)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.box_driver.run)
            await nursery.start(self.client_driver.run)
            self.refresh()
            task_status.started()

    def refresh(self) -> None:
        """Our account, whether this device is active in it, or our links
        changed: tell the client."""
        if self.client is None or self.client_driver is None:
            return
        client = self.client
        account = self.ctx.account() if self.ctx.device_active() else None
        peers = self.ctx.linked_peers()
        self.client_driver.call(lambda now: client.set_active(account, now))
        self.client_driver.call(lambda now: client.peers_changed(peers, now))

    # -- saved grants ----------------------------------------------------------

    def _load_grants(self) -> list[tuple[Grant, tuple[str, ...]]]:
        """Our grants from the last run that are still ours and valid, at
        most ``MAX_OWN_MAILBOXES`` at different peers; a damaged file only
        costs asking for new grants."""
        account, device = self.ctx.account(), self.ctx.device.sign_public
        try:
            entries = json.loads(self._grants_path.read_text())
            grants = [
                (decode_grant(bytes.fromhex(e["grant"]), self.ctx.params), e["addrs"])
                for e in entries
            ]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError, KeyError, AttributeError, InvalidInput) as exc:
            log.warning("ignoring %s: %s", self._grants_path, exc)
            return []
        now_ms = time.time_ns() // 1_000_000
        kept: list[tuple[Grant, tuple[str, ...]]] = []
        for grant, addrs in grants:
            if (
                account is not None
                and grant.version == GRANT_V2  # a v1 grant, from an older run, cannot be named
                and grant.valid_for(account, device, now_ms)
                and all(g.mailbox_peer != grant.mailbox_peer for g, _ in kept)
                and type(addrs) is list
                and all(_addr_ok(a) for a in addrs)
                and len(kept) < MAX_OWN_MAILBOXES
            ):
                kept.append((grant, tuple(addrs[:4])))
        return kept

    def _save_grants(self, grants: Sequence[Grant]) -> None:
        entries = [
            {"grant": g.raw.hex(), "addrs": list(self._addrs.get(g.mailbox_peer, ()))}
            for g in grants
        ]
        write_private(self._grants_path, json.dumps(entries, indent=1).encode())

    def _serves(self, account: bytes, device: bytes) -> bool:
        """Grant only to devices active in this node's own replica."""
        ledger = self.ctx.ledger
        return account in ledger.accounts and device in ledger.state(account).active_keys

    # -- serving ---------------------------------------------------------------

    def _box_outputs(self, outputs: Sequence[MailboxOutput]) -> None:
        for out in outputs:
            if isinstance(out, Misbehaved):
                log.debug("mailbox refused %s: %s", out.peer, out.error.code)
            elif isinstance(out, Expired):
                log.debug("mailbox expired %s", out)

    def _handle(self, data: bytes, peer: str) -> bytes:
        """One request to our own mailbox: the answer frame."""
        box, driver = self.box, self.box_driver
        assert box is not None and driver is not None
        outputs = driver.call(
            lambda now: box.handle(data, peer=peer, now=now, random16=os.urandom(16))
        )
        (answer,) = [o.frame for o in outputs if isinstance(o, Send)]
        if isinstance(decode_answer(answer), Deposited):
            self.on_deposit(bytes(_deposit_device(data)))
        return answer

    def notified(self, mailbox_peer: str) -> None:
        """A push notice came from ``mailbox_peer``: the client fetches at
        once if one of our grants names that peer, and ignores it otherwise."""
        client, driver = self.client, self.client_driver
        if client is not None and driver is not None:
            driver.call(lambda now: client.notified(mailbox_peer, now))

    async def on_stream(self, stream: Stream) -> None:
        remote = remote_peer(stream)
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                data = await read_frame(stream, MAX_REQUEST_BYTES)
                await stream.write(frame(self._handle(data, remote)))
        except Exception as exc:  # the requester's stream is its business
            log.debug("mailbox stream from %s ended: %s", remote, exc)
        finally:
            try:
                await stream.close()
            except Exception as exc:
                log.debug("mailbox stream from %s: close failed: %s", remote, exc)

    # -- asking a mailbox ---------------------------------------------------------

    async def request(self, peer_id: str, addrs: Sequence[str], data: bytes) -> Answer:
        """One request to another node's mailbox (raises PeerUnreachable,
        trio.TooSlowError or InvalidInput)."""
        with trio.fail_after(REQUEST_TIMEOUT):
            stream = await self.ctx.open_stream(peer_id, addrs, MAILBOX_PROTOCOL)
            try:
                await stream.write(frame(data))
                return decode_answer(await read_frame(stream, MAX_ANSWER_FRAME))
            except REQUEST_ERRORS as exc:
                raise PeerUnreachable(f"{peer_id}: {type(exc).__name__}: {exc}") from exc
            finally:
                try:
                    await stream.close()
                except Exception as exc:  # the mailbox may have gone already
                    log.debug("mailbox stream to %s: close failed: %s", peer_id, exc)

    async def deposit(self, record: SignedDeviceRecord, device: bytes, envelope: bytes) -> bool:
        """Leave ``envelope`` at a mailbox the device's record names; one
        on this node last, since it goes offline with us."""
        named: list[tuple[Grant, tuple[str, ...]]] = []
        for grant_raw, addrs in record.mailboxes:
            try:
                named.append((decode_grant(grant_raw, self.ctx.params), tuple(addrs)))
            except InvalidInput as exc:
                log.debug("unreadable grant in a record: %s", exc.code)
        named.sort(key=lambda entry: entry[0].mailbox_peer == self.ctx.peer_id)  # stable
        request = deposit_request(device, envelope)
        for grant, addrs in named:
            try:
                if grant.mailbox_peer == self.ctx.peer_id and self.box is not None:
                    answer = decode_answer(self._handle(request, self.ctx.peer_id))
                else:
                    answer = await self.request(grant.mailbox_peer, addrs, request)
            except (PeerUnreachable, trio.TooSlowError, InvalidInput) as exc:
                log.debug("deposit at %s failed: %s", grant.mailbox_peer, exc)
                continue
            if isinstance(answer, Deposited):
                return True
        return False

    # -- carrying out the client's decisions ----------------------------------------

    def _client_outputs(self, outputs: Sequence[ClientOutput]) -> None:
        for out in outputs:
            if isinstance(out, AskGrant):
                self._spawn(self._ask_grant, out.peer)
            elif isinstance(out, Fetch):
                self._spawn(self._fetch, out.grant)
            elif isinstance(out, GrantsChanged):
                self._save_grants(out.grants)  # before our record names them
                self.ctx.publish_own_record()
            elif isinstance(out, GrantDropped):
                log.info("mailbox at %s dropped: %s", out.grant.mailbox_peer, out.reason)

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _ask_grant(self, peer_id: str) -> None:
        client, driver = self.client, self.client_driver
        assert client is not None and driver is not None
        account = self.ctx.account()
        me = self.ctx.device
        try:
            public = ID.from_base58(peer_id).extract_public_key()
            if account is None or public is None:
                raise UsageError("no account, or a peer id without a key")
            key = public.to_bytes()
            addrs = tuple(self.ctx.peer_addresses(peer_id))
            now = driver.clock()
            answer = await self.request(
                peer_id, (), grant_request(self.ctx.params, me, account, key, now.wall_ms)
            )
            if not isinstance(answer, Granted):
                raise UsageError(f"refused: {answer}")
            grant = decode_grant(answer.grant, self.ctx.params)
            if (
                not grant.valid_for(account, me.sign_public, now.wall_ms)
                or grant.mailbox_key != key
            ):
                raise UsageError("a grant for someone else, or from another key")
        except (PeerUnreachable, trio.TooSlowError, InvalidInput, UsageError, ValueError) as exc:
            log.debug("no grant from %s: %s", peer_id, exc)
            driver.call(lambda now: client.grant_refused(peer_id, now))
            return
        self._addrs[peer_id] = tuple(a for a in addrs if _addr_ok(a))[:4]
        log.info("mailbox at %s", peer_id)
        driver.call(lambda now: client.granted(grant, now))

    async def _fetch(self, grant: Grant) -> None:
        """Fetch, store and delete what one mailbox holds for us."""
        client, driver = self.client, self.client_driver
        assert client is not None and driver is not None
        me = self.ctx.device
        peer, addrs = grant.mailbox_peer, self._addrs.get(grant.mailbox_peer, ())
        stored = 0
        try:
            issued = await self.request(peer, addrs, challenge_request(me.sign_public))
            if not isinstance(issued, ChallengeIssued):
                raise UsageError(f"no challenge: {issued}")
            items = await self.request(
                peer,
                addrs,
                fetch_request(self.ctx.params, me, grant.mailbox_key, issued.nonce, FETCH_LIMIT),
            )
            if not isinstance(items, Items):
                raise UsageError(f"no items: {items}")
            done = []
            for item in items.items:
                try:
                    self.receive(item.envelope)  # stored before it is deleted there
                    stored += 1
                except InvalidInput as exc:
                    log.debug("mailbox item refused: %s", exc.code)
                done.append(item.item_id)
            if done:
                issued = await self.request(peer, addrs, challenge_request(me.sign_public))
                if isinstance(issued, ChallengeIssued):
                    await self.request(
                        peer,
                        addrs,
                        delete_request(self.ctx.params, me, grant.mailbox_key, issued.nonce, done),
                    )
        except (PeerUnreachable, trio.TooSlowError, InvalidInput, UsageError) as exc:
            log.debug("mailbox fetch from %s failed: %s", peer, exc)
            why = f"{type(exc).__name__}: {exc}"
            driver.call(lambda now: client.failed(peer, why, now))
            return
        driver.call(lambda now: client.fetched(peer, stored, now))
