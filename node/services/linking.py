"""Device linking on a running node (issue: Accounts and devices).

The adapter for ``protocol.linking``: libp2p streams ``/smu/link/1`` with
the same length-prefixed framing as replication (transport.py), the
control-API methods behind ``smu device link|pending|approve|reject|join``,
and nothing else: every decision is the machines'.  When a machine refuses,
the adapter writes ``error_frame(exc)`` and closes the stream.

Approving publishes the add-device event through the daemon (stored, then
gossiped) before the APPROVED frame is sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from protocol.core.errors import InvalidInput, UsageError
from protocol.linking.machines import (
    APPROVER_BOUND_MAX_BYTES,
    ApprovalRequested,
    Approver,
    ConfirmRequired,
    JoinAborted,
    Joined,
    Joiner,
    LinkCompleted,
    LinkOffer,
    Step,
    UnknownLinkError,
    error_frame,
    joiner_bound_max_bytes,
    link_id_of,
)

from .. import control
from ..context import NodeContext
from ..control import RpcFailure
from ..transport import frame, read_frame

log = logging.getLogger("smu.link")
LINK_PROTOCOL = "/smu/link/1"
ANSWER_TIMEOUT = 30.0
APPROVAL_TIMEOUT = 6 * 60.0
KEEP_FINISHED_MS = 3600 * 1000
MAX_OFFERS = 64


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class OfferSlot:
    approver: Approver
    stream: Any = None
    remote: str | None = None
    pending: bool = False
    completed: LinkCompleted | None = None
    finished: trio.Event = field(default_factory=trio.Event)


@dataclass
class JoinSession:
    joiner: Joiner
    stream: Any


async def _write(stream: Any, step: Step) -> None:
    for data in step.frames:
        await stream.write(frame(data))


async def _refuse(stream: Any, exc: InvalidInput) -> None:
    with contextlib.suppress(Exception):
        await stream.write(frame(error_frame(exc)))
    with contextlib.suppress(Exception):
        await stream.close()


def _account_doc(info: Any) -> dict[str, Any]:
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
        self.offers: dict[bytes, OfferSlot] = {}
        self.joins: dict[str, JoinSession] = {}

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "device.link": self.link,
            "device.pending": self.pending,
            "device.approve": self.approve,
            "device.reject": self.reject,
            "device.join": self.join,
            "device.join_confirm": self.join_confirm,
        }

    # -- approver side ------------------------------------------------------

    async def _expire(self) -> None:
        """Expire offers past their deadline; tell a waiting joiner why."""
        now = _now_ms()
        for link_id, slot in list(self.offers.items()):
            step = slot.approver.tick(now)
            if step.frames and slot.stream is not None:
                with contextlib.suppress(Exception):
                    await _write(slot.stream, step)
                    await slot.stream.close()
            # Finished offers stay an hour, so that a late joiner hears why
            # (expired, used, burnt) rather than "no such link".
            if slot.stream is None and now > slot.approver.offer.expires_at_ms + KEEP_FINISHED_MS:
                del self.offers[link_id]

    async def run_timers(self) -> None:
        """Wake at each offer's deadline (``Approver.deadline_ms``)."""
        while True:
            deadlines = [s.approver.deadline_ms for s in self.offers.values()]
            soonest = min((d for d in deadlines if d is not None), default=None)
            wait = 1.0 if soonest is None else max(0.0, min(1.0, (soonest - _now_ms()) / 1000))
            await trio.sleep(wait)
            await self._expire()

    async def link(self, params: dict[str, Any]) -> dict[str, Any]:
        account = self.ctx.own_account()
        state = self.ctx.ledger.state(account)
        if self.ctx.device.sign_public not in state.active_keys:
            raise RpcFailure(
                control.USAGE, "this device is not active in its account: it cannot link devices"
            )
        await self._expire()
        if len(self.offers) >= MAX_OFFERS:
            raise RpcFailure(
                control.USAGE, f"{MAX_OFFERS} link offers are open: wait for them to expire"
            )
        addrs = [a.split("/p2p/")[0] for a in self.ctx.addresses()][:4]
        ttl_ms = min(int(params.get("ttl_seconds") or 600), 600) * 1000
        ap = Approver(
            self.ctx.params,
            account,
            peer_id=self.ctx.peer_id,
            addrs=addrs,
            link_id=os.urandom(8),
            secret=os.urandom(16),
            now_ms=_now_ms(),
            ttl_ms=max(ttl_ms, 1000),
        )
        self.offers[ap.offer.link_id] = OfferSlot(ap)
        return {
            "id": ap.offer.link_id.hex(),
            "link": ap.offer.to_text(),
            "uri": ap.offer.to_uri(),
            "expires_at_ms": ap.offer.expires_at_ms,
        }

    async def on_stream(self, stream: Any) -> None:
        """A joiner dialled us: route its first frame to the offer it names."""
        remote = stream.muxed_conn.peer_id.to_base58()
        try:
            with trio.fail_after(ANSWER_TIMEOUT):
                data = await read_frame(stream, APPROVER_BOUND_MAX_BYTES)
            link_id = link_id_of(data, self.ctx.params)
        except InvalidInput as exc:
            await _refuse(stream, exc)
            return
        except Exception:
            with contextlib.suppress(Exception):
                await stream.close()
            return
        slot = self.offers.get(link_id)
        if slot is None:
            await _refuse(stream, UnknownLinkError())
            return
        await self._serve(slot, stream, remote, data)

    async def _serve(self, slot: OfferSlot, stream: Any, remote: str, first: bytes) -> None:
        ap = slot.approver
        data: bytes | None = first
        try:
            while data is not None:
                try:
                    step = ap.receive(
                        data, remote_peer=remote, now_ms=_now_ms(), ledger=self.ctx.ledger
                    )
                except InvalidInput as exc:
                    log.info("link %s refused %s: %s", ap.offer.link_id.hex(), remote, exc.code)
                    await _refuse(stream, exc)
                    return
                if (
                    slot.stream is None
                    and ap.request is not None
                    and ap.request.joiner_peer == remote
                ):
                    slot.stream, slot.remote = stream, remote
                try:
                    await _write(stream, step)
                except Exception:  # the joiner went away: its stream is gone
                    return
                for event in step.events:
                    if isinstance(event, ApprovalRequested):
                        slot.pending = True
                    elif isinstance(event, JoinAborted):
                        slot.pending = False
                    elif isinstance(event, LinkCompleted):
                        slot.completed = event
                        # History follows only now that the add-device event is in the
                        # log (DESIGN §9), encrypted to the approved key.
                        with contextlib.suppress(RpcFailure):
                            self.on_linked(event.sign_public)
                        slot.finished.set()
                        return
                try:
                    data = await read_frame(stream, APPROVER_BOUND_MAX_BYTES)
                except Exception:
                    data = None
        finally:
            if slot.stream is stream:
                with contextlib.suppress(Exception):
                    ap.connection_lost(remote)
                slot.stream = None
                slot.pending = False
                slot.finished.set()

    def _slot(self, ref: str) -> OfferSlot:
        matches = [s for k, s in self.offers.items() if k.hex().startswith(ref.lower())]
        if len(matches) != 1:
            raise RpcFailure(
                control.USAGE, f"no single pending request {ref!r}: see `smu device pending`"
            )
        return matches[0]

    async def pending(self, params: dict[str, Any]) -> dict[str, Any]:
        await self._expire()
        out = []
        for link_id, slot in self.offers.items():
            req = slot.approver.request
            out.append(
                {
                    "id": link_id.hex(),
                    "state": slot.approver.state.value,
                    "awaiting_approval": slot.pending,
                    "device_name": req.device_name if req else None,
                    "fingerprint": req.fingerprint if req else None,
                    "code": req.code if req else None,
                }
            )
        return {"requests": out}

    async def approve(self, params: dict[str, Any]) -> dict[str, Any]:
        slot = self._slot(str(params["id"]))
        if not slot.pending or slot.stream is None:
            raise RpcFailure(
                control.USAGE,
                "that request is not waiting for approval "
                "(the new device has not confirmed, or it went away)",
            )
        try:
            approval = slot.approver.approve(
                self.ctx.device, self.ctx.ledger, timestamp_ms=_now_ms(), now_ms=_now_ms()
            )
        except (InvalidInput, UsageError) as exc:
            raise RpcFailure(control.USAGE, f"cannot approve: {exc}") from exc
        published = await self.ctx.publish(approval.event.raw)  # stored before it is sent
        await _write(slot.stream, approval.step)
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

    async def reject(self, params: dict[str, Any]) -> dict[str, Any]:
        slot = self._slot(str(params["id"]))
        try:
            step = slot.approver.reject(_now_ms())
        except (InvalidInput, UsageError) as exc:
            raise RpcFailure(control.USAGE, f"cannot reject: {exc}") from exc
        if slot.stream is not None:
            with contextlib.suppress(Exception):
                await _write(slot.stream, step)
                await slot.stream.close()
        return {"rejected": True}

    # -- joiner side --------------------------------------------------------

    async def join(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.ctx.account() is not None:
            raise RpcFailure(control.USAGE, "this device already belongs to an account")
        try:
            offer = LinkOffer.parse(str(params["link"]))
        except InvalidInput as exc:
            raise RpcFailure(control.USAGE, f"link: {exc}") from exc
        name = str(params.get("name") or self.ctx.device_name)
        try:
            joiner = Joiner(
                self.ctx.params,
                offer,
                self.ctx.device,
                name,
                own_peer=self.ctx.peer_id,
                remote_peer=offer.peer_id,
                now_ms=_now_ms(),
            )
        except (InvalidInput, UsageError) as exc:
            raise RpcFailure(control.USAGE, f"link: {exc}") from exc
        try:
            with trio.fail_after(ANSWER_TIMEOUT):
                stream = await self.ctx.open_stream(offer.peer_id, offer.addrs, LINK_PROTOCOL)
        except Exception as exc:
            raise RpcFailure(control.USAGE, f"cannot reach the other device: {exc}") from exc
        try:
            await _write(stream, joiner.start())
            with trio.fail_after(ANSWER_TIMEOUT):
                data = await read_frame(stream, joiner_bound_max_bytes(self.ctx.params))
            step = joiner.receive(data)
        except InvalidInput as exc:
            with contextlib.suppress(Exception):
                await stream.close()
            raise RpcFailure(control.USAGE, f"link refused: {exc}") from exc
        except Exception as exc:
            with contextlib.suppress(Exception):
                await stream.close()
            raise RpcFailure(control.USAGE, f"the other device did not answer: {exc}") from exc
        (confirm,) = [e for e in step.events if isinstance(e, ConfirmRequired)]
        join_id = offer.link_id.hex()
        self.joins[join_id] = JoinSession(joiner, stream)
        return {
            "join_id": join_id,
            "code": confirm.code,
            "account": _account_doc(confirm.account),
            "device_name": name,
        }

    async def join_confirm(self, params: dict[str, Any]) -> dict[str, Any]:
        session = self.joins.pop(str(params["join_id"]), None)
        if session is None:
            raise RpcFailure(control.USAGE, "no such join in progress")
        stream, joiner = session.stream, session.joiner
        try:
            if not params.get("accept"):
                await _write(stream, joiner.decline())
                return {"joined": False}
            await _write(stream, joiner.confirm())
            with trio.fail_after(APPROVAL_TIMEOUT):
                data = await read_frame(stream, joiner_bound_max_bytes(self.ctx.params))
            step = joiner.receive(data)
            (joined,) = [e for e in step.events if isinstance(e, Joined)]
            # Stored and recorded before the approver hears DONE, so a crash
            # here never leaves it believing a join that did not happen.
            for raw in joined.events:  # parents first; each stored, then gossiped
                await self.ctx.publish(raw)
            self.ctx.set_account(joined.account.account_id)
            await _write(stream, step)
        except InvalidInput as exc:
            raise RpcFailure(control.USAGE, f"not joined: {exc}") from exc
        except trio.TooSlowError as exc:
            raise RpcFailure(control.USAGE, "not joined: nobody approved in time") from exc
        except Exception as exc:
            if self.ctx.account() is not None:  # joined; only the DONE frame was lost
                self.ctx.publish_own_record()
                return {
                    "joined": True,
                    "account": _account_doc(joined.account),
                    "add_device_event": joined.add_device_id.hex(),
                }
            raise RpcFailure(control.USAGE, f"not joined: the link broke ({exc})") from exc
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
        self.ctx.publish_own_record()
        return {
            "joined": True,
            "account": _account_doc(joined.account),
            "add_device_event": joined.add_device_id.hex(),
        }
