"""The node and its network: ``node.*``, ``peers.*``, ``event.*``,
``mailbox.*`` and ``web.*`` (PROTOCOL.md §13)."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypedDict

from .schema import Empty, JsonObject, Method


class GateStatus(TypedDict):
    admitted: Annotated[dict[str, int], "by protocol"]
    refused: Annotated[dict[str, int], 'by `"<protocol>: <reason>"`']


class ChannelStatus(TypedDict):
    open: Annotated[list[str], "the peers with a channel"]
    unhandled_items: int
    deliveries: Annotated[dict[str, int], "§15.14.1: envelopes and answers on channels"]


class DiskStatus(TypedDict):
    used_bytes: int
    budget_bytes: Annotated[int | None, "null: no budget set"]
    disk_free_bytes: int
    full: Annotated[bool, "the node accepts nothing new while true"]
    reason: Annotated[str | None, "why it is full"]


class ClockStatus(TypedDict):
    peers_asked: int
    median_offset_ms: Annotated[int | None, "null until enough peers answered"]
    warning: Annotated[bool, "the clock disagrees with the peers' median"]


class LinkStats(TypedDict):
    admitted: int
    rejected: Annotated[dict[str, int], "by refusal"]
    dials: int
    dial_failures: int
    bans: int
    evicted: int
    idle_closed: int
    bare_closed: int
    refused_connections: int


DiskPart = Annotated[DiskStatus, "§13.3"]
ClockPart = Annotated[ClockStatus, "§13.3"]
MetricsPart = Annotated[int | None, "§13.3; null when metrics are off"]
ReachPart = Annotated[JsonObject, "§17.4: reachability, relays and dial hygiene"]


class NodeStatusParts(TypedDict):
    """The parts of ``node.status`` the daemon adds (§13.3, §17.4)."""

    disk: DiskPart
    clock: ClockPart
    metrics_port: MetricsPart
    reachability: ReachPart


class NodeStatus(TypedDict):
    device_status: Annotated[
        str | None,
        "this device in its account: `active`, `revoked`, `void`, `removed_by_recovery`,"
        " `compromised` (§7.4); `joining` while the account's log does not hold it yet;"
        " null without an account",
    ]
    peer_id: str
    network: str
    listen: Annotated[list[str], "multiaddrs"]
    peers: int
    events: int
    accounts: int
    escrow: int
    event_set_digest: Annotated[
        str, "the §11.3 fingerprint of the whole id space: equal digests mean equal sets"
    ]
    account: Annotated[str | None, "this device's, or null"]
    device_fingerprint: str
    replication: Annotated[dict[str, int], "the §11.6 counters"]
    links: Annotated[LinkStats, "§17.1"]
    channels: Annotated[ChannelStatus, "§17.3"]
    gate: Annotated[GateStatus, "§17.2"]
    disk: DiskPart
    clock: ClockPart
    metrics_port: MetricsPart
    reachability: ReachPart


class Stopping(TypedDict):
    stopping: bool


class PeerLink(TypedDict):
    peer_id: str
    score: float
    direction: Literal["outbound", "inbound"]
    connection: Annotated[str, "`direct` or `relayed via <relay>`"]


class PeerList(TypedDict):
    peers: list[PeerLink]
    refused: list[str]


class ConnectParams(TypedDict):
    addr: Annotated[str, "multiaddr with `/p2p/`"]


class Connected(TypedDict):
    peer_id: str
    connected: bool


class PeerParams(TypedDict):
    peer: Annotated[str, "a peer id"]


class Disconnected(TypedDict):
    peer_id: str
    disconnected: bool


class Refused(TypedDict):
    refused: Annotated[list[str], "the refused list"]


class SubmitParams(TypedDict):
    event: Annotated[str, "hex of a signed event"]


class Submitted(TypedDict):
    status: Annotated[str, "`accepted`, `duplicate` or `escrowed`"]
    event_id: str


class IdsParams(TypedDict):
    ids: Annotated[list[str], "hex ids"]


class Present(TypedDict):
    present: Annotated[list[str], "the ids this node stores"]


class MailboxDevice(TypedDict):
    bytes: int
    items: int
    stranger_bytes: int
    stranger_items: int


class MailboxStatus(TypedDict):
    tokens_held: Annotated[int, "the tokens this device holds for other devices' mailboxes"]
    bytes: NotRequired[int]
    items: NotRequired[int]
    spent_tokens: NotRequired[int]
    devices: NotRequired[Annotated[dict[str, MailboxDevice], "per device key"]]


class WebLaunch(TypedDict):
    port: int
    url: str
    code: str
    expires_at_ms: int


class WebStatus(TypedDict):
    enabled: bool
    port: NotRequired[int | None]
    url: NotRequired[str | None]
    error: NotRequired[str | None]
    sessions: NotRequired[int]
    live_pages: NotRequired[int]
    connections: NotRequired[int]


NODE_STATUS = Method("node.status", Empty, NodeStatus)
NODE_STOP = Method(
    "node.stop", Empty, Stopping, "`stopping` is true; the daemon closes its links and exits"
)
PEERS_LIST = Method("peers.list", Empty, PeerList)
PEERS_CONNECT = Method(
    "peers.connect",
    ConnectParams,
    Connected,
    "a failed dial is error 2, `could not connect to <addr>: <cause>`, the cause in a few words"
    " (`connection refused`, `timed out`, ...)",
)
PEERS_DISCONNECT = Method("peers.disconnect", PeerParams, Disconnected)
PEERS_REFUSE = Method(
    "peers.refuse",
    PeerParams,
    Refused,
    "a refused peer is disconnected, neither dialled nor accepted, and refused on every protocol"
    " (§17.2)",
)
PEERS_UNREFUSE = Method("peers.unrefuse", PeerParams, Refused)
EVENT_SUBMIT = Method(
    "event.submit", SubmitParams, Submitted, "answered only after the event is durable"
)
EVENT_HAS = Method("event.has", IdsParams, Present)
MAILBOX_STATUS = Method(
    "mailbox.status",
    Empty,
    MailboxStatus,
    "what this node's mailbox holds (§15.16); only `tokens_held` before the mailbox runs",
)
WEB_LAUNCH = Method(
    "web.launch",
    Empty,
    WebLaunch,
    "a one-time launch code for the web app (§13.1), valid about a minute; a secret",
)
WEB_STATUS = Method(
    "web.status",
    Empty,
    WebStatus,
    "only `enabled` (false) for a node run with `--no-web` (or `web = false`, §13.3)",
)

METHODS = (
    NODE_STATUS,
    NODE_STOP,
    PEERS_LIST,
    PEERS_CONNECT,
    PEERS_DISCONNECT,
    PEERS_REFUSE,
    PEERS_UNREFUSE,
    EVENT_SUBMIT,
    EVENT_HAS,
    MAILBOX_STATUS,
    WEB_LAUNCH,
    WEB_STATUS,
)
