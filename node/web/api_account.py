"""The web app's endpoints for this account: creating, joining and
recovering it, its devices, linking a new one with approval, revoking, and
the browser sessions of this web app.

Approving a device needs the confirmation code both devices show: the page
offers it among decoys (or lets the user type it), and the server compares.
A wrong code refuses the request outright, as codes that differ mean the
new device is not the one the user is holding; so a framed page, a stray
click or a script cannot approve a device.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from protocol.log.state import DeviceStatus

from ..api.account import PendingRequest
from ..services.devices import cascade
from .api import AppState
from .endpoints import Answer, Params, WebError, endpoint, flag, session_of, text
from .views import qr

#: how many wrong codes the approver is offered beside the right one
DECOYS = 3
LINK_TTL_SECONDS = 600


def _code_choices(code: str) -> list[str]:
    digits = len(code)
    out = {code}
    while len(out) < DECOYS + 1:
        out.add(f"{secrets.randbelow(10**digits):0{digits}d}")
    choices = sorted(out)
    secrets.SystemRandom().shuffle(choices)
    return choices


class AccountApi:
    def __init__(self, app: AppState) -> None:
        self.app = app
        self.svc = app.svc

    def routes(self) -> list[BaseRoute]:
        get, post = ["GET"], ["POST"]
        return [
            Route("/api/account", endpoint(self.account), methods=get),
            Route("/api/account/create", endpoint(self.create), methods=post),
            Route("/api/account/recover", endpoint(self.recover), methods=post),
            Route("/api/devices/link", endpoint(self.link), methods=post),
            Route("/api/devices/pending", endpoint(self.pending), methods=get),
            Route("/api/devices/approve", endpoint(self.approve), methods=post),
            Route("/api/devices/reject", endpoint(self.reject), methods=post),
            Route("/api/devices/join", endpoint(self.join), methods=post),
            Route("/api/devices/join_confirm", endpoint(self.join_confirm), methods=post),
            Route("/api/devices/revoke", endpoint(self.revoke), methods=post),
            Route("/api/sessions", endpoint(self.sessions), methods=get),
            Route("/api/sessions/revoke", endpoint(self.revoke_session), methods=post),
            Route("/api/logout", endpoint(self.logout), methods=post),
        ]

    # -- the account --------------------------------------------------------------

    async def account(self, request: Request, params: Params) -> Answer:
        doc = await self.svc.devices.device_list({})
        state = self.svc.ctx.ledger.state(self.svc.ctx.own_account())
        devices: list[dict[str, object]] = []
        for dev, record in zip(doc["devices"], state.devices, strict=True):
            # revoking a device offers the devices it added (DESIGN §3)
            added = {c.sign_public.hex() for c in cascade(state, record)}
            others = [
                {"name": d["name"], "fingerprint": d["fingerprint"]}
                for d in doc["devices"]
                if d["sign_public"] in added
            ]
            devices.append({**dev, "added": others})
        history = await self.svc.accounts.account_history({})
        events = [
            {"timestamp_ms": e["timestamp_ms"], "text": e["text"], "void": e["void"]}
            for e in history["events"]
        ]
        return {**doc, "devices": devices, "history": events}

    async def create(self, request: Request, params: Params) -> Answer:
        name = text(params, "name", max_chars=64).strip()
        if not name:
            raise WebError(400, "choose a name people will see")
        done = await self.svc.accounts.account_create({"name": name})
        self.app.hub.changed("account")
        return done  # the recovery key, shown once by the page and never again

    async def recover(self, request: Request, params: Params) -> Answer:
        ref = text(params, "account", max_chars=128).strip()
        key = text(params, "recovery_key", max_chars=256).strip()
        if not ref or not key:
            raise WebError(400, "give the account and its recovery key")
        done = await self.svc.accounts.account_recover({"account": ref, "recovery_key": key})
        self.app.hub.changed("account")
        return done

    # -- linking a new device, on the device that approves ---------------------------

    async def link(self, request: Request, params: Params) -> Answer:
        doc = await self.svc.linking.link({"ttl_seconds": LINK_TTL_SECONDS})
        return {**doc, "qr": qr(doc["uri"])}

    async def _requests(self) -> list[PendingRequest]:
        requests = (await self.svc.linking.pending({}))["requests"]
        live = {r["id"] for r in requests}
        for stale in [k for k in self.app.choices if k not in live]:
            del self.app.choices[stale]
        return requests

    async def pending(self, request: Request, params: Params) -> Answer:
        out = []
        for r in await self._requests():
            doc: dict[str, object] = {k: r[k] for k in ("id", "state", "awaiting_approval")}
            if r["awaiting_approval"] and r["code"]:
                doc.update(
                    {
                        "device_name": r["device_name"],
                        "fingerprint": r["fingerprint"],
                        # the code itself is not sent: the user must recognise it
                        "choices": self.app.choices.setdefault(r["id"], _code_choices(r["code"])),
                    }
                )
            out.append(doc)
        return {"requests": out}

    async def approve(self, request: Request, params: Params) -> Answer:
        link_id = text(params, "id", max_chars=64)
        picked = "".join(text(params, "code", max_chars=32).split())
        mine = [r for r in await self._requests() if r["id"] == link_id]
        if not mine or not mine[0]["awaiting_approval"] or not mine[0]["code"]:
            raise WebError(409, "that request is not waiting for approval any more")
        if not hmac.compare_digest(picked, mine[0]["code"]):
            await self.svc.linking.reject({"id": link_id})
            self.app.choices.pop(link_id, None)
            raise WebError(
                403,
                "the codes did not match, so the request was refused; if the new device "
                "is yours, start again with a new link",
            )
        self.app.choices.pop(link_id, None)
        done = await self.svc.linking.approve({"id": link_id})
        self.app.hub.changed("account")
        return done

    async def reject(self, request: Request, params: Params) -> Answer:
        link_id = text(params, "id", max_chars=64)
        self.app.choices.pop(link_id, None)
        return await self.svc.linking.reject({"id": link_id})

    # -- joining, on the new device ----------------------------------------------

    async def join(self, request: Request, params: Params) -> Answer:
        link = text(params, "link", max_chars=2048).strip()
        name = text(params, "name", max_chars=64, required=False).strip() or None
        if not link:
            raise WebError(400, "paste the link the other device shows")
        return await self.svc.linking.join({"link": link, "name": name})

    async def join_confirm(self, request: Request, params: Params) -> Answer:
        done = await self.svc.linking.join_confirm(
            {"join_id": text(params, "join_id", max_chars=64), "accept": flag(params, "accept")}
        )
        self.app.hub.changed("account")
        return done

    # -- revoking -----------------------------------------------------------------

    async def revoke(self, request: Request, params: Params) -> Answer:
        fingerprint = text(params, "fingerprint", max_chars=128)
        state = self.svc.ctx.ledger.state(self.svc.ctx.own_account())
        compact = fingerprint.replace(" ", "").lower()
        target = [d for d in state.devices if d.fingerprint.replace(" ", "").lower() == compact]
        if len(target) != 1 or target[0].status is not DeviceStatus.ACTIVE:
            raise WebError(404, "no active device with that fingerprint")
        done = await self.svc.devices.device_revoke(
            {
                "device": compact,
                "cascade": flag(params, "cascade"),
                "confirm_last": flag(params, "confirm_last"),
            }
        )
        self.app.hub.changed("account")
        return done

    # -- this web app's sessions -----------------------------------------------------

    async def sessions(self, request: Request, params: Params) -> Answer:
        current = session_of(request).id
        return {
            "sessions": [
                {
                    "id": s.id,
                    "browser": s.agent,
                    "created_ms": s.created_ms,
                    "expires_ms": s.expires_ms,
                    "last_seen_ms": s.last_seen_ms,
                    "current": s.id == current,
                }
                for s in self.app.sessions.list()
            ]
        }

    async def revoke_session(self, request: Request, params: Params) -> Answer:
        if not self.app.sessions.revoke(text(params, "id", max_chars=32)):
            raise WebError(404, "no such session")
        return {"revoked": True}

    async def logout(self, request: Request, params: Params) -> JSONResponse:
        self.app.sessions.revoke(session_of(request).id)
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(self.app.cookie, path="/", httponly=True, samesite="strict")
        return response
