"""Shared pieces of the linking tests: the two machines joined by a fake
in-memory link (every ``Send`` handed to the other side), and readers of
their outputs (``refusal`` and ``failure``: remote input never raises)."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.core.errors import (
    InvalidInput,
)
from protocol.core.keys import DeviceKeys
from protocol.core.machine import Now
from protocol.core.params import NetworkParams
from protocol.linking import machines as lk
from protocol.log.ledger import IngestStatus, Ledger

from .conftest import FAST, T0, History, device

PA = "12D3KooWApproverPeerAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
PJ = "12D3KooWJoinerPeerJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJJ"
ADDRS = ("/ip4/192.0.2.7/tcp/4001", "/ip6/2001:db8::7/tcp/4001")
LINK_ID = bytes(range(8))
SECRET = bytes(range(100, 116))


def at(ms: int) -> Now:
    """``ms`` milliseconds after T0, on both clocks (monotonic 0 at T0)."""
    return Now(ms / 1000, T0 + ms)


def make_approver(
    account: bytes,
    *,
    peer: str = PA,
    now: Now | None = None,
    secret: bytes = SECRET,
    params: NetworkParams = FAST,
) -> lk.Approver:
    return lk.Approver(
        params,
        account,
        peer_id=peer,
        addrs=ADDRS,
        link_id=LINK_ID,
        secret=secret,
        now=now or at(0),
    )


def make_joiner(
    offer: lk.LinkOffer,
    keys: DeviceKeys,
    name: str = "laptop",
    *,
    own: str = PJ,
    now: Now | None = None,
) -> lk.Joiner:
    return lk.Joiner(
        FAST, offer, keys, name, own_peer=own, remote_peer=offer.peer_id, now=now or at(1000)
    )


def st(machine: lk.Approver | lk.Joiner) -> lk.ApproverState | lk.JoinerState:
    """The machine's state, read through a call so that mypy does not narrow it."""
    return machine.state


def frames(outputs: list[lk.LinkOutput] | tuple[lk.LinkOutput, ...]) -> list[bytes]:
    """The frames of the ``Send`` outputs, in order."""
    return [o.frame for o in outputs if isinstance(o, lk.Send)]


def only(outputs: list[lk.LinkOutput] | tuple[lk.LinkOutput, ...]) -> bytes:
    (frame,) = frames(outputs)
    return frame


def events(outputs: list[lk.LinkOutput]) -> list[lk.LinkOutput]:
    """The outputs that are neither ``Send``, ``Misbehaved`` nor ``Hangup``."""
    return [o for o in outputs if not isinstance(o, lk.Send | lk.Misbehaved | lk.Hangup)]


def refusal(outputs: list[lk.LinkOutput], peer: str = PJ) -> InvalidInput:
    """The error of an approver's refusal, checking its shape: the ERROR
    frame for it, ``Misbehaved`` and ``Hangup``, all for ``peer``."""
    assert len(outputs) == 3, outputs
    send, bad, hangup = outputs
    assert isinstance(send, lk.Send) and isinstance(bad, lk.Misbehaved)
    assert hangup == lk.Hangup(peer) and send.peer == bad.peer == peer
    assert send.frame == lk.error_frame(bad.error)
    return bad.error


def failure(
    jn: lk.Joiner, outputs: list[lk.LinkOutput], *, misbehaved: bool = True
) -> InvalidInput:
    """The error of a joiner's ``JoinFailed``, checking its shape: nothing
    sent, ``Misbehaved`` unless the approver sent ERROR, ``Hangup``."""
    assert st(jn) is lk.JoinerState.FAILED and jn.next_deadline() is None
    failed, *rest = outputs
    assert isinstance(failed, lk.JoinFailed)
    peer = jn.approver_peer
    expected = [lk.Misbehaved(peer, failed.error)] if misbehaved else []
    assert rest == [*expected, lk.Hangup(peer)]
    return failed.error


