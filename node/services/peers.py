"""Peers: the ``peers.*`` namespace (PROTOCOL.md §13, §17)."""

from __future__ import annotations

from collections.abc import Callable

from .. import control
from ..api import node as api
from ..api.schema import Empty
from ..control import RpcFailure
from ..errors import NodeUsageError, PeerUnreachable
from ..links import LinkService


class PeerService:
    def __init__(self, links: LinkService, score: Callable[[str], float]) -> None:
        self.links = links
        #: peer -> replication score (``Replicator.score``)
        self.score = score

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "peers.list": api.PEERS_LIST.bind(self.list),
            "peers.connect": api.PEERS_CONNECT.bind(self.connect),
            "peers.disconnect": api.PEERS_DISCONNECT.bind(self.disconnect),
            "peers.refuse": api.PEERS_REFUSE.bind(self.refuse),
            "peers.unrefuse": api.PEERS_UNREFUSE.bind(self.unrefuse),
        }

    async def list(self, params: Empty) -> api.PeerList:
        return {
            "peers": [
                {
                    "peer_id": p,
                    "score": round(float(self.score(p)), 3),
                    "direction": "outbound" if link.outbound else "inbound",
                    # through a circuit relay, or direct (after hole punching too)
                    "connection": f"relayed via {link.relay}" if link.relay else "direct",
                }
                for p, link in sorted(self.links.links.items())
            ],
            "refused": sorted(self.links.manager.refused),
        }

    async def connect(self, params: api.ConnectParams) -> api.Connected:
        addr = params["addr"]
        try:
            peer, connected = await self.links.connect(addr)
        except NodeUsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        except PeerUnreachable as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        return {"peer_id": peer, "connected": connected}

    async def disconnect(self, params: api.PeerParams) -> api.Disconnected:
        peer = params["peer"]
        try:
            await self.links.disconnect(peer)
        except NodeUsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        return {"peer_id": peer, "disconnected": True}

    async def refuse(self, params: api.PeerParams) -> api.Refused:
        await self.links.refuse(params["peer"])
        return {"refused": sorted(self.links.manager.refused)}

    async def unrefuse(self, params: api.PeerParams) -> api.Refused:
        self.links.unrefuse(params["peer"])
        return {"refused": sorted(self.links.manager.refused)}
