"""The narrow interfaces node services depend on (DESIGN §2).

Services (one per control-API namespace, ``node/services/``) never see the
``Daemon``: they get a ``NodeContext``, which the daemon implements, and
what else they need by name at construction.  This module holds only
``Protocol`` classes and small value types, so every module may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from protocol.core.keys import DeviceKeys
from protocol.core.params import NetworkParams
from protocol.log.ledger import Ledger
from protocol.records.device import RecordBook


class Stream(Protocol):
    """What node code uses of a libp2p stream (``Any`` stays at that boundary)."""

    async def read(self, n: int = -1) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Published:
    """A local event after it was ingested and committed."""

    status: str  # accepted | duplicate | escrowed (protocol.log.ledger.IngestStatus)
    event_id: str


class DepositStreams(Protocol):
    """Streams to a mailbox under this node's identity at that mailbox, never
    its own (``node.deposit_hosts.DepositHosts``, PROTOCOL.md §15.13.1)."""

    def stream(
        self, mailbox_peer: str, addrs: Sequence[str], protocol: str
    ) -> AbstractAsyncContextManager[Any]:
        """Open on entering, closed on leaving; raises
        ``node.errors.PeerUnreachable``."""
        ...


class ContactSetView(Protocol):
    """The account-level contact set: the one answer to "is this a contact"
    (DESIGN §10).  ``node.services.contacts.ContactSet`` implements it."""

    def is_contact(self, account: bytes) -> bool: ...

    def is_blocked(self, account: bytes) -> bool: ...

    def label(self, account: bytes) -> str: ...


class NodeContext(Protocol):
    """What a service may ask of the node."""

    @property
    def params(self) -> NetworkParams: ...

    @property
    def device(self) -> DeviceKeys:
        """This device's keys."""
        ...

    @property
    def node_seed(self) -> bytes:
        """The seed of the node's libp2p identity key."""
        ...

    @property
    def data_path(self) -> Path: ...

    @property
    def ledger(self) -> Ledger:
        """Read-only for services: new events go through ``publish``."""
        ...

    @property
    def records(self) -> RecordBook:
        """The newest valid device record per device (PROTOCOL.md §16)."""
        ...

    @property
    def contacts(self) -> ContactSetView: ...

    @property
    def peer_id(self) -> str: ...

    @property
    def device_name(self) -> str: ...

    def account(self) -> bytes | None:
        """This device's account, if it has one."""
        ...

    def own_account(self) -> bytes:
        """This device's account, or the control API's one-line refusal."""
        ...

    def set_account(self, account: bytes) -> None:
        """This device now belongs to ``account`` (saved to config.json)."""
        ...

    def device_active(self) -> bool: ...

    def resolve_account(self, ref: str | None) -> bytes:
        """An account by id or handle (suffix); None: our own."""
        ...

    async def publish(self, raw: bytes) -> Published:
        """Ingest a local event, commit it, then forward it."""
        ...

    def publish_own_record(self) -> None:
        """Sign and flood where this device can be reached."""
        ...

    def addresses(self) -> list[str]:
        """Our listen addresses, each with ``/p2p/<peer id>``."""
        ...

    def linked_peers(self) -> list[str]: ...

    def peer_addresses(self, peer: str) -> list[str]:
        """Addresses libp2p knows for ``peer``."""
        ...

    async def dial(self, addr: str) -> str:
        """Open a link with the peer at ``addr`` (with ``/p2p/``); its peer id."""
        ...

    async def open_stream(self, peer: str, addrs: Sequence[str], protocol: str) -> Any:
        """A new stream to ``peer`` on ``protocol``, dialling ``addrs`` if
        there is no connection (raises ``node.errors.PeerUnreachable``)."""
        ...

    def notify(self, note: dict[str, object]) -> None:
        """Tell control-API subscribers (``inbox --follow`` and tests)."""
        ...
