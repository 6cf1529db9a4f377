"""Device linking on a running node (issue: Accounts and devices).

The adapter for ``protocol.linking``: libp2p streams ``/smu/link/1`` with
the same length-prefixed framing as replication (transport.py), the
control-API methods behind ``smu device link|pending|approve|reject|join``,
and nothing else: every decision is the machines'.  The adapter carries out
their outputs: it writes each ``Send`` frame to the stream and closes the
stream on ``Hangup`` (a refusal is ``Send`` of the ERROR frame, then
``Hangup``).  ``Offers`` holds the open offers and routes new streams.

Approving publishes the add-device event through the daemon (stored, then
gossiped) before the APPROVED frame is sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from protocol.core.errors import InvalidInput, UsageError
from protocol.core.machine import Hangup, Misbehaved, Send
from protocol.linking.machines import (
    APPROVER_BOUND_MAX_BYTES,
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
from protocol.linking.offers import OfferForgotten, Offers

from . import control
from .clock import clock_now
from .control import RpcFailure
from .transport import frame, parse_multiaddr, read_frame

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("smu.link")
LINK_PROTOCOL = TProtocol("/smu/link/1")
ANSWER_TIMEOUT = 30.0
APPROVAL_TIMEOUT = 6 * 60.0


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


async def _write(stream: Any, outputs: Sequence[LinkOutput]) -> None:
    """Write the ``Send`` frames (the caller closes the stream)."""
    for out in outputs:
        if isinstance(out, Send):
            await stream.write(frame(out.frame))


async def _perform(stream: Any, outputs: Sequence[LinkOutput]) -> None:
    """Write the ``Send`` frames and close on ``Hangup``, as far as the
    stream lets us (a refusal goes to a peer that may be gone already)."""
    for out in outputs:
        if isinstance(out, Send):
            with contextlib.suppress(Exception):
                await stream.write(frame(out.frame))
        elif isinstance(out, Hangup):
            with contextlib.suppress(Exception):
                await stream.close()
        elif isinstance(out, Misbehaved):
            log.info("link refused %s: %s", out.peer, out.error.code)


def _account_doc(info: Any) -> dict[str, Any]:
    return {
        "account_id": info.account_id.hex(),
        "handle": info.handle,
        "display_name": info.display_name,
        "status": info.status.value,
        "devices": [{"name": d.name, "fingerprint": d.fingerprint} for d in info.devices],
    }


class LinkMethods:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.book = Offers(daemon.params)
        #: the adapter's side of each offer the book holds
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
        """Expire offers past their deadline (a waiting joiner hears why);
        drop what the book forgot (finished offers stay an hour, so that a
        late joiner hears why rather than "no such link")."""
        for out in self.book.tick(clock_now()):
            if isinstance(out, OfferForgotten):
                self.offers.pop(out.link_id, None)
                continue
            slot = self.offers.get(out.link_id)
            if slot is not None and slot.stream is not None:
                await _perform(slot.stream, [out.output])

    async def run_timers(self) -> None:
        """Wake at the book's deadline (``Offers.next_deadline``), and at
        least every second, since a new offer brings a new deadline."""
        while True:
            soonest = self.book.next_deadline()
            wait = 1.0 if soonest is None else max(0.0, min(1.0, soonest - trio.current_time()))
            await trio.sleep(wait)
            await self._expire()

    async def link(self, params: dict[str, Any]) -> dict[str, Any]:
        account = self.d.own_account()
        state = self.d.ledger.state(account)
        if self.d.secrets.device.sign_public not in state.active_keys:
            raise RpcFailure(
                control.USAGE, "this device is not active in its account: it cannot link devices"
            )
        await self._expire()
        addrs = [a.split("/p2p/")[0] for a in self.d.addresses()][:4]
        ttl_ms = min(int(params.get("ttl_seconds") or 600), 600) * 1000
        try:
            ap = self.book.create(
                account,
                peer_id=self.d.peer_id,
                addrs=addrs,
                link_id=os.urandom(8),
                secret=os.urandom(16),
                now=clock_now(),
                ttl_ms=max(ttl_ms, 1000),
            )
        except UsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
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
        except Exception:
            with contextlib.suppress(Exception):
                await stream.close()
            return
        routed = self.book.route(data, remote, clock_now())
        if isinstance(routed, list):  # malformed, or no such offer
            await _perform(stream, routed)
            return
        slot = self.offers.get(routed.offer.link_id)
        if slot is None:  # every offer of the book has a slot; be safe
            slot = self.offers[routed.offer.link_id] = OfferSlot(routed)
        await self._serve(slot, stream, remote, data)

    async def _serve(self, slot: OfferSlot, stream: Any, remote: str, first: bytes) -> None:
        ap = slot.approver
        data: bytes | None = first
        try:
            while data is not None:
                outputs = ap.receive(
                    data, remote_peer=remote, now=clock_now(), ledger=self.d.ledger
                )
                if any(isinstance(out, JoinRequested) for out in outputs):
                    slot.stream, slot.remote = stream, remote  # this joiner claimed it
                for out in outputs:
                    if isinstance(out, Send):
                        try:
                            await stream.write(frame(out.frame))
                        except Exception:  # the joiner went away: its stream is gone
                            return
                    elif isinstance(out, Misbehaved):
                        link = ap.offer.link_id.hex()
                        log.info("link %s refused %s: %s", link, remote, out.error.code)
                    elif isinstance(out, Hangup):
                        with contextlib.suppress(Exception):
                            await stream.close()
                        return
                    elif isinstance(out, ApprovalRequested):
                        slot.pending = True
                    elif isinstance(out, JoinAborted):
                        slot.pending = False
                    elif isinstance(out, LinkCompleted):
                        slot.completed = out
                        # History follows only now that the add-device event is in the
                        # log (DESIGN §9), encrypted to the approved key.
                        with contextlib.suppress(RpcFailure):
                            self.d.messages.send_history(out.sign_public)
                        slot.finished.set()
                try:
                    data = await read_frame(stream, APPROVER_BOUND_MAX_BYTES)
                except Exception:
                    data = None
        finally:
            if slot.stream is stream:
                ap.connection_lost(remote, clock_now())
                slot.stream = None
                slot.pending = False
                slot.finished.set()

    def _slot(self, ref: str) -> OfferSlot:
        ap = self.book.find(ref)
        slot = None if ap is None else self.offers.get(ap.offer.link_id)
        if slot is None:
            raise RpcFailure(
                control.USAGE, f"no single pending request {ref!r}: see `smu device pending`"
            )
        return slot

    async def pending(self, params: dict[str, Any]) -> dict[str, Any]:
        await self._expire()
        out = []
        for ap in self.book:
            slot = self.offers.get(ap.offer.link_id)
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

    async def approve(self, params: dict[str, Any]) -> dict[str, Any]:
        slot = self._slot(str(params["id"]))
        if not slot.pending or slot.stream is None:
            raise RpcFailure(
                control.USAGE,
                "that request is not waiting for approval "
                "(the new device has not confirmed, or it went away)",
            )
        now = clock_now()
        try:
            approval = slot.approver.approve(
                self.d.secrets.device, self.d.ledger, timestamp_ms=now.wall_ms, now=now
            )
        except (InvalidInput, UsageError) as exc:
            raise RpcFailure(control.USAGE, f"cannot approve: {exc}") from exc
        status, event_id, _ = self.d.publish(approval.event.raw)  # stored before it is sent
        await _write(slot.stream, approval.outputs)
        with trio.move_on_after(ANSWER_TIMEOUT):
            await slot.finished.wait()
        req = slot.approver.request
        assert req is not None
        return {
            "event_id": event_id,
            "status": status,
            "device_name": req.device_name,
            "fingerprint": req.fingerprint,
            "completed": slot.completed is not None,
        }

    async def reject(self, params: dict[str, Any]) -> dict[str, Any]:
        slot = self._slot(str(params["id"]))
        try:
            outputs = slot.approver.reject(clock_now())
        except (InvalidInput, UsageError) as exc:
            raise RpcFailure(control.USAGE, f"cannot reject: {exc}") from exc
        if slot.stream is not None:
            await _perform(slot.stream, outputs)
        return {"rejected": True}

    # -- joiner side --------------------------------------------------------

    async def join(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.d.config.get("account"):
            raise RpcFailure(control.USAGE, "this device already belongs to an account")
        try:
            offer = LinkOffer.parse(str(params["link"]))
        except InvalidInput as exc:
            raise RpcFailure(control.USAGE, f"link: {exc}") from exc
        name = str(params.get("name") or self.d.config.get("device_name") or "device")
        try:
            joiner = Joiner(
                self.d.params,
                offer,
                self.d.secrets.device,
                name,
                own_peer=self.d.peer_id,
                remote_peer=offer.peer_id,
                now=clock_now(),
            )
        except (InvalidInput, UsageError) as exc:
            raise RpcFailure(control.USAGE, f"link: {exc}") from exc
        try:
            peer = ID.from_base58(offer.peer_id)
            info = PeerInfo(peer, [parse_multiaddr(a) for a in offer.addrs])
            with trio.fail_after(ANSWER_TIMEOUT):
                await self.d.host.connect(info)
                stream = await self.d.host.new_stream(peer, [LINK_PROTOCOL])
        except Exception as exc:
            raise RpcFailure(control.USAGE, f"cannot reach the other device: {exc}") from exc
        try:
            await _write(stream, joiner.start(clock_now()))
            with trio.fail_after(ANSWER_TIMEOUT):
                data = await read_frame(stream, joiner_bound_max_bytes(self.d.params))
            outputs = joiner.receive(data, clock_now())
        except Exception as exc:
            with contextlib.suppress(Exception):
                await stream.close()
            raise RpcFailure(control.USAGE, f"the other device did not answer: {exc}") from exc
        failed = [o for o in outputs if isinstance(o, JoinFailed)]
        if failed:
            with contextlib.suppress(Exception):
                await stream.close()
            raise RpcFailure(control.USAGE, f"link refused: {failed[0].error}")
        (confirm,) = [o for o in outputs if isinstance(o, ConfirmRequired)]
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
                await _write(stream, joiner.decline(clock_now()))
                return {"joined": False}
            await _write(stream, joiner.confirm(clock_now()))
            with trio.fail_after(APPROVAL_TIMEOUT):
                data = await read_frame(stream, joiner_bound_max_bytes(self.d.params))
            outputs = joiner.receive(data, clock_now())
            failed = [o for o in outputs if isinstance(o, JoinFailed)]
            if failed:
                raise RpcFailure(control.USAGE, f"not joined: {failed[0].error}")
            (joined,) = [o for o in outputs if isinstance(o, Joined)]
            # Stored and recorded before the approver hears DONE, so a crash
            # here never leaves it believing a join that did not happen.
            for raw in joined.events:  # parents first; each stored, then gossiped
                self.d.publish(raw)
            self.d.config["account"] = joined.account.account_id.hex()
            self.d.datadir.write_config(self.d.config)
            await _write(stream, outputs)  # DONE; the stream is closed below
        except RpcFailure:
            raise
        except InvalidInput as exc:
            raise RpcFailure(control.USAGE, f"not joined: {exc}") from exc
        except trio.TooSlowError as exc:
            raise RpcFailure(control.USAGE, "not joined: nobody approved in time") from exc
        except Exception as exc:
            if self.d.config.get("account"):  # joined; only the DONE frame was lost
                self.d.publish_own_record()
                return {
                    "joined": True,
                    "account": _account_doc(joined.account),
                    "add_device_event": joined.add_device_id.hex(),
                }
            raise RpcFailure(control.USAGE, f"not joined: the link broke ({exc})") from exc
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
        self.d.publish_own_record()
        return {
            "joined": True,
            "account": _account_doc(joined.account),
            "add_device_event": joined.add_device_id.hex(),
        }
