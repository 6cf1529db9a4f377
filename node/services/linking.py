"""Device linking on a running node: ``device.link``, ``device.pending``,
``device.approve``, ``device.reject``, ``device.join`` and
``device.join_confirm``, and the ``/smu/link/1`` stream (PROTOCOL.md §14).

Every decision is the machines': ``protocol.linking.offers.Offers`` holds
this node's open offers (one ``Approver`` each) and a ``Joiner`` runs each
attempt to join another device's account.  Both run under the machine
driver, which arms their timers (offer expiry, the joiner's timeouts); this
adapter only carries out their outputs: ``Send`` frames go to the stream of
the peer they name, ``Hangup`` closes it.

Approving publishes the add-device event (committed, then gossiped) before
the APPROVED frame is sent; a joiner publishes the account's events and
records its account before it sends DONE.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from protocol.core.errors import InvalidInput, UsageError
from protocol.core.machine import Hangup, Misbehaved, Now, Send
from protocol.linking.machines import (
    APPROVER_BOUND_MAX_BYTES,
    AccountInfo,
    ApprovalRequested,
    Approver,
    ConfirmRequired,
    JoinAborted,
    Joined,
    Joiner,
    JoinFailed,
    JoinRequested,
    LinkCompleted,
    LinkOffer,
    LinkOutput,
    joiner_bound_max_bytes,
)
from protocol.linking.offers import OfferForgotten, OfferOutput, Offers
from protocol.linking.wire import PROTOCOL_ID

from .. import control
from ..api import account as api
from ..api.schema import Empty
from ..context import NodeContext
from ..control import RpcFailure
from ..driver import MachineDriver
from ..errors import PeerUnreachable
from ..gate import remote_peer
from ..streams import StreamPort
from ..tasks import TaskStatus

log = logging.getLogger("smu.link")
LINK_PROTOCOL = PROTOCOL_ID
#: how long ``device.approve`` waits for the new device's DONE
ANSWER_TIMEOUT = 30.0
#: how long a joiner's first frame may take to arrive
FIRST_FRAME_TIMEOUT = 30.0


@dataclass
class OfferSlot:
    """What the adapter keeps beside one offer: the streams open for it
    (one per joiner peer), whether approval is awaited, and completion."""

    approver: Approver
    ports: dict[str, StreamPort] = field(default_factory=dict)
    #: the joiner that claimed the offer
    claimed_by: str | None = None
    pending: bool = False
    completed: LinkCompleted | None = None
    finished: trio.Event = field(default_factory=trio.Event)


class JoinSession:
    """One attempt of this device to join an account, on one stream."""

    def __init__(self, joiner: Joiner, port: StreamPort) -> None:
        self.joiner = joiner
        self.port = port
        self.driver = MachineDriver("joiner", joiner, self._carry_out)
        self.events_send, self.events = trio.open_memory_channel[LinkOutput | None](16)
        #: outputs that follow ``Joined``: sent once the account is stored
        self.after_join: list[LinkOutput] = []

    def _carry_out(self, outputs: Sequence[LinkOutput]) -> None:
        held = False
        for out in outputs:
            if held:
                self.after_join.append(out)
            elif isinstance(out, Send):
                self.port.send(out.frame)
            elif isinstance(out, Hangup):
                self.port.hangup()
            elif isinstance(out, Misbehaved):
                log.info("link: the other device sent %s", out.error.code)
            else:
                if isinstance(out, Joined):
                    held = True  # DONE waits until the account is stored
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    self.events_send.send_nowait(out)

    async def run(self, max_bytes: int) -> None:
        """Read the approver's frames into the joiner until the stream ends."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.port.run)
            await nursery.start(self.driver.run)
            while True:
                data = await self.port.read(max_bytes)
                if data is None:
                    break
                self.driver.call(partial(self._receive, data))
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                self.events_send.send_nowait(None)  # the stream ended
            self.port.hangup()
            nursery.cancel_scope.cancel()

    def _receive(self, data: bytes, now: Now) -> list[LinkOutput]:
        return self.joiner.receive(data, now)

    async def next_event(self) -> LinkOutput | None:
        """The next event the joiner reports, or None once the stream ended."""
        return await self.events.receive()


