"""Documents the web app's page shows, built from the node's services and
stores.  Every name and text is sanitised here as on the terminal; the page
inserts each one as text, never as HTML."""

from __future__ import annotations

import time
from typing import Protocol

import segno

from protocol.core.keys import handle
from protocol.core.names import sanitise
from protocol.log.state import DeviceStatus

from ..render import approver_label
from .deps import Services

#: what a delivery's state means to a person (storage/messages.py states)
DELIVERY_WORDS = {
    "pending": "sending",
    "deposited": "in a mailbox",
    "delivered": "delivered",
    "failed": "failed",
}
#: messages of one conversation the page gets at once (the newest)
CONVERSATION_LIMIT = 500


class MessageLike(Protocol):
    """A stored message (``MessageRow``) or one just stored (``NewMessage``)."""

    @property
    def message_id(self) -> bytes: ...
    @property
    def peer(self) -> bytes: ...
    @property
    def outgoing(self) -> bool: ...
    @property
    def sender_account(self) -> bytes: ...
    @property
    def sender_device(self) -> bytes: ...
    @property
    def sent_ms(self) -> int: ...
    @property
    def stored_ms(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def request(self) -> bool: ...
    @property
    def relayed_by(self) -> bytes | None: ...


def message_text(text: str, max_chars: int = 65536) -> str:
    """A message for the page: what ``sanitise`` makes of each line (no
    controls, no bidirectional overrides), with the line breaks kept, since
    the page shows text as text."""
    lines = text[:max_chars].split("\n")
    out = "\n".join(sanitise(line, max_chars=max_chars) for line in lines)
    return out + ("…" if len(text) > max_chars else "")


def now_ms() -> int:
    return int(time.time() * 1000)


def device_name(svc: Services, account: bytes, device: bytes) -> str:
    ledger = svc.ctx.ledger
    if account in ledger.accounts:
        d = ledger.state(account).device(device)
        if d is not None:
            return sanitise(d.name)
    return device.hex()[:12]


def deliveries(svc: Services, message_id: bytes) -> list[dict[str, object]]:
    """Where one sent message stands, device by device."""
    own = svc.ctx.account()
    return [
        {
            "device": device_name(svc, account, device),
            "own_device": account == own,
            "state": state,
            "words": DELIVERY_WORDS.get(state, state),
        }
        for device, account, state in svc.messages.store.delivery_devices(message_id)
    ]


def message_doc(svc: Services, m: MessageLike) -> dict[str, object]:
    labels = svc.messages.contacts
    doc: dict[str, object] = {
        "message_id": m.message_id.hex(),
        "conversation": m.peer.hex(),
        "outgoing": m.outgoing,
        "from": "me" if m.outgoing else labels.label(m.sender_account),
        "from_device": device_name(svc, m.sender_account, m.sender_device),
        "sent_ms": m.sent_ms,
        "stored_ms": m.stored_ms,
        "text": message_text(m.text),
        "request": m.request,
        # an unproven history entry (§15.4): shown as relayed, not as the sender's
        "relayed_by": (
            None if m.relayed_by is None else device_name(svc, svc.ctx.own_account(), m.relayed_by)
        ),
    }
    if m.outgoing:
        doc["deliveries"] = deliveries(svc, m.message_id)
    return doc


def qr(text: str) -> dict[str, object]:
    """A QR code as rows of modules ("1" dark), which the page draws as one
    SVG path; upper case keeps a URI in the alphanumeric mode (§4.7)."""
    code = segno.make(text.upper(), error="m")
    return {
        "size": len(code.matrix),
        "rows": ["".join("1" if cell else "0" for cell in row) for row in code.matrix],
    }


def who_ended(svc: Services, account: bytes, event_id: bytes | None) -> str | None:
    """Who signed the event that ended a device (a revocation)."""
    if event_id is None:
        return None
    ledger = svc.ctx.ledger
    state = ledger.state(account)
    for event in ledger.log(account).events:
        if event.id == event_id:
            return approver_label(state, event.signer)
    return None


def app_state(svc: Services) -> dict[str, object]:
    """What the page needs before it draws any screen."""
    ctx = svc.ctx
    doc: dict[str, object] = {
        "node": {
            "peer_id": ctx.peer_id,
            "device_name": sanitise(ctx.device_name),
            "fingerprint": ctx.device.fingerprint,
        },
        "account": None,
        "device": None,
    }
    account = ctx.account()
    if account is None:
        return doc
    if account not in ctx.ledger.accounts:
        doc["account"] = {"account_id": account.hex(), "handle": None, "status": "unknown"}
        return doc
    state = ctx.ledger.state(account)
    doc["account"] = {
        "account_id": account.hex(),
        "handle": handle(state.display_name, account),
        "display_name": sanitise(state.display_name),
        "status": state.status.value,
    }
    me = state.device(ctx.device.sign_public)
    if me is not None:
        doc["device"] = {
            "name": sanitise(me.name),
            "fingerprint": me.fingerprint,
            "status": me.status.value,
            "active": me.status is DeviceStatus.ACTIVE,
            "ended_by": who_ended(svc, account, me.ended_by),
            "ended_at_ms": me.ended_at,
        }
    return doc
