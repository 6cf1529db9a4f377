"""Live updates to every open page, over one WebSocket each.

A message is pushed, whole, the moment the message service reports it
durable; a delivery change likewise.  Changes that only tell a page to
fetch again (this account's log, a contact's, link requests) are
coalesced, so a node catching up on thousands of events sends a handful.

The upgrade passed the guard (Host, Origin, the session cookie); the page
then sends its session key as the first message, since a browser cannot
put a header on a WebSocket.  Nothing is sent before that.  A page that
reads too slowly is dropped rather than buffered without bound: it
reconnects and fetches afresh.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field

import trio
from starlette.websockets import WebSocket

from ..storage.messages import KIND_TEXT, NewMessage
from .auth import Session, Sessions, key_matches
from .deps import Services
from .views import deliveries, message_doc

log = logging.getLogger("smu.web")

AUTH_TIMEOUT = 5.0
#: messages waiting for one page before it counts as stuck
QUEUE = 256
#: coalesced "fetch again" notices go out at most this often
COALESCE_S = 0.2
#: how often link requests are looked at while a page is open
PENDING_POLL_S = 0.5
CLOSE_UNAUTHORISED = 4401
CLOSE_TOO_SLOW = 4408


@dataclass
class Client:
    session_id: str
    send: trio.MemorySendChannel[str]
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)
    close_code: int = 1000
    gone: bool = False


class Hub:
    def __init__(self, svc: Services, sessions: Sessions) -> None:
        self.svc = svc
        self.clients: list[Client] = []
        self._dirty: set[str] = set()
        self._wake = trio.Event()
        self._pending_seen: str = ""
        svc.messages.on_stored.append(self.on_stored)
        svc.messages.on_delivery.append(self.on_delivery)
        sessions.on_ended.append(self.session_ended)

    # -- what happened --------------------------------------------------------------

    def broadcast(self, event: dict[str, object]) -> None:
        if not self.clients:
            return
        text = json.dumps(event)
        for client in list(self.clients):
            try:
                client.send.send_nowait(text)
            except trio.WouldBlock:
                self._drop(client, CLOSE_TOO_SLOW)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def on_stored(self, m: NewMessage) -> None:
        if m.kind == KIND_TEXT and self.clients:
            self.broadcast({"type": "message", "message": message_doc(self.svc, m)})

    def on_delivery(self, message_id: bytes) -> None:
        if self.clients:
            self.broadcast(
                {
                    "type": "delivery",
                    "message_id": message_id.hex(),
                    "deliveries": deliveries(self.svc, message_id),
                }
            )

    def on_note(self, note: dict[str, object]) -> None:
        """An event was accepted into the log (the daemon's subscribers).
        Costs nothing while no page is open (a node catching up hears of
        every event)."""
        if not self.clients:
            return
        account = self.svc.ctx.account()
        ref = note.get("account")
        if account is not None and ref == account.hex():
            self.changed("account")
        elif isinstance(ref, str) and len(ref) == 64:
            try:
                known = self.svc.ctx.contacts.is_contact(bytes.fromhex(ref))
            except ValueError:
                return
            if known:
                self.changed("contacts")

    def synced(self) -> None:
        """The account-wide state changed (this device or another one):
        contacts, blocks, marks and read marks; the sync service's listener."""
        if self.clients:
            self.changed("contacts")
            self.changed("conversations")

    def changed(self, what: str) -> None:
        """Tell the pages to fetch ``what`` again, soon."""
        self._dirty.add(what)
        self._wake.set()

    def session_ended(self, session_id: str) -> None:
        for client in list(self.clients):
            if client.session_id == session_id:
                self._drop(client, CLOSE_UNAUTHORISED)

    def _drop(self, client: Client, code: int) -> None:
        client.close_code = code
        client.cancel.cancel()
        if client in self.clients:
            self.clients.remove(client)

    # -- running ------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flush_loop)
            nursery.start_soon(self._pending_loop)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            dirty, self._dirty = sorted(self._dirty), set()
            for what in dirty:
                self.broadcast({"type": "changed", "what": what})
            await trio.sleep(COALESCE_S)

    async def _pending_loop(self) -> None:
        """Link requests live in the linking machines, which tell no one:
        look at them while a page is open, so an approval prompt appears
        wherever the user is."""
        while True:
            await trio.sleep(PENDING_POLL_S)
            if not self.clients:
                continue
            doc = await self.svc.linking.pending({})
            seen = json.dumps(
                [(r["id"], r["state"], r["awaiting_approval"]) for r in doc["requests"]]
            )
            if seen != self._pending_seen:
                self._pending_seen = seen
                self.changed("pending")

    async def serve(self, ws: WebSocket, session: Session) -> None:
        await ws.accept()
        key = None
        with trio.move_on_after(AUTH_TIMEOUT):
            first = await ws.receive()
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                key = json.loads(first.get("text") or "{}").get("key")
        if not isinstance(key, str) or not key_matches(session, key):
            with contextlib.suppress(Exception):  # the page may be gone already
                await ws.close(CLOSE_UNAUTHORISED)
            return
        send, receive = trio.open_memory_channel[str](QUEUE)
        client = Client(session.id, send)
        self.clients.append(client)
        try:
            with client.cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, ws, receive)
                    await ws.send_text(json.dumps({"type": "hello"}))
                    while (await ws.receive())["type"] != "websocket.disconnect":
                        pass
                    client.gone = True  # the page closed the socket itself
                    nursery.cancel_scope.cancel()
            if not client.gone:  # dropped: a revoked session or a page too slow to keep up
                with contextlib.suppress(Exception):
                    await ws.close(client.close_code)
        finally:
            if client in self.clients:
                self.clients.remove(client)

    async def _pump(self, ws: WebSocket, receive: trio.MemoryReceiveChannel[str]) -> None:
        async for text in receive:
            await ws.send_text(text)
