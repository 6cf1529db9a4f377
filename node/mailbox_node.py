"""Mailboxes on a running node (issue: Messaging, Delivery; PROTOCOL.md §15.10).

Every node serves ``/smu/mailbox/1`` for devices that are active in its own
replica.  Its mailbox key is its libp2p Ed25519 identity key, which its peer
id embeds and Noise authenticates, so a device can ask any peer for a grant
without a lookup first; grant signatures are domain-separated from
libp2p's.  A device obtains a grant from one of its peers and names it, with
the mailbox's addresses, in its signed device record; a sender whose direct
delivery fails deposits the envelope there and keeps retrying directly until
the recipient's receipt arrives; the device fetches with a signature on a
fresh challenge, stores what it opens, and then deletes it from the mailbox.

Held envelopes live in memory: a mailbox that restarts loses them, and the
sender's retries cover that (a mailbox is a shortcut, never the only copy).

A device keeps up to ``MAX_OWN_MAILBOXES`` grants, at different peers, and
writes them to ``mailboxes.json`` in its data directory, so that after a
restart it goes on fetching from the mailboxes its record named (what was
left there for it waits there, not at whichever peers it meets next).
A sender tries a mailbox on its own node last: it goes offline with the
sender.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from protocol.core.errors import InvalidInput
from protocol.messaging.mailbox import (
    MAX_ANSWER_FRAME,
    MAX_REQUEST_BYTES,
    PROTOCOL_ID,
    Answer,
    ChallengeIssued,
    Deposited,
    Grant,
    Granted,
    Items,
    Mailbox,
    MailboxIdentity,
    challenge_request,
    decode_answer,
    decode_grant,
    delete_request,
    deposit_request,
    fetch_request,
    grant_request,
)
from protocol.records.device import MAX_MAILBOXES, text_ok
from protocol.records.grant import GRANT_V2

from .datadir import write_private
from .transport import frame, parse_multiaddr, read_frame

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("smu.mailbox")
MAILBOX_PROTOCOL = TProtocol(PROTOCOL_ID)
REQUEST_TIMEOUT = 10.0
FETCH_INTERVAL = 2.0
MAX_OWN_MAILBOXES = MAX_MAILBOXES


def _addr_ok(addr: object) -> bool:
    """An address as our (v2) record carries it (PROTOCOL.md §16)."""
    return text_ok(addr)


def _now_ms() -> int:
    return int(time.time() * 1000)


class MailboxService:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.identity = MailboxIdentity(daemon.secrets.node_seed)
        self.box: Mailbox | None = None
        #: our own grants and the mailbox's addresses, named in our record
        self.grants: list[tuple[Grant, tuple[str, ...]]] = []

    @property
    def _grants_path(self) -> Path:
        return self.d.datadir.path / "mailboxes.json"

    def start(self) -> None:
        self.box = Mailbox(
            self.d.params, self.identity, peer_id=self.d.peer_id, grant_policy=self._serves
        )
        self.grants = self._load_grants()

    def _load_grants(self) -> list[tuple[Grant, tuple[str, ...]]]:
        """Our grants from the last run that are still ours and valid, at
        most ``MAX_OWN_MAILBOXES`` at different peers; a damaged file only
        costs asking for new grants."""
        account, device = self.d.account, self.d.secrets.device.sign_public
        try:
            entries = json.loads(self._grants_path.read_text())
            grants = [
                (decode_grant(bytes.fromhex(e["grant"]), self.d.params), e["addrs"])
                for e in entries
            ]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError, KeyError, AttributeError, InvalidInput) as exc:
            log.warning("ignoring %s: %s", self._grants_path, exc)
            return []
        kept: list[tuple[Grant, tuple[str, ...]]] = []
        for grant, addrs in grants:
            if (
                account is not None
                and grant.version == GRANT_V2  # a v1 grant, from an older run, cannot be named
                and grant.valid_for(account, device, _now_ms())
                and all(g.mailbox_peer != grant.mailbox_peer for g, _ in kept)
                and type(addrs) is list
                and all(_addr_ok(a) for a in addrs)
                and len(kept) < MAX_OWN_MAILBOXES
            ):
                kept.append((grant, tuple(addrs[:4])))
        return kept

    def _save_grants(self, grants: list[tuple[Grant, tuple[str, ...]]]) -> None:
        entries = [{"grant": g.raw.hex(), "addrs": list(a)} for g, a in grants]
        write_private(self._grants_path, json.dumps(entries, indent=1).encode())

    def _serves(self, account: bytes, device: bytes) -> bool:
        """Grant only to devices active in this node's own replica."""
        return (
            account in self.d.ledger.accounts and device in self.d.ledger.state(account).active_keys
        )

    # -- serving -------------------------------------------------------------

    async def on_stream(self, stream: Any) -> None:
        remote = stream.muxed_conn.peer_id.to_base58()
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                data = await read_frame(stream, MAX_REQUEST_BYTES)
                assert self.box is not None
                answer = self.box.handle(
                    data, peer=remote, now_ms=_now_ms(), random16=os.urandom(16)
                )
                await stream.write(frame(answer))
        except Exception as exc:
            log.debug("mailbox stream from %s ended: %s", remote, exc)
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    # -- asking a mailbox ----------------------------------------------------

    async def request(self, peer_id: str, addrs: tuple[str, ...], data: bytes) -> Answer:
        peer = ID.from_base58(peer_id)
        with trio.fail_after(REQUEST_TIMEOUT):
            if addrs:
                await self.d.host.connect(PeerInfo(peer, [parse_multiaddr(a) for a in addrs]))
            stream = await self.d.host.new_stream(peer, [MAILBOX_PROTOCOL])
            try:
                await stream.write(frame(data))
                return decode_answer(await read_frame(stream, MAX_ANSWER_FRAME))
            finally:
                with contextlib.suppress(Exception):
                    await stream.close()

    async def deposit(self, record: Any, device: bytes, envelope: bytes) -> bool:
        """Leave ``envelope`` at a mailbox the device's record names; one
        on this node last, since it goes offline with us."""
        named: list[tuple[Grant, tuple[str, ...]]] = []
        for grant_raw, addrs in getattr(record, "mailboxes", ()):
            try:
                named.append((decode_grant(grant_raw, self.d.params), tuple(addrs)))
            except InvalidInput as exc:
                log.debug("unreadable grant in a record: %s", exc.code)
        named.sort(key=lambda entry: entry[0].mailbox_peer == self.d.peer_id)  # stable
        request = deposit_request(device, envelope)
        for grant, addrs in named:
            try:
                if grant.mailbox_peer == self.d.peer_id and self.box is not None:
                    answer = decode_answer(
                        self.box.handle(
                            request, peer=self.d.peer_id, now_ms=_now_ms(), random16=os.urandom(16)
                        )
                    )
                else:
                    answer = await self.request(grant.mailbox_peer, addrs, request)
            except Exception as exc:
                log.debug("deposit failed: %s", exc)
                continue
            if isinstance(answer, Deposited):
                return True
        return False

    # -- our own mailbox -----------------------------------------------------

    def _own_account(self) -> bytes | None:
        return self.d.account if self.d.device_active() else None

    async def ensure_grant(self) -> None:
        account = self._own_account()
        now = _now_ms()
        kept = [
            (g, a)
            for g, a in self.grants
            if g.valid_for(account or b"", self.d.secrets.device.sign_public, now + 3600_000)
        ]
        if len(kept) != len(self.grants):
            self._save_grants(kept)
            self.grants = kept
        if account is None or len(self.grants) >= MAX_OWN_MAILBOXES:
            return
        me = self.d.secrets.device
        have = {g.mailbox_peer for g, _ in self.grants}
        for peer_id in sorted(self.d.links):
            if peer_id in have or len(self.grants) >= MAX_OWN_MAILBOXES:
                continue
            try:
                key = ID.from_base58(peer_id).extract_public_key().to_bytes()
                addrs = tuple(
                    str(a) for a in self.d.host.get_peerstore().addrs(ID.from_base58(peer_id))
                )
                answer = await self.request(
                    peer_id, (), grant_request(self.d.params, me, account, key, now)
                )
                if not isinstance(answer, Granted):
                    continue
                grant = decode_grant(answer.grant, self.d.params)
            except Exception as exc:
                log.debug("no grant from %s: %s", peer_id, exc)
                continue
            if (
                grant.version == GRANT_V2  # what our v2 record may name (§15.11)
                and grant.valid_for(account, me.sign_public, now)
                and grant.mailbox_key == key
            ):
                grants = [*self.grants, (grant, tuple(a for a in addrs if _addr_ok(a))[:4])]
                self._save_grants(grants)  # before our record names it
                self.grants = grants
                log.info("mailbox at %s", peer_id)
                self.d.publish_own_record()

    async def fetch_all(self) -> int:
        """Fetch, store and delete what our mailboxes hold; how many stored."""
        account = self._own_account()
        if account is None:
            return 0
        me = self.d.secrets.device
        stored = 0
        for grant, addrs in list(self.grants):
            try:
                issued = await self.request(
                    grant.mailbox_peer, addrs, challenge_request(me.sign_public)
                )
                if not isinstance(issued, ChallengeIssued):
                    continue
                items = await self.request(
                    grant.mailbox_peer,
                    addrs,
                    fetch_request(self.d.params, me, grant.mailbox_key, issued.nonce, limit=100),
                )
                if not isinstance(items, Items) or not items.items:
                    continue
                done = []
                for item in items.items:
                    try:
                        self.d.messages.receive(item.envelope)  # stored before deletion
                        stored += 1
                    except InvalidInput as exc:
                        log.debug("mailbox item refused: %s", exc.code)
                    done.append(item.item_id)
                issued = await self.request(
                    grant.mailbox_peer, addrs, challenge_request(me.sign_public)
                )
                if isinstance(issued, ChallengeIssued):
                    await self.request(
                        grant.mailbox_peer,
                        addrs,
                        delete_request(self.d.params, me, grant.mailbox_key, issued.nonce, done),
                    )
            except Exception as exc:
                log.debug("mailbox fetch failed: %s", exc)
        return stored

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.ensure_grant()
                await self.fetch_all()
            if self.box is not None:
                self.box.expire(_now_ms())
            await trio.sleep(FETCH_INTERVAL)
