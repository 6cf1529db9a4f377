"""Mailboxes on a running node (PROTOCOL.md §15.10-§15.18): the mailbox this
node serves on ``/smu/mailbox/1``, and this device's use of mailboxes.

Serving: every node holds envelopes for devices active in its own replica
(``protocol.messaging.mailbox.Mailbox``).  Its mailbox key is its libp2p
Ed25519 identity key, which its peer id embeds and Noise authenticates, so a
device can ask any peer for a grant without a lookup first; grant
signatures are domain-separated from libp2p's.  Held envelopes live in the
node's database (``node/storage/mailbox.py``), stored before the mailbox
answers DEPOSITED; a restart keeps them.  A deposit without a token is a
stranger's and is counted against the network group of the connection it
came on (``deposit_group``: an IPv4 /16 or IPv6 /32; loopback and private
addresses form one group of their own, ``LOCAL_GROUP``), never against its
peer id, which costs nothing.

Using: ``protocol.messaging.mailbox_client.MailboxClient`` decides when this
device asks its linked peers for grants (up to two, at different peers) and
when it fetches; this adapter does the asking (naming this device's token
key, so the grant carries it) and fetching and reports back.  Grants are
written to ``mailboxes.json`` before the device record names them, so after
a restart the device goes on fetching from the mailboxes its record named.
A sender deposits at a mailbox the recipient's record names when direct
delivery fails: with one of the recipient's tokens if it holds one (a
contact's deposit), else as a stranger; and it tries a mailbox on its own
node last: it goes offline with the sender.  A deposit travels under this
node's identity at that mailbox (``deposits``, §15.13.1), never the node's
own, which the device record names; asking for a grant and fetching what a
mailbox holds for us stay on the node's identity: the grant names this
device anyway.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.id import ID

from protocol.core.errors import InvalidInput, UsageError
from protocol.core.machine import Misbehaved, Send
from protocol.links.addresses import DEFAULT, Classifier
from protocol.links.policy import network_group
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
    Refused,
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
from protocol.messaging.mailbox_store import MailboxStore
from protocol.messaging.mailbox_wire import DepositRequest, decode_request
from protocol.messaging.tokens import TokenExpiredError, TokenInvalidError, TokenSpentError
from protocol.records.device import MAX_MAILBOXES, SignedDeviceRecord, text_ok
from protocol.records.grant import GRANT_V2, Grant, decode_grant

from .. import control
from ..api import node as api
from ..api.schema import Empty
from ..context import DepositStreams, NodeContext, Stream
from ..datadir import write_private
from ..driver import MachineDriver
from ..errors import PeerUnreachable
from ..gate import remote_peer
from ..tasks import TaskStatus
from ..transport import REQUEST_ERRORS, frame, read_frame
from .tokens import TokenService

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


#: the group of deposits from loopback, private and other exempt addresses
#: (§15.17): one group of their own, so the strangers' caps hold there too
LOCAL_GROUP = "local"
#: a connection whose remote address the transport did not tell
UNKNOWN_GROUP = "unknown"
#: refusals that mean the token is no good anywhere: drop it, try another
DEAD_TOKEN = frozenset({TokenSpentError.code, TokenInvalidError.code, TokenExpiredError.code})
#: tokens tried for one deposit at one mailbox before going as a stranger
TOKEN_TRIES = 3

#: the network group of a depositing connection's remote host
GroupOf = Callable[[str], str]


def deposit_group(host: str, classifier: Classifier = DEFAULT) -> str:
    """The group a stranger's deposit counts against (PROTOCOL.md §15.17):
    the link policy's network group of the connection's remote address, and
    for exempt addresses (loopback, private) ``LOCAL_GROUP``. A deposit
    through a relay has no remote address of its own: ``UNKNOWN_GROUP``."""
    if not host:
        return UNKNOWN_GROUP
    return network_group(host, classifier) or LOCAL_GROUP


def _remote_host(stream: Any) -> str:
    try:
        remote = stream.get_remote_address()
    except Exception:  # libp2p raises several types for a gone connection
        return ""
    return str(remote[0]) if remote else ""


def _deposit_device(request: bytes) -> bytes:
    """The device of a deposit request (either frame) the machine accepted."""
    req = decode_request(request)
    assert isinstance(req, DepositRequest)
    return req.device


def _addr_ok(addr: object) -> bool:
    """An address as our (v2) record carries it (PROTOCOL.md §16)."""
    return text_ok(addr)


class MailboxService:
    def __init__(
        self,
        ctx: NodeContext,
        receive: Callable[[bytes], object],
        *,
        store: MailboxStore,
        tokens: TokenService,
        group_of: GroupOf | None = None,
        deposits: DepositStreams | None = None,
    ) -> None:
        self.ctx = ctx
        #: streams under this node's identity at each mailbox (§15.13.1);
        #: without them a deposit at another node fails (never falls back)
        self.deposits = deposits
        #: open and store an envelope fetched from a mailbox (raises InvalidInput)
        self.receive = receive
        #: where our mailbox keeps what it holds (the node's database)
        self.store = store
        #: tokens we hold for others' mailboxes, and our token key
        self.tokens = tokens
        #: host -> network group of a depositing connection; only a lab test
        #: passes another mapping (``Daemon(mailbox_group_of=...)``)
        self.group_of: GroupOf = group_of or deposit_group
        self.identity = MailboxIdentity(ctx.node_seed)
        #: our grants changed (after they were saved and the record names them)
        self.on_grants_changed: Callable[[], object] | None = None
        #: the operator's switch (``node.toml`` ``mailbox``): False grants nobody
        self.serves_others = True
        self.box: Mailbox | None = None
        self.box_driver: MachineDriver[MailboxOutput] | None = None
        self.client: MailboxClient | None = None
        self.client_driver: MachineDriver[ClientOutput] | None = None
        #: where each of our mailboxes listens, as the grant's peer told us
        self._addrs: dict[str, tuple[str, ...]] = {}
        self._nursery: trio.Nursery | None = None
        #: told of each deposit this node's mailbox accepted: the device
        self.on_deposit: Callable[[bytes], None] = lambda device: None

    def handlers(self) -> dict[str, control.Handler]:
        return {"mailbox.status": api.MAILBOX_STATUS.bind(self.status)}

    async def status(self, params: Empty) -> api.MailboxStatus:
        """What this node's mailbox holds, per device, and the tokens this
        device holds for others' mailboxes."""
        box = self.box
        doc: api.MailboxStatus = {"tokens_held": self.tokens.store.held_count()}
        if box is None:
            return doc
        devices: dict[str, api.MailboxDevice] = {}
        for device in box.devices():
            (nbytes, items), (sbytes, sitems) = box.held(device), box.held_by_strangers(device)
            devices[device.hex()] = {
                "bytes": nbytes,
                "items": items,
                "stranger_bytes": sbytes,
                "stranger_items": sitems,
            }
        nbytes, items = box.total
        doc.update(
            {"bytes": nbytes, "items": items, "spent_tokens": box.spent_count, "devices": devices}
        )
        return doc

    @property
    def _grants_path(self) -> Path:
        return self.ctx.data_path / "mailboxes.json"

    @property
    def grants(self) -> list[tuple[Grant, tuple[str, ...]]]:
        """Our grants and their mailboxes' addresses, for our device record."""
        held = self.client.grants if self.client is not None else ()
        return [(g, self._addrs.get(g.mailbox_peer, ())) for g in held]

    def open(self) -> None:
        """Load what this node's mailbox holds.  The daemon calls it before
        its control socket answers, so ``mailbox.status`` never reports a
        box still loading; ``run`` calls it too (once is enough)."""
        if self.box is None:
            self.box = Mailbox(
                self.ctx.params,
                self.identity,
                peer_id=self.ctx.peer_id,
                grant_policy=self._serves,
                store=self.store,
            )
            self.box_driver = MachineDriver("mailbox", self.box, self._box_outputs)

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.open()
        assert self.box is not None and self.box_driver is not None
        self.box_driver.call(self.box.tick)  # what expired while we were down
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
        token_key = self.tokens.signer.public
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
                and grant.token_key == token_key  # else contacts get no tokens for it: ask again
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
        """Grant only to devices active in this node's own replica, and only
        while the operator lets this node be a mailbox (``node.toml``'s
        ``mailbox``, §13.3): grants held are served until they expire."""
        if not self.serves_others:
            return False
        ledger = self.ctx.ledger
        return account in ledger.accounts and device in ledger.state(account).active_keys

    # -- serving ---------------------------------------------------------------

    def _box_outputs(self, outputs: Sequence[MailboxOutput]) -> None:
        for out in outputs:
            if isinstance(out, Misbehaved):
                log.debug("mailbox refused %s: %s", out.peer, out.error.code)
            elif isinstance(out, Expired):
                log.debug("mailbox expired %s", out)

    def _handle(self, data: bytes, peer: str, group: str) -> bytes:
        """One request to our own mailbox: the answer frame."""
        box, driver = self.box, self.box_driver
        assert box is not None and driver is not None
        outputs = driver.call(
            lambda now: box.handle(data, peer=peer, group=group, now=now, random16=os.urandom(16))
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
        group = self.group_of(_remote_host(stream))
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                data = await read_frame(stream, MAX_REQUEST_BYTES)
                await stream.write(frame(self._handle(data, remote, group)))
        except Exception as exc:  # the requester's stream is its business
            log.debug("mailbox stream from %s ended: %s", remote, exc)
        finally:
            try:
                await stream.close()
            except Exception as exc:
                log.debug("mailbox stream from %s: close failed: %s", remote, exc)

    # -- asking a mailbox ---------------------------------------------------------

    async def request(
        self, peer_id: str, addrs: Sequence[str], data: bytes, *, deposit: bool = False
    ) -> Answer:
        """One request to another node's mailbox (raises PeerUnreachable,
        trio.TooSlowError or InvalidInput); a ``deposit`` goes under this
        node's identity at that mailbox (§15.13.1)."""
        with trio.fail_after(REQUEST_TIMEOUT):
            if deposit:
                if self.deposits is None:
                    raise PeerUnreachable(f"{peer_id}: no deposit identity here")
                async with self.deposits.stream(peer_id, addrs, MAILBOX_PROTOCOL) as stream:
                    return await self._exchange(peer_id, stream, data)
            stream = await self.ctx.open_stream(peer_id, addrs, MAILBOX_PROTOCOL)
            try:
                return await self._exchange(peer_id, stream, data)
            finally:
                try:
                    await stream.close()
                except Exception as exc:  # the mailbox may have gone already
                    log.debug("mailbox stream to %s: close failed: %s", peer_id, exc)

    async def _exchange(self, peer_id: str, stream: Stream, data: bytes) -> Answer:
        try:
            await stream.write(frame(data))
            return decode_answer(await read_frame(stream, MAX_ANSWER_FRAME))
        except REQUEST_ERRORS as exc:
            raise PeerUnreachable(f"{peer_id}: {type(exc).__name__}: {exc}") from exc

    async def _ask(self, grant: Grant, addrs: Sequence[str], request: bytes) -> Answer | None:
        """One request to the mailbox of ``grant`` (ours without a stream);
        None if it could not be asked."""
        try:
            peer = grant.mailbox_peer
            if peer == self.ctx.peer_id and self.box is not None:
                return decode_answer(self._handle(request, self.ctx.peer_id, LOCAL_GROUP))
            # what libp2p knows of it now (fresher), then the record's
            known = self.ctx.peer_addresses(peer)
            tried = [*known, *(a for a in addrs if a not in known)]
            return await self.request(peer, tried, request, deposit=True)
        except (PeerUnreachable, trio.TooSlowError, InvalidInput) as exc:
            log.debug("deposit at %s failed: %s", grant.mailbox_peer, exc)
            return None

    async def _deposit_at(
        self, grant: Grant, addrs: Sequence[str], device: bytes, envelope: bytes
    ) -> bool:
        """With one of the device's tokens for this mailbox if we hold one
        (a token it calls spent or invalid is dropped and the next tried),
        else as a stranger.  A refusal for room keeps the token."""
        tokens = self.tokens.take(device, grant.mailbox_key, TOKEN_TRIES) if grant.token_key else []
        try:
            for token in tokens:
                answer = await self._ask(grant, addrs, deposit_request(device, envelope, token))
                if isinstance(answer, Deposited):
                    self.tokens.spent(device, grant.mailbox_key, token)
                    return True
                if not isinstance(answer, Refused) or answer.code not in DEAD_TOKEN:
                    log.debug("deposit at %s refused: %s", grant.mailbox_peer, answer)
                    return False  # unreachable, or no room: the token was not spent
                self.tokens.spent(device, grant.mailbox_key, token)
        finally:
            self.tokens.release(device, grant.mailbox_key, tokens)
        answer = await self._ask(grant, addrs, deposit_request(device, envelope))
        if isinstance(answer, Refused):
            log.debug("stranger's deposit at %s refused: %s", grant.mailbox_peer, answer.code)
        return isinstance(answer, Deposited)

    async def deposit(self, record: SignedDeviceRecord, device: bytes, envelope: bytes) -> bool:
        """Leave ``envelope`` at a mailbox the device's record names; one
        on this node last, since it goes offline with us.  False if none
        took it: the outbox keeps the envelope and tries again later."""
        named: list[tuple[Grant, tuple[str, ...]]] = []
        for grant_raw, addrs in record.mailboxes:
            try:
                named.append((decode_grant(grant_raw, self.ctx.params), tuple(addrs)))
            except InvalidInput as exc:
                log.debug("unreadable grant in a record: %s", exc.code)
        named.sort(key=lambda entry: entry[0].mailbox_peer == self.ctx.peer_id)  # stable
        for grant, addrs in named:
            if await self._deposit_at(grant, addrs, device, envelope):
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
                if self.on_grants_changed is not None:
                    self.on_grants_changed()  # contacts get tokens for new mailboxes
            elif isinstance(out, GrantDropped):
                log.info("mailbox at %s dropped: %s", out.grant.mailbox_peer, out.reason)

    def _spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
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
            token_key = self.tokens.signer.public
            request = grant_request(self.ctx.params, me, account, key, now.wall_ms, token_key)
            answer = await self.request(peer_id, (), request)
            if isinstance(answer, Refused) and answer.code == "schema":
                # a mailbox of the first version: a grant without our token key
                request = grant_request(self.ctx.params, me, account, key, now.wall_ms)
                answer = await self.request(peer_id, (), request)
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