@dataclass
class Linked:
    approver: lk.Approver
    joiner: lk.Joiner
    confirm: lk.ConfirmRequired
    request: lk.JoinRequest
    joined: lk.Joined
    ledger: Ledger  # the new device's, fed from Joined.events


def link(
    ledger: Ledger,
    account: bytes,
    approver_keys: DeviceKeys,
    new_keys: DeviceKeys,
    name: str,
    *,
    approver_peer: str = PA,
    joiner_peer: str = PJ,
    t: int = 0,
) -> Linked:
    """The whole happy path through the fake link, asserting each output."""
    ap = make_approver(account, peer=approver_peer, now=at(t))
    offer = lk.LinkOffer.parse(ap.offer.to_text())
    jn = make_joiner(offer, new_keys, name, own=joiner_peer, now=at(t + 1000))

    join = jn.start(at(t + 1000))
    assert join == [lk.Send(approver_peer, only(join))]
    out = ap.receive(only(join), remote_peer=joiner_peer, now=at(t + 2000), ledger=ledger)
    assert st(ap) is lk.ApproverState.PENDING_APPROVAL
    send, requested = out
    assert isinstance(send, lk.Send) and send.peer == joiner_peer
    assert isinstance(requested, lk.JoinRequested)

    (confirm,) = jn.receive(only(out), at(t + 2500))
    assert isinstance(confirm, lk.ConfirmRequired) and st(jn) is lk.JoinerState.CONFIRMING

    out = ap.receive(
        only(jn.confirm(at(t + 3000))), remote_peer=joiner_peer, now=at(t + 3000), ledger=ledger
    )
    assert out == [lk.ApprovalRequested(requested.request)]

    approval = ap.approve(approver_keys, ledger, timestamp_ms=T0 + t + 4000, now=at(t + 4000))
    assert st(ap) is lk.ApproverState.APPROVED
    assert ledger.ingest(approval.event.raw).status is IngestStatus.ACCEPTED
    assert [type(o) for o in approval.outputs] == [lk.Send]

    jout = jn.receive(only(approval.outputs), at(t + 4500))
    joined, done, hangup = jout
    assert isinstance(joined, lk.Joined) and st(jn) is lk.JoinerState.JOINED
    assert joined.add_device_id == approval.event.id
    assert done == lk.Send(approver_peer, lk.encode_frame(lk.DoneFrame()))
    assert hangup == lk.Hangup(approver_peer) and jn.next_deadline() is None

    out = ap.receive(only(jout), remote_peer=joiner_peer, now=at(t + 5000), ledger=ledger)
    assert out == [
        lk.LinkCompleted(new_keys.sign_public, new_keys.enc_public, joiner_peer),
        lk.Hangup(joiner_peer),
    ]
    assert st(ap) is lk.ApproverState.USED and ap.next_deadline() is None

    new_ledger = Ledger(FAST)
    for raw in joined.events:
        assert new_ledger.ingest(raw).status is IngestStatus.ACCEPTED
    return Linked(ap, jn, confirm, requested.request, joined, new_ledger)


def claim(
    history: History, ledger: Ledger, new: str = "new"
) -> tuple[lk.Approver, lk.Joiner, list[lk.LinkOutput]]:
    ap = make_approver(history.account)
    jn = make_joiner(ap.offer, device(new))
    out = ap.receive(only(jn.start(at(1))), remote_peer=PJ, now=at(1), ledger=ledger)
    return ap, jn, out


def confirmed(history: History, ledger: Ledger, new: str = "new") -> tuple[lk.Approver, lk.Joiner]:
    """A claimed offer whose joiner has confirmed (at 2 ms)."""
    ap, jn, out = claim(history, ledger, new)
    jn.receive(only(out), at(2))
    ap.receive(only(jn.confirm(at(2))), remote_peer=PJ, now=at(2), ledger=ledger)
    return ap, jn
