"""What the web app's handlers call: the node's own services, found in the
daemon's list, plus the web app's own state.  Handlers call the services'
methods directly, in the node's trio loop, with the same parameters and
answers as the control API (PROTOCOL.md §13)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..context import NodeContext
from ..services.accounts import AccountService
from ..services.contacts import ContactService
from ..services.devices import DeviceService
from ..services.linking import LinkService
from ..services.messages import MessageService
from ..services.node import NodeService
from ..services.peers import PeerService
from ..services.reads import ReadMarks
from ..services.trash import TrashService

T = TypeVar("T")


def _one(services: Sequence[object], kind: type[T]) -> T:
    found = [s for s in services if isinstance(s, kind)]
    if len(found) != 1:
        raise LookupError(f"the web app needs exactly one {kind.__name__}")
    return found[0]


@dataclass(frozen=True, slots=True)
class Services:
    ctx: NodeContext
    accounts: AccountService
    devices: DeviceService
    linking: LinkService
    contacts: ContactService
    messages: MessageService
    node: NodeService
    peers: PeerService
    reads: ReadMarks
    trash: TrashService

    @classmethod
    def find(cls, ctx: NodeContext, services: Sequence[object]) -> Services:
        return cls(
            ctx=ctx,
            accounts=_one(services, AccountService),
            devices=_one(services, DeviceService),
            linking=_one(services, LinkService),
            contacts=_one(services, ContactService),
            messages=_one(services, MessageService),
            node=_one(services, NodeService),
            peers=_one(services, PeerService),
            reads=_one(services, ReadMarks),
            trash=_one(services, TrashService),
        )
