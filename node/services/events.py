"""Events: the ``event.*`` namespace (PROTOCOL.md §13): submit a signed
event made elsewhere, ask which ids are held."""

from __future__ import annotations

from typing import Any

from protocol.core.errors import InvalidInput

from .. import control
from ..context import NodeContext
from ..control import RpcFailure


class EventService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def handlers(self) -> dict[str, control.Handler]:
        return {"event.submit": self.submit, "event.has": self.has}

    async def submit(self, params: dict[str, Any]) -> dict[str, Any]:
        raw = bytes.fromhex(str(params["event"]))
        try:
            published = await self.ctx.publish(raw)
        except InvalidInput as exc:
            raise RpcFailure(
                control.INVALID_INPUT, f"{exc.code}: {exc}", {"code": exc.code}
            ) from exc
        return {"status": published.status, "event_id": published.event_id}

    async def has(self, params: dict[str, Any]) -> dict[str, Any]:
        ids = [str(i) for i in params["ids"]]
        return {"present": [i for i in ids if self.ctx.ledger.has(bytes.fromhex(i))]}
