"""The node itself: the ``node.*`` namespace (PROTOCOL.md §13)."""

from __future__ import annotations

from collections.abc import Callable

from .. import control
from ..api import node as api
from ..api.schema import Empty
from ..channels import ChannelService
from ..context import NodeContext
from ..gate import Gate
from ..links import LinkService
from ..replication import ReplicationService


class NodeService:
    def __init__(
        self,
        ctx: NodeContext,
        replication: ReplicationService,
        links: LinkService,
        gate: Gate,
        channels: ChannelService,
        stop: Callable[[], None],
        parts: Callable[[], api.NodeStatusParts],
    ) -> None:
        self.ctx = ctx
        self.replication = replication
        self.links = links
        self.gate = gate
        self.channels = channels
        self._stop = stop
        #: more parts of node.status (the disk budget, the clock check;
        #: reachability, relays and dial hygiene: node.reach, node.relay)
        self.extra_status = parts

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "node.status": api.NODE_STATUS.bind(self.status),
            "node.stop": api.NODE_STOP.bind(self.stop),
        }

    async def status(self, params: Empty) -> api.NodeStatus:
        ledger = self.ctx.ledger
        account = self.ctx.account()
        return {
            "device_status": self._device_status(account),
            "peer_id": self.ctx.peer_id,
            "network": self.ctx.params.network_id,
            "listen": self.ctx.addresses(),
            "peers": len(self.links.links),
            "events": ledger.event_count,
            "accounts": len(ledger.accounts),
            "escrow": len(ledger.escrow),
            "event_set_digest": self.replication.set_digest(),
            "account": account.hex() if account is not None else None,
            "device_fingerprint": self.ctx.device.fingerprint,
            "replication": self.replication.stats(),
            "links": self._link_stats(),
            "channels": self.channels.status(),
            "gate": {
                "admitted": dict(self.gate.stats.admitted),
                "refused": dict(self.gate.stats.refused),
            },
            **self.extra_status(),
        }

    def _link_stats(self) -> api.LinkStats:
        s = self.links.manager.stats
        return {
            "admitted": s.admitted,
            "rejected": dict(s.rejected),
            "dials": s.dials,
            "dial_failures": s.dial_failures,
            "bans": s.bans,
            "evicted": s.evicted,
            "idle_closed": s.idle_closed,
            "bare_closed": s.bare_closed,
            "refused_connections": s.refused_connections,
        }

    def _device_status(self, account: bytes | None) -> str | None:
        """This device in its account: active, revoked, ... (None: no
        account; "joining": the account's log does not hold it yet)."""
        if account is None or account not in self.ctx.ledger.accounts:
            return None if account is None else "joining"
        device = self.ctx.ledger.state(account).device(self.ctx.device.sign_public)
        return device.status.value if device is not None else "joining"

    async def stop(self, params: Empty) -> api.Stopping:
        self._stop()
        return {"stopping": True}
