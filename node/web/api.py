"""The web app's JSON endpoints for the launch, conversations, contacts and
the node (this account's own screens are in ``api_account.py``).  Each
calls the node's services directly, with the control API's parameters
(PROTOCOL.md §13)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from protocol.core.keys import handle
from protocol.core.names import sanitise

from ..services.trash import TRASH_DAYS
from ..storage.messages import KIND_TEXT
from .auth import SESSION_TTL_MS, Sessions, proof
from .deps import Services
from .endpoints import Answer, Params, WebError, account_id, endpoint, flag, session_of, text
from .live import Hub
from .metrics import CounterHistory
from .views import CONVERSATION_LIMIT, app_state, message_doc, now_ms, qr

MAX_MESSAGE_CHARS = 65536
PREVIEW_CHARS = 120


@dataclass(frozen=True, slots=True)
class AppState:
    """What the endpoints share: the node's services and the web app's own."""

    svc: Services
    sessions: Sessions
    hub: Hub
    metrics: CounterHistory
    key: bytes
    port: int
    cookie: str
    #: per link request id, the codes the approver picks from (kept so that
    #: every look at the prompt offers the same choices)
    choices: dict[str, list[str]] = field(default_factory=dict)


class Api:
    def __init__(self, app: AppState) -> None:
        self.app = app
        self.svc = app.svc

    def routes(self) -> list[BaseRoute]:
        get, post = ["GET"], ["POST"]
        return [
            Route("/api/proof", endpoint(self.proof), methods=post),
            Route("/api/session", endpoint(self.session), methods=post),
            Route("/api/state", endpoint(self.state), methods=get),
            Route("/api/conversations", endpoint(self.conversations), methods=get),
            Route("/api/conversation", endpoint(self.conversation), methods=get),
            Route("/api/send", endpoint(self.send), methods=post),
            Route("/api/read", endpoint(self.read), methods=post),
            Route("/api/messages/delete", endpoint(self.delete), methods=post),
            Route("/api/messages/restore", endpoint(self.restore), methods=post),
            Route("/api/trash", endpoint(self.trash), methods=get),
            Route("/api/requests/accept", endpoint(self.accept), methods=post),
            Route("/api/requests/block", endpoint(self.block), methods=post),
            Route("/api/contacts", endpoint(self.contacts), methods=get),
            Route("/api/invite", endpoint(self.invite), methods=get),
            Route("/api/contacts/add", endpoint(self.add_contact), methods=post),
            Route("/api/contact", endpoint(self.contact), methods=get),
            Route("/api/contacts/verify", endpoint(self.verify), methods=post),
            Route("/api/contacts/ack", endpoint(self.ack), methods=post),
            Route("/api/contacts/remove", endpoint(self.remove), methods=post),
            Route("/api/contacts/block", endpoint(self.block_contact), methods=post),
            Route("/api/node", endpoint(self.node), methods=get),
            Route("/api/peers/connect", endpoint(self.connect), methods=post),
        ]

    # -- the launch (public: the guard lets these through without a session) -------

    async def proof(self, request: Request, params: Params) -> Answer:
        challenge = text(params, "challenge", max_chars=128)
        try:
            raw = bytes.fromhex(challenge)
        except ValueError as exc:
            raise WebError(400, "the challenge is hex") from exc
        if not 16 <= len(raw) <= 64:
            raise WebError(400, "the challenge is 16 to 64 bytes")
        return {"proof": proof(self.app.key, self.app.port, raw)}

    async def session(self, request: Request, params: Params) -> JSONResponse:
        code = text(params, "code", max_chars=128)
        redeemed = self.app.sessions.redeem(code, request.headers.get("user-agent", ""))
        if redeemed is None:
            raise WebError(
                401, "this launch code was used already or has expired: run `smu web` again"
            )
        token, key, session = redeemed
        response = JSONResponse(
            {"key": key, "session": session.id, "expires_ms": session.expires_ms}
        )
        # HttpOnly: no script reads it; Strict: no other site's page sends it
        response.set_cookie(
            self.app.cookie,
            token,
            max_age=SESSION_TTL_MS // 1000,
            path="/",
            httponly=True,
            samesite="strict",
        )
        return response

    # -- the page's first look ----------------------------------------------------

    async def state(self, request: Request, params: Params) -> Answer:
        doc = app_state(self.svc)
        doc["session"] = session_of(request).id
        pending = (await self.svc.linking.pending({}))["requests"]
        doc["pending"] = sum(1 for r in pending if r["awaiting_approval"])
        messages = self.svc.messages
        doc["requests"] = messages.store.request_senders(messages.requests_policy.since(now_ms()))
        summaries = self.svc.reads.summaries(KIND_TEXT) if doc["account"] else {}
        doc["unread"] = sum(
            s.unread for peer, s in summaries.items() if self.svc.ctx.contacts.is_contact(peer)
        )
        return doc

    # -- conversations ----------------------------------------------------------------

    async def conversations(self, request: Request, params: Params) -> Answer:
        contacts = (await self.svc.contacts.contact_list({}))["contacts"]
        summaries = self.svc.reads.summaries(KIND_TEXT)
        # the page's own shapes, not control results: newest activity first
        ranked: list[tuple[int, str, dict[str, object]]] = []
        for c in contacts:
            if c["blocked"]:
                continue  # shown, to unblock, on the contacts screen only
            s = summaries.get(bytes.fromhex(c["account_id"]))
            activity = s.last_stored_ms if s else 0
            doc: dict[str, object] = {
                "account_id": c["account_id"],
                "name": c["name"],
                "handle": c["handle"],
                "verified": c["verified"],
                "status": c["status"],
                "changes": len(c["changes"]),
                "unread": s.unread if s else 0,
                "activity_ms": activity,
                "last": None
                if s is None
                else {
                    "text": sanitise(s.last_text.replace("\n", " "), max_chars=PREVIEW_CHARS),
                    "sent_ms": s.last_sent_ms,
                    "outgoing": s.last_outgoing,
                },
            }
            ranked.append((-activity, c["name"], doc))
        ranked.sort(key=lambda r: (r[0], r[1]))
        requests: dict[str, dict[str, object]] = {}
        counts: dict[str, int] = {}
        for m in (await self.svc.messages.requests({}))["requests"]:
            peer = m["conversation_account"]
            counts[peer] = counts.get(peer, 0) + 1
            requests[peer] = {
                "account_id": peer,
                "name": m["conversation"],
                "count": counts[peer],
                "last": {"text": m["text"][:PREVIEW_CHARS], "sent_ms": m["sent_ms"]},
            }
        return {"conversations": [d for _, _, d in ranked], "requests": list(requests.values())}

    async def conversation(self, request: Request, params: Params) -> Answer:
        ref = account_id(params)
        peer = bytes.fromhex(ref)
        store = self.svc.messages.store
        contacts = self.svc.ctx.contacts
        if contacts.is_contact(peer):
            rows = store.conversation(peer, KIND_TEXT)
            doc = next(
                (
                    c
                    for c in (await self.svc.contacts.contact_list({}))["contacts"]
                    if c["account_id"] == ref
                ),
                None,
            )
            if doc is None:
                raise WebError(404, "no conversation with that account")
            about = {k: doc[k] for k in ("name", "handle", "verified", "status")}
            about["request"] = False
        else:
            since = self.svc.messages.requests_policy.since(now_ms())
            rows = [r for r in store.requests(since) if r.peer == peer]
            if not rows:
                raise WebError(404, "no conversation with that account")
            about = {
                "name": contacts.label(peer),
                "handle": None,
                "verified": False,
                "status": "unknown",
                "request": True,
            }
        hidden = self.svc.messages.hidden()  # the account's trash (§15.19)
        rows = [r for r in rows if (r.sender_account, r.message_id) not in hidden]
        return {
            "account_id": ref,
            **about,
            "messages": [message_doc(self.svc, r) for r in rows[-CONVERSATION_LIMIT:]],
            "truncated": len(rows) > CONVERSATION_LIMIT,
        }

    async def send(self, request: Request, params: Params) -> Answer:
        ref = account_id(params)
        body = text(params, "text", max_chars=MAX_MESSAGE_CHARS)
        if not body.strip():
            raise WebError(400, "an empty message")
        sent = await self.svc.messages.send({"contact": ref, "text": body})
        self.svc.reads.mark_read(bytes.fromhex(ref))  # replying reads
        return sent

    async def read(self, request: Request, params: Params) -> Answer:
        """Read up to ``up_to_ms``, the newest incoming ``sent_ms`` the page
        shows (default: the newest stored), on every device of the account."""
        peer = bytes.fromhex(account_id(params))
        up_to = params.get("up_to_ms")
        if up_to is not None and (type(up_to) is not int or up_to < 0):
            raise WebError(400, "'up_to_ms' must be a timestamp in ms")
        mark = self.svc.reads.mark_read(peer, up_to)
        self.app.hub.changed("conversations")  # other open pages update their counts
        return {"read": True, "read_ms": mark}

    async def delete(self, request: Request, params: Params) -> Answer:
        """To the account's trash (§15.19): gone from every device's view,
        restorable for 30 days."""
        done = await self.svc.trash.delete({"ids": [_message_id(params)]})
        self.app.hub.changed("conversations")
        return done

    async def restore(self, request: Request, params: Params) -> Answer:
        done = await self.svc.trash.restore({"ids": [_message_id(params)]})
        self.app.hub.changed("conversations")
        return done

    async def trash(self, request: Request, params: Params) -> Answer:
        """The account's trash, newest deletion first, each with who wrote it
        (the text is None where this device never had it or purged it)."""
        own = self.svc.ctx.own_account()
        items = (await self.svc.trash.list_trash({}))["trash"]
        shown = [
            {
                **item,
                "from": "you"
                if bytes.fromhex(item["sender_account"]) == own
                else self.svc.messages.contacts.label(bytes.fromhex(item["sender_account"])),
            }
            for item in items
        ]
        return {"trash": shown[::-1], "purged_after_days": TRASH_DAYS}

    async def accept(self, request: Request, params: Params) -> Answer:
        ref = account_id(params)
        name = text(params, "name", max_chars=64, required=False) or None
        done = await self.svc.messages.accept_request({"account": ref, "name": name})
        self.app.hub.changed("conversations")
        return done

    async def block(self, request: Request, params: Params) -> Answer:
        done = await self.svc.messages.block_request({"account": account_id(params)})
        self.app.hub.changed("conversations")
        return done

    # -- contacts ---------------------------------------------------------------------

    async def contacts(self, request: Request, params: Params) -> Answer:
        return await self.svc.contacts.contact_list({})

    async def invite(self, request: Request, params: Params) -> Answer:
        doc = await self.svc.contacts.invite_create({})
        return {**doc, "qr": qr(doc["uri"])}

    async def add_contact(self, request: Request, params: Params) -> Answer:
        ref = text(params, "ref", max_chars=2048).strip()
        if not ref:
            raise WebError(400, "paste an invite first")
        name = text(params, "name", max_chars=64, required=False).strip() or None
        done = await self.svc.contacts.contact_add({"ref": ref, "name": name})
        self.app.hub.changed("conversations")
        return done

    async def contact(self, request: Request, params: Params) -> Answer:
        ref = account_id(params)
        doc = await self.svc.contacts.contact_verify({"contact": ref})  # no confirm: reads only
        own = self.svc.ctx.own_account()
        own_state = self.svc.ctx.ledger.state(own)
        history = []
        if doc["contact"]["synced"]:
            events = (await self.svc.accounts.account_history({"account": ref}))["events"]
            history = [
                {"timestamp_ms": e["timestamp_ms"], "text": e["text"], "void": e["void"]}
                for e in events
            ]
        return {
            **doc,
            "own_handle": handle(own_state.display_name, own),
            "history": history,
        }

    async def verify(self, request: Request, params: Params) -> Answer:
        ref = account_id(params)
        typed = text(params, "safety_number", max_chars=200, required=False)
        current = await self.svc.contacts.contact_verify({"contact": ref})
        # The page sends the number it showed: a mark is only ever made for
        # the number the user compared, never for one that changed since.
        if typed and not hmac.compare_digest(
            "".join(typed.split()), "".join(current["safety_number"].split())
        ):
            raise WebError(409, "the safety number changed: compare it again")
        done = await self.svc.contacts.contact_verify({"contact": ref, "confirm": True})
        self.app.hub.changed("conversations")
        return done

    async def ack(self, request: Request, params: Params) -> Answer:
        done = await self.svc.contacts.contact_ack({"contact": account_id(params)})
        self.app.hub.changed("conversations")
        return done

    async def remove(self, request: Request, params: Params) -> Answer:
        done = await self.svc.contacts.contact_remove({"contact": account_id(params)})
        self.app.hub.changed("conversations")
        return done

    async def block_contact(self, request: Request, params: Params) -> Answer:
        """Block an account (``unblock``: true to undo), on every device."""
        unblock = flag(params, "unblock")
        done = await self.svc.contacts.contact_block(
            {"contact": account_id(params), "unblock": unblock}
        )
        self.app.hub.changed("conversations")
        return done

    # -- the node ---------------------------------------------------------------------

    async def node(self, request: Request, params: Params) -> Answer:
        status = await self.svc.node.status({})
        peers = await self.svc.peers.list({})
        return {"status": status, "peers": peers, "history": self.app.metrics.doc()}

    async def connect(self, request: Request, params: Params) -> Answer:
        addr = text(params, "addr", max_chars=512).strip()
        if "/p2p/" not in addr:
            raise WebError(400, "a peer address ends in /p2p/<peer id>")
        return await self.svc.peers.connect({"addr": addr})


def _message_id(params: Params) -> str:
    value = text(params, "message_id", max_chars=64).lower()
    try:
        bytes.fromhex(value)
    except ValueError:
        raise WebError(400, "'message_id' must be hex") from None
    if not value:
        raise WebError(400, "'message_id' must be hex")
    return value
