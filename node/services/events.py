"""Events: the ``event.*`` namespace (PROTOCOL.md §13): submit a signed
event made elsewhere, ask which ids are held."""

from __future__ import annotations

from protocol.core.errors import InvalidInput

from .. import control
from ..api import node as api
from ..context import NodeContext
from ..control import RpcFailure


class EventService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "event.submit": api.EVENT_SUBMIT.bind(self.submit),
            "event.has": api.EVENT_HAS.bind(self.has),
        }

    async def submit(self, params: api.SubmitParams) -> api.Submitted:
        raw = bytes.fromhex(params["event"])
        try:
            published = await self.ctx.publish(raw)
        except InvalidInput as exc:
            raise RpcFailure(
                control.INVALID_INPUT, f"{exc.code}: {exc}", {"code": exc.code}
            ) from exc
        return {"status": published.status, "event_id": published.event_id}

    async def has(self, params: api.IdsParams) -> api.Present:
        ids = params["ids"]
        return {"present": [i for i in ids if self.ctx.ledger.has(bytes.fromhex(i))]}
