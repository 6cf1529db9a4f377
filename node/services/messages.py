"""Messages on a running node: the ``message.*`` and ``requests.*``
namespaces, the ``/smu/message/1`` stream and the outbox (DESIGN §5;
PROTOCOL.md §15).

Sending seals a message once for every device the sender's own replica
authorises, stores it with one outbox row per device, and only then reports
it as sent; the delivery task carries each envelope to the node named in
the device's signed record, on the per-link channel with it or else over
``/smu/message/1`` (``direct.py``, §15.14.1), with back-off, and falls back
to a mailbox.  Receiving opens an envelope against this node's own
replica and stores the message together with the replay state in one
transaction before it answers ACCEPTED; the replay state is one row per
sender stream, read and written in place (``node/storage/replay.py``).
Texts from accounts that are not contacts are message requests, capped and
expiring (``requests.py``).  Receipts are signed and encrypted like messages,
and go to contacts only.  Every outbox row ends: delivered, failed, or
expired after its kind's lifetime (``DeliveryPolicy``).  A device linked
with approval receives the approver's history (``send_history``).  Wraps
use scheme 2 where the recipient device speaks it (``sessions.py``), and a
text's copy for this account's other devices travels in an envelope of its
own (``sealing.py``, PROTOCOL.md §15.22).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import trio

from protocol.core.errors import InvalidInput, UsageError
from protocol.core.keys import handle
from protocol.core.names import sanitise
from protocol.messaging.content import (
    MAX_RECEIPT_IDS,
    MAX_REPLAY_STREAMS,
    Content,
    HistoryBundle,
    PendingReplay,
    Receipt,
    ReceiptStatus,
    SentCopy,
    Text,
)
from protocol.messaging.envelope import (
    MAX_ENVELOPE_BYTES,
    MESSAGE_PROTOCOL_ID,
    NotForThisDeviceError,
    OpenedEnvelope,
    RecipientDisputedError,
    decode_delivery,
    delivery_answer,
    ledger_lookup,
    open_envelope,
)
from protocol.messaging.resets import KeyGoneError, SessionNotHeldError, SessionReset
from protocol.messaging.sync import SyncEdits
from protocol.messaging.tokens import TokenBatch
from protocol.records.device import SignedDeviceRecord

from .. import control
from ..api import contact as contact_api
from ..api import message as api
from ..api.schema import Empty
from ..context import NodeContext, Stream
from ..control import RpcFailure
from ..prekeys import PrekeyKeeper
from ..storage.db import Statement
from ..storage.messages import (
    KIND_HISTORY,
    KIND_RECEIPT,
    KIND_SYNC,
    KIND_TEXT,
    DeliveryState,
    DueDelivery,
    MessageRow,
    MessageStore,
    NewMessage,
    delivery_policy,
)
from ..storage.replay import ReplayStore
from ..storage.sessions import SessionStore
from ..transport import frame, read_frame
from .contacts import ContactSet
from .direct import Deposit, DirectDelivery
from .divergence import MAX_NOTICES, Divergence
from .history import history_bundles, received_history
from .outbox_policy import (
    DELIVERY_TIMEOUT,
    MAX_IN_FLIGHT,
    SESSION_LOST,
    next_delivery,
)
from .prekey_client import PrekeyClient
from .requests import RequestLimits, Requests
from .resets import ResetService
from .sealing import copy_message, own_copy, seal_counted
from .sessions import MemoryPrekeyFile, SessionService

log = logging.getLogger("smu.messages")
MESSAGE_PROTOCOL = MESSAGE_PROTOCOL_ID
KIND_TOKENS = 48
#: receipts wait this long for others to the same device, then go in one
#: envelope (§15.14): a burst of texts costs one receipt per sending device
RECEIPT_WINDOW_SECONDS = 0.05
#: expired requests and finished receipts are swept this often
HOUSEKEEPING_INTERVAL = 3600.0

#: told of a message once it is durable (live views: the web app)
StoredListener = Callable[[NewMessage], None]
#: told of a message id whose deliveries changed, once that is durable
DeliveryListener = Callable[[bytes], None]


class TokenHooks(Protocol):
    """What receiving asks of the token service (``services/tokens.py``)."""

    def hold_statements(self, sender: bytes, batch: TokenBatch) -> list[Statement]: ...

    def message_from(self, account: bytes) -> None: ...


class SyncHooks(Protocol):
    """What receiving asks of account-wide sync (``services/sync.py``)."""

    def receive_statements(self, batch: SyncEdits) -> tuple[list[Statement], int]: ...

    def changed(self) -> None: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


class MessageService:
    def __init__(
        self,
        ctx: NodeContext,
        store: MessageStore,
        contacts: ContactSet,
        *,
        deposit: Deposit,
        reconcile_all: Callable[[], None],
        contact_changes: Callable[[], list[contact_api.ContactDoc]],
        request_limits: RequestLimits | None = None,
        max_replay_streams: int = MAX_REPLAY_STREAMS,
        clock_ms: Callable[[], int] = _now_ms,
        tokens: TokenHooks | None = None,
        sync: SyncHooks | None = None,
        prekeys: PrekeyKeeper | None = None,
    ) -> None:
        self.ctx = ctx
        #: wrap scheme 2: sessions per device pair, prekeys, stickiness (§19.13)
        self.sessions = SessionService(
            ctx,
            SessionStore(store.db),
            prekeys or PrekeyKeeper(MemoryPrekeyFile()),
            clock_ms,
            contacts.is_contact,
        )
        #: signed session resets, asked and answered (§19.15)
        self.resets = ResetService(
            ctx, self.sessions, store, contacts, clock_ms,
            lambda to, content, kind, text, only: self._seal_and_queue(
                to, content, kind, text, only=only
            ),
            self._device_name,
        )  # fmt: skip
        #: account-wide state from this account's other devices (§15.19)
        self.sync = sync
        #: mailbox tokens: keep those handed to us, count those spent (§15.16)
        self.tokens = tokens
        #: fetches one-time prekeys before a set-up (§19.16); set by the daemon
        self.prekey_client: PrekeyClient | None = None
        self.store = store
        self.contacts = contacts
        self.requests_policy = Requests(store, contacts, request_limits)
        #: one row per sender stream, read per envelope: nothing loaded here
        self.replay = ReplayStore(store.db, max_replay_streams)
        #: the wall clock (ms) for outbox and request lifetimes
        self.now_ms = clock_ms
        #: one attempt at a row: the channel, a stream, a mailbox (§15.14.1)
        self.direct = DirectDelivery(ctx, deposit)
        #: start a reconciliation with every linked peer (S5)
        self.reconcile_all = reconcile_all
        #: contacts whose accounts changed since the user last looked
        self.contact_changes = contact_changes
        self._wake = trio.Event()
        #: S5 notices for the inbox: (stored_ms, text), newest last, bounded
        self.notices: list[tuple[int, str]] = []
        #: S5: the sender saw events we lack; reconcile, rate-limited, and say so
        self.divergence = Divergence(ctx, contacts, reconcile_all, self.notices, clock_ms)
        #: (sender account, message id) in the account's trash: not shown
        #: and not sent as history (``services/trash.py``)
        self.hidden: Callable[[], set[tuple[bytes, bytes]]] = set
        #: seconds from a message's storing to one device's delivery (metrics)
        self.on_delivered_after: Callable[[float], None] = lambda seconds: None
        #: (peer account, its sending device) -> message ids to receipt
        self._receipts_due: dict[tuple[bytes, bytes], set[bytes]] = {}
        self._receipts_wake = trio.Event()
        self.on_stored: list[StoredListener] = []
        self.on_delivery: list[DeliveryListener] = []
        #: history entries refused because their proof did not hold (§15.4)
        self.history_refused = 0

    def _tell(self, stored: Sequence[NewMessage], deliveries: Sequence[bytes] = ()) -> None:
        """Tell the listeners after the write: a listener's failure must never
        turn a stored message into a refused one."""
        calls = [partial(f, m) for m in stored for f in self.on_stored]
        calls += [partial(g, d) for d in deliveries for g in self.on_delivery]
        for call in calls:
            try:
                call()
            except Exception:
                log.exception("a message listener failed")

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "message.send": api.MESSAGE_SEND.bind(self.send),
            "message.inbox": api.MESSAGE_INBOX.bind(self.inbox),
            "message.conversation": api.MESSAGE_CONVERSATION.bind(self.conversation),
            "message.requests": api.MESSAGE_REQUESTS.bind(self.requests),
            "message.status": api.MESSAGE_STATUS.bind(self.status),
            "requests.accept": contact_api.REQUESTS_ACCEPT.bind(self.accept_request),
            "requests.block": contact_api.REQUESTS_BLOCK.bind(self.block_request),
        }

    def wake(self) -> None:
        """Deliveries may be possible now (a record arrived, a row was added)."""
        self._wake.set()

    def record_arrived(self, record: SignedDeviceRecord) -> None:
        """A record of a contact's or our own device that advertises scheme 2
        makes it sticky at once (§15.9); then deliveries may go."""
        own = self.ctx.account()
        if record.account == own or self.contacts.is_contact(record.account):
            self.sessions.record_seen(record)
        self.wake()

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
        """Seal, and store the message with its outbox rows in one transaction."""
        me = self.ctx.device
        own = self.ctx.own_account()
        ledger = self.ctx.ledger
        if recipient not in ledger.accounts:
            raise RpcFailure(control.USAGE, "that account's log has not reached this node yet")
        my_state, their_state = ledger.state(own), ledger.state(recipient)
        if me.sign_public not in my_state.active_keys:
            raise RpcFailure(
                control.USAGE, "this device is not active in its account: it cannot send"
            )
        now = self.now_ms()
        try:
            sealed = seal_counted(
                self.ctx, self.sessions, self.store, my_state, their_state, content,
                timestamp=now, force=force, only=only,
            )  # fmt: skip
            # the sender's other devices: a copy of their own (§15.22)
            copy = None
            if isinstance(content, Text) and recipient != own:
                copy = own_copy(
                    self.ctx, self.sessions, self.store, my_state, sealed.env, content, now
                )
        except RecipientDisputedError as exc:
            raise RpcFailure(control.USAGE, f"{exc}; send anyway with --force") from exc
        except UsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        env = sealed.env
        expires = now + delivery_policy(kind).lifetime_ms
        message = NewMessage(
            message_id=env.message_id,
            peer=recipient,
            outgoing=True,
            sender_account=own,
            sender_device=me.sign_public,
            sent_ms=now,
            stored_ms=now,
            kind=kind,
            text=text,
            envelope=env.raw,
            proof=env.proof if kind == KIND_TEXT else None,
        )
        rows: list[Statement] = [
            *sealed.rows,
            self.store.insert_statement(message, ignore_duplicate=False),
        ]
        targets = [(d, recipient) for d in env.wrapped_for]
        if copy is not None:
            # delivered under the original's id, with the copy's envelope
            rows += [*copy.rows, MessageStore.copy_statement(env.message_id, copy.env.raw)]
            targets += [(d, own) for d in copy.env.wrapped_for]
        for device, account in targets:
            rows.append(MessageStore.delivery_statement(env.message_id, device, account, expires))
        self.store.db.write(rows)  # stored before it is reported as sent
        self._tell([message])
        self.wake()
        return env.message_id, len(targets)

    def queue_tokens(self, recipient: bytes, batch: TokenBatch) -> None:
        """Hand ``recipient``'s account mailbox tokens (§15.16), sealed and
        delivered like any message (raises RpcFailure if it cannot yet)."""
        self._seal_and_queue(recipient, batch, KIND_TOKENS, "")

    def queue_sync(self, batch: SyncEdits, only: list[bytes] | None) -> None:
        """Account-wide edits for this account's other active devices (or
        ``only`` those), sealed to the own account (§15.19)."""
        self._seal_and_queue(self.ctx.own_account(), batch, KIND_SYNC, "", only=only)

    async def send(self, params: api.SendParams) -> api.Sent:
        account, name = self.contacts.find(params["contact"])
        text = params["text"]
        if not text:
            raise RpcFailure(control.USAGE, "an empty message")
        if self.prekey_client is not None and account in self.ctx.ledger.accounts:
            # a one-time prekey for each device a session is set up with (§19.16)
            await self.prekey_client.prefetch(self.ctx.ledger.state(account))
        message_id, devices = self._seal_and_queue(
            account, Text(text), KIND_TEXT, text, force=params.get("force", False)
        )
        return {"message_id": message_id.hex(), "to": name, "devices": devices, "stored": True}

    def send_history(self, device: bytes) -> None:
        """History for a device this one just approved (§14.9): bundles
        within the envelope limits, wrapped for that device only, each entry
        with the proof of its sender this node kept (§15.4)."""
        for bundle in history_bundles(self.store, self.hidden()):
            self._seal_and_queue(
                self.ctx.own_account(),
                bundle,
                KIND_HISTORY,
                f"history: {len(bundle.entries)} messages",
                only=[device],
            )

    def due_now(self, in_flight: set[tuple[bytes, bytes]]) -> list[DueDelivery]:
        """Rows to try now (at most MAX_IN_FLIGHT in flight); rows past their
        lifetime or attempts end as ``expired`` here, untried (§15.14)."""
        now = self.now_ms()
        start: list[DueDelivery] = []
        expired: list[tuple[bytes, bytes]] = []
        for due in self.store.due(now, MAX_IN_FLIGHT * 2):
            key = (due.message, due.device)
            if key in in_flight:
                continue
            if now >= due.expires_ms or due.attempts >= due.policy.max_attempts:
                expired.append(key)
            elif len(in_flight) + len(start) < MAX_IN_FLIGHT:
                start.append(due)
        self.store.expire_deliveries(expired)
        return start

    async def run_delivery(self) -> None:
        """Deliver due outbox rows, up to MAX_IN_FLIGHT at once; sleep until
        the next row is due or something wakes the outbox."""
        in_flight: set[tuple[bytes, bytes]] = set()

        async def one(due: DueDelivery) -> None:
            try:
                await self._deliver_one(due)
            finally:
                in_flight.discard((due.message, due.device))
                self.wake()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.run_housekeeping)
            nursery.start_soon(self.run_receipts)
            while True:
                self._wake = trio.Event()
                for due in self.due_now(in_flight):
                    in_flight.add((due.message, due.device))
                    nursery.start_soon(one, due)
                if len(in_flight) >= MAX_IN_FLIGHT:
                    wait = float("inf")  # a finished delivery wakes the loop
                else:
                    next_ms = self.store.next_due_ms(exclude=in_flight)
                    wait = (next_ms - self.now_ms()) / 1000 if next_ms is not None else float("inf")
                with trio.move_on_after(max(wait, 0.01)):
                    await self._wake.wait()

    async def _deliver_one(self, due: DueDelivery) -> None:
        error = await self.direct.attempt(due.device, due.account, due.envelope)
        if error is not None and self.resets.superseded(due):
            return  # a reset re-sealed it meanwhile (§19.15): the new envelope goes next
        now = self.now_ms()
        code = "" if error is None else error.split(":")[0]
        if code in SESSION_LOST:
            # it cannot open our session (its prekey is gone, or so is its
            # side, or the key of this message): the next sets one up (§19.13)
            self.sessions.end_with(due.account, due.device)
            fetch = None if self.prekey_client is None else self.prekey_client.prefetch
            if await self.resets.reseal(due, code, fetch):  # this text, once more
                self._tell([], [due.message])
                return
        state, next_try = next_delivery(due, error, now)
        if state is DeliveryState.DELIVERED:
            stored_ms = due.expires_ms - due.policy.lifetime_ms
            self.on_delivered_after(max(0, now - stored_ms) / 1000)
        self.store.set_delivery(
            due.message,
            due.device,
            state=state,
            attempts=due.attempts + 1,
            next_try_ms=next_try,
            error=error,
        )
        self._tell([], [due.message])

    def housekeeping(self) -> None:
        """Drop requests that expired unaccepted, and receipts and history
        whose deliveries all ended a lifetime ago, then the sessions of
        strangers nothing is held from (bounded disk)."""
        now = self.now_ms()
        machine_before = now - delivery_policy(KIND_RECEIPT).lifetime_ms
        self.store.db.write(
            [
                *self.requests_policy.sweep_statements(now),
                *MessageStore.purge_machine_statements(machine_before),
            ]
        )
        # then the sessions of strangers whose requests are gone (§19.11)
        self.sessions.end_strangers(self.contacts.is_contact)
        # and no superseded session state left in the write-ahead log (§15.21)
        self.store.db.truncate_log()

    async def run_housekeeping(self) -> None:
        while True:
            self.housekeeping()
            await trio.sleep(HOUSEKEEPING_INTERVAL)

    # -- receiving -----------------------------------------------------------

    async def on_stream(self, stream: Stream) -> None:
        try:
            with trio.fail_after(DELIVERY_TIMEOUT):
                data = await read_frame(stream, MAX_ENVELOPE_BYTES + 64)
            try:
                error = self.admit(decode_delivery(data))
            except InvalidInput as exc:
                error = exc
            await stream.write(frame(delivery_answer(error)))
        except Exception as exc:  # the stream's end is the sender's business
            log.debug("message stream ended: %s", exc)
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    def admit(self, envelope: bytes) -> InvalidInput | None:
        """The one path of the stream and the channel (§15.14, §15.14.1):
        stored (None), or the typed refusal, after which a lagging replica
        catches up (S5)."""
        try:
            self.receive(envelope)
        except InvalidInput as exc:
            views = getattr(exc, "views", None)
            if views:  # our replica lags the sender's: catch up (S5)
                self.divergence.diverged(views)
            elif exc.code == "session_peer":  # a device we may not know yet
                self.divergence.catch_up()
            return exc
        return None

    def receive(self, envelope: bytes) -> OpenedEnvelope:
        """Open, store with the replay state, and answer (raises InvalidInput)."""
        own = self.ctx.account()
        if own is None:
            raise NotForThisDeviceError("this device belongs to no account yet")
        # The replay check reads this envelope's stream (one row) and keeps
        # the new window aside: it is written with the message, in one
        # transaction, so a failed write never turns the sender's retry into
        # a "replay" and loses the message (§15.14), and a refusal below
        # (requests_full) leaves the stream as it was.
        replay = PendingReplay(self.replay.window)
        # scheme 2: the sessions it touches are read, and the new ones kept
        # aside like the replay window, for the same transaction (§19.13)
        inputs, read = self.sessions.for_receive()
        try:
            opened = open_envelope(
                self.ctx.params, envelope, own, self.ctx.device,
                ledger_lookup(self.ctx.ledger), replay, inputs,
            )  # fmt: skip
        except (SessionNotHeldError, KeyGoneError) as exc:  # its sender may send anew (§19.15)
            self.resets.lost(exc.lost)
            raise
        content = opened.content
        outgoing = opened.sender_account == own
        peer = opened.recipient_account if outgoing else opened.sender_account
        now = self.now_ms()
        rows: list[Statement] = []
        send_receipt = False
        synced = 0
        stored: list[NewMessage] = []  # told to the listeners once durable
        receipted: Sequence[bytes] = ()
        answered = None
        if isinstance(content, Text):
            text = self._text_message(opened, content, peer, outgoing, now)
            if text is not None:
                stored.append(text)
                rows.append(self.store.insert_statement(text))
            # receipts go to contacts only, for a message stored just now
            send_receipt = bool(rows) and not outgoing and self.requests_policy.earns_receipt(peer)
        elif isinstance(content, Receipt):
            receipted = content.message_ids
            for mid in content.message_ids:
                rows.append(MessageStore.delivered_statement(mid, opened.sender_device))
        elif isinstance(content, TokenBatch):
            if not outgoing and self.tokens is not None:
                rows.extend(self.tokens.hold_statements(opened.sender_account, content))
        elif isinstance(content, SyncEdits):
            # only the account's own devices share its state; a stranger's
            # kind-32 content is authenticated, replay-checked and ignored
            if outgoing and self.sync is not None:
                sync_rows, synced = self.sync.receive_statements(content)
                rows.extend(sync_rows)
        elif isinstance(content, SentCopy):
            # another device of this account sent it (§15.22): only from our own
            if outgoing and not self.store.has_message(own, content.message_id):
                copied = copy_message(opened, content, own, now, self.ctx.ledger)
                stored.append(copied)
                rows.append(self.store.insert_statement(copied))
        elif isinstance(content, HistoryBundle):
            history = self._history_messages(opened, content, now)
            stored.extend(history)
            rows.extend(self.store.insert_statement(m) for m in history)
        elif isinstance(content, SessionReset):
            # its own session rows: the named ones end, texts are re-sealed
            answered = self.resets.answer(opened, content, read)
            rows.extend(answered.rows)
        new = len(replay.new & replay.changes.keys())
        replay_rows, touched = self.replay.statements(replay.changes, new)
        prekeys = self.sessions.prekeys.store  # put back if the write fails (§19.8)
        # a stranger's set-up is kept only with a text the request caps let in:
        # else any fresh device could store sessions here for free (§19.11); a
        # reset's own session rows came with its answer
        sid = opened.session_id
        set_up = sid is not None and all(sid not in b.entries for b in read)
        keep = stored or outgoing or self.contacts.is_contact(peer) or not set_up
        if answered is None and keep:
            rows += self.sessions.received(opened, read)
        try:  # the message, its stream's window and its session, together, before ACCEPTED
            self.store.db.write(replay_rows + rows)
        except BaseException:
            self.sessions.prekeys.commit(prekeys)  # unspent: the sender's retry can open
            raise
        self.replay.written(new, touched)
        self._tell(stored, receipted)
        if answered is not None:  # one notice per reset: its envelope is replay-checked
            self.resets.answered += 1
            self.notices.append((now, answered.notice))
            del self.notices[:-MAX_NOTICES]
            self.wake()
        if synced and self.sync is not None:
            self.sync.changed()
        if opened.diverged:
            self.divergence.diverged(opened.views)
        if send_receipt and self.tokens is not None:
            self.tokens.message_from(peer)  # it may have spent one of our tokens
        if send_receipt:
            self.receipt_due(peer, opened.sender_device, [opened.message_id])
        return opened

    def _history_messages(
        self, opened: OpenedEnvelope, bundle: HistoryBundle, now: int
    ) -> list[NewMessage]:
        """A bundle's texts as ``history.received`` judges them; forged
        entries are counted and the user told (raises ``HistoryBehindError``)."""
        own = opened.recipient_account
        out, forged = received_history(self.ctx.ledger, own, opened.sender_device, bundle, now)
        if forged:
            self.history_refused += forged
            relayer = self._device_name(own, opened.sender_device)
            log.warning("refused %d forged history entries from %s", forged, relayer)
            self.notices.append(
                (
                    now,
                    f"your device {relayer} sent history with {forged} message(s) whose "
                    "senders did not sign them as claimed; they were not stored (if you do "
                    "not trust that device, revoke it)",
                )
            )
            del self.notices[:-MAX_NOTICES]
        return out

    def _text_message(
        self, opened: OpenedEnvelope, content: Text, peer: bytes, outgoing: bool, now: int
    ) -> NewMessage | None:
        """The text to store: None for a blocked sender or for a copy
        already stored (a replay that an evicted stream let through, §15.6);
        a request within its caps, or ``RequestsFullError``."""
        if self.contacts.is_blocked(peer) or self.store.has_message(
            opened.sender_account, opened.message_id
        ):
            return None
        message = NewMessage(
            message_id=opened.message_id,
            peer=peer,
            outgoing=outgoing,
            sender_account=opened.sender_account,
            sender_device=opened.sender_device,
            sent_ms=opened.timestamp,
            stored_ms=now,
            kind=KIND_TEXT,
            text=content.text,
            proof=opened.proof,
            request=not outgoing and self.requests_policy.is_request(peer),
        )
        if message.request:
            self.requests_policy.admit(peer, message.size, now)
        return message

    def receipt_due(self, peer: bytes, device: bytes, message_ids: Sequence[bytes]) -> None:
        """A DELIVERED receipt is owed to the device of ``peer`` (a contact)
        that sent ``message_ids``; it goes out with the others owed to that
        device within ``RECEIPT_WINDOW_SECONDS`` (``flush_receipts``)."""
        self._receipts_due.setdefault((peer, device), set()).update(message_ids)
        self._receipts_wake.set()

    def flush_receipts(self) -> None:
        """One receipt envelope per sending device, wrapped for that device
        only (§15.14), in as few envelopes as the receipt limit allows."""
        due, self._receipts_due = self._receipts_due, {}
        for (peer, device), message_ids in sorted(due.items()):
            ids = sorted(message_ids)
            for i in range(0, len(ids), MAX_RECEIPT_IDS):
                receipt = Receipt(ReceiptStatus.DELIVERED, tuple(ids[i : i + MAX_RECEIPT_IDS]))
                try:
                    self._seal_and_queue(peer, receipt, KIND_RECEIPT, "", only=[device])
                except RpcFailure as exc:  # its log is not here, or a device no longer active
                    log.info("no receipt sent: %s", exc)
                    break

    async def run_receipts(self) -> None:
        while True:
            await self._receipts_wake.wait()
            self._receipts_wake = trio.Event()
            await trio.sleep(RECEIPT_WINDOW_SECONDS)
            self.flush_receipts()

    # -- reading -------------------------------------------------------------

    def _device_name(self, account: bytes, device: bytes) -> str:
        ledger = self.ctx.ledger
        if account in ledger.accounts:
            d = ledger.state(account).device(device)
            if d is not None:
                return sanitise(d.name)
        return device.hex()[:12]

    def _doc(self, m: MessageRow) -> api.MessageDoc:
        doc: api.MessageDoc = {
            "message_id": m.message_id.hex(),
            "conversation": self.contacts.label(m.peer),
            "conversation_account": m.peer.hex(),
            "outgoing": m.outgoing,
            "from": self.contacts.label(m.sender_account) if not m.outgoing else "me",
            "from_device": self._device_name(m.sender_account, m.sender_device),
            "sent_ms": m.sent_ms,
            "stored_ms": m.stored_ms,
            "text": sanitise(m.text, max_chars=65536),
            "request": m.request,
            # an unproven history entry: whose claim it is, not whose message
            "relayed_by": (
                None
                if m.relayed_by is None
                else self._device_name(self.ctx.own_account(), m.relayed_by)
            ),
        }
        if m.outgoing:
            doc["deliveries"] = self.store.delivery_counts(m.message_id)
        return doc

    async def inbox(self, params: api.InboxParams) -> api.Inbox:
        since = params.get("since_ms") or 0
        return {
            "notices": [{"stored_ms": t, "text": x} for t, x in self.notices if t > since],
            "messages": self._docs(self.store.inbox(KIND_TEXT, since)),
            "contact_changes": [
                {"contact": c["name"], "changes": c["changes"]}
                for c in self.contact_changes()
                if c["changes"]
            ],
            "requests": self.store.request_senders(self.requests_policy.since(self.now_ms())),
        }

    async def conversation(self, params: api.ConversationParams) -> api.Conversation:
        account, name = self.contacts.find(params["contact"])
        rows = self.store.conversation(account, KIND_TEXT)
        return {"contact": name, "account": account.hex(), "messages": self._docs(rows)}

    def _docs(self, rows: list[MessageRow]) -> list[api.MessageDoc]:
        hidden = self.hidden()
        return [self._doc(r) for r in rows if (r.sender_account, r.message_id) not in hidden]

    async def status(self, params: api.StatusParams) -> api.Deliveries:
        """Per message id: how many of its deliveries are in each state."""
        return {
            "deliveries": {
                mid: self.store.delivery_counts(bytes.fromhex(mid)) for mid in params["ids"]
            }
        }

    async def requests(self, params: Empty) -> api.Requests:
        since = self.requests_policy.since(self.now_ms())
        return {"requests": [self._doc(r) for r in self.store.requests(since)]}

    async def accept_request(self, params: contact_api.AcceptParams) -> contact_api.Added:
        account = self.ctx.resolve_account(params["account"])
        if account == self.ctx.own_account():
            raise RpcFailure(control.USAGE, "that is your own account")
        hint = self.contacts.display_name(account) or ""
        label = params.get("name") or hint or account.hex()[:12]
        # Read the waiting messages first: adding the contact applies the
        # decision at once (decisions_changed), which clears them as requests.
        waiting = self.store.request_ids_by_device(account)
        self.contacts.add(account, label)
        # The waiting messages are the user's now, and their senders learn
        # it only now: the receipts held back from a stranger go out (§15.14).
        self.store.db.write([MessageStore.accept_requests_statement(account)])
        for device, ids in waiting.items():
            self.receipt_due(account, device, ids)
        self.flush_receipts()  # the user is waiting on this one: no window
        return {
            "account_id": account.hex(),
            "name": label,
            "synced": account in self.ctx.ledger.accounts,
            "handle": handle(self.contacts.display_name(account) or label, account),
        }

    def decisions_changed(self) -> None:
        """Another device of this account accepted or blocked someone (the
        synced contact set changed, §15.19): this device's requests from
        that account follow the decision.  Receipts are the deciding
        device's to send."""
        rows: list[Statement] = []
        for peer in self.store.request_peers():
            if self.contacts.is_blocked(peer):
                rows.append(MessageStore.delete_requests_statement(peer))
            elif self.contacts.is_contact(peer):
                rows.append(MessageStore.accept_requests_statement(peer))
        if rows:
            self.store.db.write(rows)

    async def block_request(
        self, params: contact_api.RequestBlockParams
    ) -> contact_api.RequestBlocked:
        account = self.ctx.resolve_account(params["account"])
        # the block is the account's (synced); the requests are this device's
        self.contacts.block(account)
        self.store.db.write([MessageStore.delete_requests_statement(account)])
        return {"blocked": account.hex()}