def _account_doc(info: AccountInfo) -> api.LinkedAccount:
    return {
        "account_id": info.account_id.hex(),
        "handle": info.handle,
        "display_name": info.display_name,
        "status": info.status.value,
        "devices": [{"name": d.name, "fingerprint": d.fingerprint} for d in info.devices],
    }


class LinkService:
    def __init__(self, ctx: NodeContext, on_linked: Callable[[bytes], None]) -> None:
        self.ctx = ctx
        #: a device this one approved has its account: send it the history
        self.on_linked = on_linked
        self.offers = Offers(ctx.params)
        self.driver = MachineDriver("offers", self.offers, self._carry_out)
        self.slots: dict[bytes, OfferSlot] = {}
        self.joins: dict[str, JoinSession] = {}
        self._nursery: trio.Nursery | None = None

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "device.link": api.DEVICE_LINK.bind(self.link),
            "device.pending": api.DEVICE_PENDING.bind(self.pending),
            "device.approve": api.DEVICE_APPROVE.bind(self.approve),
            "device.reject": api.DEVICE_REJECT.bind(self.reject),
            "device.join": api.DEVICE_JOIN.bind(self.join),
            "device.join_confirm": api.DEVICE_JOIN_CONFIRM.bind(self.join_confirm),
        }

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.driver.run)
            task_status.started()

    # -- carrying out what the approvers decide -------------------------------

    def _carry_out(self, outputs: Sequence[OfferOutput | OfferForgotten]) -> None:
        for item in outputs:
            if isinstance(item, OfferForgotten):
                self.slots.pop(item.link_id, None)
                continue
            slot = self.slots.get(item.link_id)
            if slot is None:
                continue
            out = item.output
            if isinstance(out, Send):
                port = slot.ports.get(out.peer)
                if port is not None:
                    port.send(out.frame)
            elif isinstance(out, Hangup):
                port = slot.ports.get(out.peer)
                if port is not None:
                    port.hangup()
            elif isinstance(out, Misbehaved):
                # a refused link attempt is logged, never scored (§14.7)
                log.info("link %s refused %s: %s", item.link_id.hex(), out.peer, out.error.code)
            elif isinstance(out, JoinRequested):
                slot.claimed_by = out.request.joiner_peer
            elif isinstance(out, ApprovalRequested):
                slot.pending = True
            elif isinstance(out, JoinAborted):
                slot.pending = False
            elif isinstance(out, LinkCompleted):
                slot.completed = out
                slot.finished.set()
                # History follows only now that the add-device event is in
                # the log (DESIGN §9), encrypted to the approved key.
                self.on_linked(out.sign_public)

    def _offer_call(self, link_id: bytes, call: Callable[[Now], Sequence[LinkOutput]]) -> None:
        """Run one approver entry point through the driver, its outputs
        tagged with the offer they belong to."""
        self.driver.call(lambda now: [OfferOutput(link_id, o) for o in call(now)])

    # -- approver side --------------------------------------------------------

    async def link(self, params: api.LinkParams) -> api.LinkOffer:
        account = self.ctx.own_account()
        state = self.ctx.ledger.state(account)
        if self.ctx.device.sign_public not in state.active_keys:
            raise RpcFailure(
                control.USAGE, "this device is not active in its account: it cannot link devices"
            )
        addrs = [a.split("/p2p/")[0] for a in self.ctx.addresses()][:4]
        ttl_ms = min(params.get("ttl_seconds") or 600, 600) * 1000
        made: list[Approver] = []

        def create(now: Now) -> list[OfferOutput | OfferForgotten]:
            made.append(
                self.offers.create(
                    account,
                    peer_id=self.ctx.peer_id,
                    addrs=addrs,
                    link_id=os.urandom(8),
                    secret=os.urandom(16),
                    now=now,
                    ttl_ms=max(ttl_ms, 1000),
                )
            )
            return []

        try:
            self.driver.call(create)
        except UsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        ap = made[0]
        self.slots[ap.offer.link_id] = OfferSlot(ap)
        return {
            "id": ap.offer.link_id.hex(),
            "link": ap.offer.to_text(),
            "uri": ap.offer.to_uri(),
            "expires_at_ms": ap.offer.expires_at_ms,
        }

    async def on_stream(self, stream: Any) -> None:
        """A joiner dialled us: route its first frame to the offer it names,
        then feed that offer every frame until the stream ends."""
        remote = remote_peer(stream)
        port = StreamPort(stream, remote)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(port.run)
            with trio.move_on_after(FIRST_FRAME_TIMEOUT):
                first = await port.read(APPROVER_BOUND_MAX_BYTES)
            if first is None:  # nothing in time, or broken framing
                port.hangup()
                return
            routed = self.offers.route(first, remote, self.driver.clock())
            if isinstance(routed, list):  # malformed, or no such offer
                for out in routed:
                    if isinstance(out, Send):
                        port.send(out.frame)
                port.hangup()
                return
            link_id = routed.offer.link_id
            slot = self.slots.setdefault(link_id, OfferSlot(routed))
            slot.ports[remote] = port
            try:
                data: bytes | None = first
                while data is not None and not port.closed.is_set():
                    self._offer_call(link_id, partial(self._approver_receive, routed, data, remote))
                    data = await port.read(APPROVER_BOUND_MAX_BYTES)
            finally:
                if slot.ports.get(remote) is port:
                    del slot.ports[remote]
                if slot.claimed_by == remote:
                    self._offer_call(link_id, lambda now: routed.connection_lost(remote, now))
                    slot.pending = False
                    slot.finished.set()
                port.hangup()

    def _approver_receive(
        self, ap: Approver, data: bytes, remote: str, now: Now
    ) -> list[LinkOutput]:
        return ap.receive(data, remote_peer=remote, now=now, ledger=self.ctx.ledger)

    def _slot(self, ref: str) -> OfferSlot:
        ap = self.offers.find(ref)
        slot = None if ap is None else self.slots.get(ap.offer.link_id)
        if slot is None:
            raise RpcFailure(
                control.USAGE, f"no single pending request {ref!r}: see `smu device pending`"
            )
        return slot

    async def pending(self, params: Empty) -> api.Pending:
        out: list[api.PendingRequest] = []
        for ap in self.offers:
            slot = self.slots.get(ap.offer.link_id)
            req = ap.request
            out.append(
                {
                    "id": ap.offer.link_id.hex(),
                    "state": ap.state.value,
                    "awaiting_approval": slot is not None and slot.pending,
                    "device_name": req.device_name if req else None,
                    "fingerprint": req.fingerprint if req else None,
                    "code": req.code if req else None,
                }
            )
        return {"requests": out}

    async def approve(self, params: api.RequestRef) -> api.Approved:
        slot = self._slot(params["id"])
        if not slot.pending or slot.claimed_by not in slot.ports:
            raise RpcFailure(
                control.USAGE,
                "that request is not waiting for approval "
                "(the new device has not confirmed, or it went away)",
            )
        now = self.driver.clock()
        try:
            approval = slot.approver.approve(
                self.ctx.device, self.ctx.ledger, timestamp_ms=now.wall_ms, now=now
            )
        except (InvalidInput, UsageError) as exc:
            raise RpcFailure(control.USAGE, f"cannot approve: {exc}") from exc
        published = await self.ctx.publish(approval.event.raw)  # committed before it is sent
        self._offer_call(slot.approver.offer.link_id, lambda now: list(approval.outputs))
        with trio.move_on_after(ANSWER_TIMEOUT):
            await slot.finished.wait()
        req = slot.approver.request
        assert req is not None
        return {
            "event_id": published.event_id,
            "status": published.status,
            "device_name": req.device_name,
            "fingerprint": req.fingerprint,
            "completed": slot.completed is not None,
        }

    async def reject(self, params: api.RequestRef) -> api.Rejected:
        slot = self._slot(params["id"])
        ap = slot.approver
        try:
            self._offer_call(ap.offer.link_id, ap.reject)
        except (InvalidInput, UsageError) as exc:
            raise RpcFailure(control.USAGE, f"cannot reject: {exc}") from exc
        return {"rejected": True}

    # -- joiner side ----------------------------------------------------------

    async def join(self, params: api.JoinParams) -> api.Joining:
        if self.ctx.account() is not None:
            raise RpcFailure(control.USAGE, "this device already belongs to an account")
        try:
            offer = LinkOffer.parse(params["link"])
        except InvalidInput as exc:
            raise RpcFailure(control.USAGE, f"link: {exc}") from exc
        name = params.get("name") or self.ctx.device_name
        try:
            joiner = Joiner(
                self.ctx.params,
                offer,
                self.ctx.device,
                name,
                own_peer=self.ctx.peer_id,
                remote_peer=offer.peer_id,
                now=self.driver.clock(),
            )
        except (InvalidInput, UsageError) as exc:
            raise RpcFailure(control.USAGE, f"link: {exc}") from exc
        try:
            with trio.fail_after(FIRST_FRAME_TIMEOUT):
                stream = await self.ctx.open_stream(offer.peer_id, offer.addrs, LINK_PROTOCOL)
        except (PeerUnreachable, trio.TooSlowError) as exc:
            raise RpcFailure(control.USAGE, f"cannot reach the other device: {exc}") from exc
        session = JoinSession(joiner, StreamPort(stream, offer.peer_id))
        assert self._nursery is not None
        self._nursery.start_soon(session.run, joiner_bound_max_bytes(self.ctx.params))
        session.driver.call(joiner.start)
        event = await session.next_event()  # the joiner's own timer bounds the wait
        if isinstance(event, JoinFailed):
            raise RpcFailure(control.USAGE, f"link refused: {event.error}")
        if not isinstance(event, ConfirmRequired):
            session.port.hangup()
            raise RpcFailure(control.USAGE, "the other device did not answer")
        join_id = offer.link_id.hex()
        self.joins[join_id] = session
        return {
            "join_id": join_id,
            "code": event.code,
            "account": _account_doc(event.account),
            "device_name": name,
        }

    async def join_confirm(self, params: api.JoinConfirmParams) -> api.Joined:
        session = self.joins.pop(params["join_id"], None)
        if session is None:
            raise RpcFailure(control.USAGE, "no such join in progress")
        joiner = session.joiner
        if not params.get("accept"):
            session.driver.call(joiner.decline)
            return {"joined": False}
        session.driver.call(joiner.confirm)
        event = await session.next_event()  # bounded by the joiner's approval timeout
        if isinstance(event, JoinFailed):
            raise RpcFailure(control.USAGE, f"not joined: {event.error}")
        if not isinstance(event, Joined):
            raise RpcFailure(control.USAGE, "not joined: the link broke")
        # Stored and recorded before the approver hears DONE, so a crash here
        # never leaves it believing a join that did not happen.
        for raw in event.events:  # parents first; each committed, then gossiped
            await self.ctx.publish(raw)
        self.ctx.set_account(event.account.account_id)
        session.driver.execute(session.after_join)  # DONE, then hang up
        self.ctx.publish_own_record()
        return {
            "joined": True,
            "account": _account_doc(event.account),
            "add_device_event": event.add_device_id.hex(),
        }
