"""Messages on a running node (issue: Messaging; DESIGN §5).

The adapter for ``protocol.messaging.envelope``: sending seals a message once for
every device the sender's own replica authorises, stores it with one outbox
row per device, and only then reports it as sent; a delivery task carries
each envelope over ``/smu/message/1`` to the node named in the device's
signed record, with back-off.  Receiving opens an envelope against this
node's own replica and stores the message together with the replay state in
one transaction before it answers ACCEPTED.  Receipts are signed and
encrypted like messages.  A device linked with approval receives the
approver's history (``send_history``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from protocol.core.errors import InvalidInput, UsageError
from protocol.core.keys import handle
from protocol.core.names import sanitise
from protocol.messaging.content import (
    Content,
    HistoryBundle,
    HistoryEntry,
    Receipt,
    ReceiptStatus,
    ReplayGuard,
    Text,
)
from protocol.messaging.envelope import (
    MAX_ENVELOPE_BYTES,
    MESSAGE_PROTOCOL_ID,
    NotForThisDeviceError,
    OpenedEnvelope,
    RecipientDisputedError,
    decode_delivery,
    decode_delivery_answer,
    delivery_answer,
    delivery_frame,
    ledger_lookup,
    open_envelope,
    seal,
)

from . import control
from .clock import clock_now
from .control import RpcFailure
from .transport import frame, parse_multiaddr, read_frame

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("smu.messages")
MESSAGE_PROTOCOL = TProtocol(MESSAGE_PROTOCOL_ID)
KIND_TEXT, KIND_RECEIPT, KIND_HISTORY = 1, 2, 3
DELIVERY_TIMEOUT = 10.0
MAX_BACKOFF_MS = 5 * 60 * 1000
HISTORY_LIMIT = 1000
MAX_IN_FLIGHT = 32
DIVERGENCE_INTERVAL = 10.0
MAX_NOTICES = 100
DEPOSITED = "deposited"
DEPOSITED_RETRY_MS = 60_000
# Refusals that mean "this envelope can never be opened there": stop trying.
FINAL_REFUSALS = frozenset({"not_for_this_device", "decrypt", "bad_signature", "schema"})


def _now_ms() -> int:
    return int(time.time() * 1000)


class MessageMethods:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.db = daemon.store.db
        row = self.db.execute("SELECT guard FROM replay WHERE id=1").fetchone()
        self.guard = ReplayGuard.decode(bytes(row[0])) if row else ReplayGuard()
        self.wake = trio.Event()
        #: S5 notices for the inbox: (stored_ms, text), newest last, bounded
        self.notices: list[tuple[int, str]] = []
        self._last_divergence: dict[bytes, float] = {}

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "message.send": self.send,
            "message.inbox": self.inbox,
            "message.conversation": self.conversation,
            "message.requests": self.requests,
            "requests.accept": self.accept_request,
            "requests.block": self.block_request,
            "message.status": self.status,
            "device.records": self.device_records,
        }

    # -- storage -------------------------------------------------------------

    def _tx(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """One durable transaction (synchronous=FULL), after any open one."""
        self.d.store.flush()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self.db.execute(sql, args)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _next_counter(self, account: bytes) -> tuple[int, tuple[str, tuple[Any, ...]]]:
        """The next counter for ``account`` and the statement that uses it up;
        the caller runs that statement in the transaction that stores the
        message, so a counter is never reused and never skipped silently."""
        row = self.db.execute("SELECT next FROM counters WHERE account=?", (account,)).fetchone()
        counter = int(row[0]) if row else 1
        return counter, (
            "INSERT INTO counters(account, next) VALUES(?, ?) ON CONFLICT(account) "
            "DO UPDATE SET next=excluded.next",
            (account, counter + 1),
        )

    def _is_contact(self, account: bytes) -> tuple[bool, bool]:
        row = self.db.execute("SELECT blocked FROM contacts WHERE account=?", (account,)).fetchone()
        return (row is not None and not row[0], row is not None and bool(row[0]))

    # -- sending -------------------------------------------------------------

    def _seal_and_queue(
        self,
        recipient: bytes,
        content: Content,
        kind: int,
        text: str,
        *,
        force: bool = False,
        only: list[bytes] | None = None,
    ) -> tuple[bytes, int]:
        me = self.d.secrets.device
        own = self.d.own_account()
        states = self.d.ledger
        if recipient not in states.accounts:
            raise RpcFailure(control.USAGE, "that account's log has not reached this node yet")
        my_state, their_state = states.state(own), states.state(recipient)
        if me.sign_public not in my_state.active_keys:
            raise RpcFailure(
                control.USAGE, "this device is not active in its account: it cannot send"
            )
        counter, use_counter = self._next_counter(recipient)
        try:
            env = seal(
                self.d.params,
                me,
                my_state,
                their_state,
                content,
                counter=counter,
                timestamp=_now_ms(),
                seed=os.urandom(32),
                force=force,
                only_devices=only,
            )
        except RecipientDisputedError as exc:
            raise RpcFailure(control.USAGE, f"{exc}; send anyway with --force") from exc
        except UsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        now = _now_ms()
        targets = [d for d in env.wrapped_for if d != me.sign_public]
        rows: list[tuple[str, tuple[Any, ...]]] = [
            use_counter,
            (
                "INSERT INTO messages(id, peer, outgoing, sender_account, sender_device, sent_ms, "
                "stored_ms, kind, text, envelope) VALUES(?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
                (env.message_id, recipient, own, me.sign_public, now, now, kind, text, env.raw),
            ),
        ]
        for device in targets:
            account = recipient if their_state.device(device) is not None else own
            rows.append(
                (
                    "INSERT INTO deliveries(message, device, account, state) "
                    "VALUES(?, ?, ?, 'pending')",
                    (env.message_id, device, account),
                )
            )
        self._tx(rows)  # stored before it is reported as sent
        self.wake.set()
        return env.message_id, len(targets)

    async def send(self, params: dict[str, Any]) -> dict[str, Any]:
        account, name = self.d.contacts.find(str(params["contact"]))
        text = str(params["text"])
        if not text:
            raise RpcFailure(control.USAGE, "an empty message")
        message_id, devices = self._seal_and_queue(
            account, Text(text), KIND_TEXT, text, force=bool(params.get("force"))
        )
        return {"message_id": message_id.hex(), "to": name, "devices": devices, "stored": True}

    def send_history(self, device: bytes) -> None:
        """History for a device this one just approved (§14.9): one bundle,
        wrapped for that device only."""
        rows = self.db.execute(
            "SELECT peer, id, sender_account, sender_device, sent_ms, text FROM messages "
            "WHERE kind=? AND request=0 ORDER BY stored_ms DESC LIMIT ?",
            (KIND_TEXT, HISTORY_LIMIT),
        ).fetchall()
        entries = tuple(
            HistoryEntry(bytes(peer), bytes(mid), bytes(sa), bytes(sd), int(ts), Text(str(text)))
            for peer, mid, sa, sd, ts, text in reversed(rows)
        )
        if not entries:
            return
        self._seal_and_queue(
            self.d.own_account(),
            HistoryBundle(0, 1, entries),
            KIND_HISTORY,
            f"history: {len(entries)} messages",
            only=[device],
        )

    async def run_delivery(self) -> None:
        """Deliver due outbox rows, up to MAX_IN_FLIGHT at once."""
        in_flight: set[tuple[bytes, bytes]] = set()

        async def one(
            key: tuple[bytes, bytes], account: bytes, attempts: int, envelope: bytes
        ) -> None:
            try:
                await self._deliver_one(key[0], key[1], account, attempts, envelope)
            finally:
                in_flight.discard(key)
                self.wake.set()

        async with trio.open_nursery() as nursery:
            while True:
                self.wake = trio.Event()
                due = self.db.execute(
                    "SELECT d.message, d.device, d.account, d.attempts, m.envelope "
                    "FROM deliveries d JOIN messages m ON m.id = d.message AND m.outgoing = 1 "
                    "WHERE d.state IN ('pending', 'deposited') AND d.next_try_ms <= ? "
                    "ORDER BY d.next_try_ms "
                    "LIMIT ?",
                    (_now_ms(), MAX_IN_FLIGHT * 2),
                ).fetchall()
                for message, device, account, attempts, envelope in due:
                    key = (bytes(message), bytes(device))
                    if key in in_flight or len(in_flight) >= MAX_IN_FLIGHT:
                        continue
                    in_flight.add(key)
                    nursery.start_soon(one, key, bytes(account), int(attempts), bytes(envelope))
                with trio.move_on_after(1.0):
                    await self.wake.wait()

    async def _deliver_one(
        self, message: bytes, device: bytes, account: bytes, attempts: int, envelope: bytes
    ) -> None:
        error = await self._try_deliver(device, account, envelope)
        if error is None:
            state, next_try = "delivered", 0
        elif error == DEPOSITED:
            # At a mailbox: the receipt says when it arrives; until then keep
            # trying directly, slowly (a mailbox is never the only copy).
            state, next_try = "deposited", _now_ms() + DEPOSITED_RETRY_MS
        elif error.split(":")[0] in FINAL_REFUSALS:
            state, next_try = "failed", 0
        else:
            state = "pending"
            next_try = _now_ms() + min(MAX_BACKOFF_MS, 1000 * 2 ** min(attempts, 16))
        self._tx(
            [
                (
                    "UPDATE deliveries SET state=?, attempts=?, next_try_ms=?, last_error=? "
                    "WHERE message=? AND device=?",
                    (state, attempts + 1, next_try, error, message, device),
                )
            ]
        )

    async def _try_deliver(self, device: bytes, account: bytes, envelope: bytes) -> str | None:
        records = getattr(self.d.replicator, "records", None)
        record = records.get(account, device) if records is not None else None
        if record is None or not record.peer_ids:
            return "unreachable: no device record names where this device is"
        error = await self._try_direct(record, envelope)
        if (
            error is not None
            and error.startswith("unreachable")
            and await self.d.mailbox.deposit(record, device, envelope)
        ):
            return DEPOSITED
        return error

    async def _try_direct(self, record: Any, envelope: bytes) -> str | None:
        try:
            peer = ID.from_base58(record.peer_ids[0])
            with trio.fail_after(DELIVERY_TIMEOUT):
                await self.d.host.connect(
                    PeerInfo(peer, [parse_multiaddr(a) for a in record.addrs])
                )
                stream = await self.d.host.new_stream(peer, [MESSAGE_PROTOCOL])
                try:
                    await stream.write(frame(delivery_frame(envelope)))
                    answer = decode_delivery_answer(await read_frame(stream, 1024))
                finally:
                    with contextlib.suppress(Exception):
                        await stream.close()
        except InvalidInput as exc:
            return f"{exc.code}: {exc}"
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}"
        if answer is None or answer.code == "replay":  # replay: it has this message already
            return None
        return f"{answer.code}: {answer.message}"

    # -- receiving -----------------------------------------------------------

    def diverged(self, views: Any) -> None:
        """The sender saw heads of an account that we lack (S5): reconcile with
        every peer now, at most every DIVERGENCE_INTERVAL per account, and
        tell the user.  Only accounts this node holds count: the views may
        come from a sender we cannot authenticate yet, so made-up account ids
        must cost nothing."""
        now = trio.current_time()
        for view in views:
            if view.account not in self.d.ledger.accounts:
                continue
            lacking = [h for h in view.foreign_heads if not self.d.ledger.has(h)]
            if not lacking:
                continue
            if now - self._last_divergence.get(view.account, -1e9) < DIVERGENCE_INTERVAL:
                continue
            self._last_divergence[view.account] = now
            for peer in list(self.d.links):
                self.d.apply(self.d.replicator.reconcile_now(peer, clock_now()))
            self.notices.append(
                (
                    _now_ms(),
                    (
                        f"a message showed {len(lacking)} event(s) of "
                        f"{self._label(view.account)}'s account that your peers had not given "
                        "you yet; this node is fetching them (if it keeps happening, your peers "
                        "may be withholding them)"
                    ),
                )
            )
            del self.notices[:-MAX_NOTICES]

    async def on_stream(self, stream: Any) -> None:
        try:
            with trio.fail_after(DELIVERY_TIMEOUT):
                data = await read_frame(stream, MAX_ENVELOPE_BYTES + 64)
            error: InvalidInput | None = None
            try:
                self.receive(decode_delivery(data))
            except InvalidInput as exc:
                error = exc
                views = getattr(exc, "views", None)
                if views:  # our replica lags the sender's: catch up (S5)
                    self.diverged(views)
            await stream.write(frame(delivery_answer(error)))
        except Exception as exc:
            log.debug("message stream ended: %s", exc)
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    def receive(self, envelope: bytes) -> OpenedEnvelope:
        """Open, store with the replay state, and answer (raises InvalidInput)."""
        own = self.d.account
        if own is None:
            raise NotForThisDeviceError("this device belongs to no account yet")
        # Open against a copy of the replay state: it replaces ours only once
        # the message is durable, or a failed write would turn the sender's
        # retry into a "replay" and lose the message.
        guard = ReplayGuard.decode(self.guard.encode())
        opened = open_envelope(
            self.d.params,
            envelope,
            own,
            self.d.secrets.device,
            ledger_lookup(self.d.ledger),
            guard,
        )
        rows: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO replay(id, guard) VALUES(1, ?) ON CONFLICT(id) DO UPDATE SET "
                "guard=excluded.guard",
                (guard.encode(),),
            )
        ]
        content = opened.content
        outgoing = opened.sender_account == own
        peer = opened.recipient_account if outgoing else opened.sender_account
        now = _now_ms()
        send_receipt = False
        if isinstance(content, Text):
            contact, blocked = self._is_contact(peer)
            if not blocked:
                rows.append(
                    (
                        "INSERT OR IGNORE INTO messages(id, peer, outgoing, sender_account, "
                        "sender_device, sent_ms, stored_ms, kind, text, request) "
                        "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            opened.message_id,
                            peer,
                            int(outgoing),
                            opened.sender_account,
                            opened.sender_device,
                            opened.timestamp,
                            now,
                            KIND_TEXT,
                            content.text,
                            int(not outgoing and not contact),
                        ),
                    )
                )
                send_receipt = not outgoing
        elif isinstance(content, Receipt):
            for mid in content.message_ids:
                rows.append(
                    (
                        "UPDATE deliveries SET state='delivered' WHERE message=? AND device=?",
                        (mid, opened.sender_device),
                    )
                )
        elif isinstance(content, HistoryBundle):
            for e in content.entries:
                if isinstance(e.content, Text):
                    rows.append(
                        (
                            "INSERT OR IGNORE INTO messages(id, peer, outgoing, sender_account, "
                            "sender_device, sent_ms, stored_ms, kind, text) "
                            "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                e.message_id,
                                e.peer_account,
                                int(e.sender_account == own),
                                e.sender_account,
                                e.sender_device,
                                e.timestamp,
                                now,
                                KIND_TEXT,
                                e.content.text,
                            ),
                        )
                    )
        self._tx(rows)  # the message and the replay state, together, before ACCEPTED
        self.guard = guard
        if opened.diverged:
            self.diverged(opened.views)
        if send_receipt:
            with contextlib.suppress(RpcFailure):
                self._seal_and_queue(
                    peer, Receipt(ReceiptStatus.DELIVERED, (opened.message_id,)), KIND_RECEIPT, ""
                )
        return opened

    # -- reading -------------------------------------------------------------

    def _label(self, account: bytes) -> str:
        row = self.db.execute("SELECT name FROM contacts WHERE account=?", (account,)).fetchone()
        if row:
            return sanitise(str(row[0]))
        if account in self.d.ledger.accounts:
            return handle(self.d.ledger.state(account).display_name, account)
        return account.hex()[:12]

    def _device_name(self, account: bytes, device: bytes) -> str:
        if account in self.d.ledger.accounts:
            d = self.d.ledger.state(account).device(device)
            if d is not None:
                return sanitise(d.name)
        return device.hex()[:12]

    def _doc(self, row: tuple[Any, ...]) -> dict[str, Any]:
        mid, peer, outgoing, sa, sd, sent, stored, text, request = row
        doc = {
            "message_id": bytes(mid).hex(),
            "conversation": self._label(bytes(peer)),
            "conversation_account": bytes(peer).hex(),
            "outgoing": bool(outgoing),
            "from": self._label(bytes(sa)) if not outgoing else "me",
            "from_device": self._device_name(bytes(sa), bytes(sd)),
            "sent_ms": int(sent),
            "stored_ms": int(stored),
            "text": sanitise(str(text), max_chars=65536),
            "request": bool(request),
        }
        if outgoing:
            states = self.db.execute(
                "SELECT state, COUNT(*) FROM deliveries WHERE message=? GROUP BY state", (mid,)
            ).fetchall()
            doc["deliveries"] = {str(s): int(n) for s, n in states}
        return doc

    _COLUMNS = (
        "id, peer, outgoing, sender_account, sender_device, sent_ms, stored_ms, text, request"
    )

    async def inbox(self, params: dict[str, Any]) -> dict[str, Any]:
        since = int(params.get("since_ms") or 0)
        rows = self.db.execute(
            f"SELECT {self._COLUMNS} FROM messages WHERE kind=? AND outgoing=0 AND request=0 "
            "AND stored_ms > ? ORDER BY stored_ms, id LIMIT 500",
            (KIND_TEXT, since),
        ).fetchall()
        changes = [c for c in (await self.d.contacts.contact_list({}))["contacts"] if c["changes"]]
        requests = self.db.execute(
            "SELECT COUNT(DISTINCT peer) FROM messages WHERE request=1"
        ).fetchone()[0]
        return {
            "notices": [{"stored_ms": t, "text": x} for t, x in self.notices if t > since],
            "messages": [self._doc(r) for r in rows],
            "contact_changes": [{"contact": c["name"], "changes": c["changes"]} for c in changes],
            "requests": int(requests),
        }

    async def conversation(self, params: dict[str, Any]) -> dict[str, Any]:
        account, name = self.d.contacts.find(str(params["contact"]))
        rows = self.db.execute(
            f"SELECT {self._COLUMNS} FROM messages WHERE peer=? AND kind=? ORDER BY sent_ms, id",
            (account, KIND_TEXT),
        ).fetchall()
        return {"contact": name, "account": account.hex(), "messages": [self._doc(r) for r in rows]}

    async def device_records(self, params: dict[str, Any]) -> dict[str, Any]:
        """Where each device of an account can be reached (PROTOCOL.md §16)."""
        account = self.d.resolve_account(params.get("account"))
        from protocol.records.grant import decode_grant

        out = []
        for r in self.d.replicator.records.for_account(account):
            out.append(
                {
                    "device": r.device.hex(),
                    "device_name": self._device_name(account, r.device),
                    "peer_ids": list(r.peer_ids),
                    "addrs": list(r.addrs),
                    "mailboxes": [
                        decode_grant(g, self.d.params).mailbox_peer for g, _ in r.mailboxes
                    ],
                    "expires_ms": r.expires,
                }
            )
        return {"records": out}

    async def status(self, params: dict[str, Any]) -> dict[str, Any]:
        """Per message id: how many of its deliveries are in each state."""
        out: dict[str, dict[str, int]] = {}
        for mid in params["ids"]:
            rows = self.db.execute(
                "SELECT state, COUNT(*) FROM deliveries WHERE message=? GROUP BY state",
                (bytes.fromhex(str(mid)),),
            ).fetchall()
            out[str(mid)] = {str(state): int(n) for state, n in rows}
        return {"deliveries": out}

    async def requests(self, params: dict[str, Any]) -> dict[str, Any]:
        rows = self.db.execute(
            f"SELECT {self._COLUMNS} FROM messages WHERE request=1 ORDER BY stored_ms"
        ).fetchall()
        return {"requests": [self._doc(r) for r in rows]}

    async def accept_request(self, params: dict[str, Any]) -> dict[str, Any]:
        account = self.d.resolve_account(str(params["account"]))
        added = await self.d.contacts.contact_add(
            {"ref": account.hex(), "name": params.get("name")}
        )
        self._tx([("UPDATE messages SET request=0 WHERE peer=?", (account,))])
        return added

    async def block_request(self, params: dict[str, Any]) -> dict[str, Any]:
        account = self.d.resolve_account(str(params["account"]))
        self._tx(
            [
                (
                    "INSERT INTO contacts(account, name, added_ms, blocked) VALUES(?, ?, ?, 1) "
                    "ON CONFLICT(account) DO UPDATE SET blocked=1",
                    (account, account.hex()[:12], _now_ms()),
                ),
                ("DELETE FROM messages WHERE peer=? AND request=1", (account,)),
            ]
        )
        return {"blocked": account.hex()}
