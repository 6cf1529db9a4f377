"""Scenario files: what a simulation runs (TOML, see simnet/scenarios/).

Every section is optional and has defaults, so a scenario states only what
it is about.  Node sets (partition groups, adversaries) are given as
fractions of the node count or as counts, so ``--nodes`` can rescale a
scenario without editing it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from protocol.core.errors import UsageError
from protocol.links.policy import LinkLimits


@dataclass(frozen=True, slots=True)
class Distribution:
    """A latency distribution in seconds: constant, uniform or log-normal."""

    kind: str = "constant"
    value: float = 0.05  # constant
    low: float = 0.0  # uniform
    high: float = 0.0
    median: float = 0.05  # log-normal: median and sigma of the underlying normal
    sigma: float = 0.5


@dataclass(frozen=True, slots=True)
class Topology:
    kind: str = "random_regular"  # random_regular | small_world | line | edges
    degree: int = 8
    rewire: float = 0.1  # small_world
    edges: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Cpu:
    """Virtual CPU time a node spends per job (seconds; ``simnet.cpu``).

    The last three were measured with ``simnet calibrate`` (simnet/cpu.py)
    on the shared 2-core development machine, Python 3.11 and libsodium,
    the fastest of five runs (it was busy: runs ranged up to twice these):
    ``verify_event`` of an event with one signature, 97 us; the incremental
    check and apply of an event extending the heads, 3.8 us; each event a
    full re-evaluation of the account rules visits, 8.9 us (fitted to
    appends of siblings at width 2,000; at width 300 this predicts 2.3 ms
    an append where 1.5 ms was measured).  ``per_frame`` and ``per_event``
    are framing and bookkeeping around them, not measured."""

    per_frame: float = 0.00005
    per_byte: float = 0.0
    #: each output of a job other than a Send
    per_event: float = 0.00005
    #: each Ed25519 verification (an intro's proof of possession is one more)
    per_signature: float = 0.0001
    #: each event checked against the account rules
    per_evaluation: float = 0.000004
    #: each event a full re-evaluation of an account's rules visits
    per_evaluated_event: float = 0.000009
    #: each envelope opened (``open_envelope`` of a 200-byte text: 1.7 ms
    #: measured by ``simnet calibrate``, the fastest of three runs)
    per_open: float = 0.0017


@dataclass(frozen=True, slots=True)
class Workload:
    accounts: int = 10
    events: int = 60  # honest events in total, genesis included
    start: float = 0.5
    end: float = 20.0
    #: relative weights of the change kinds after genesis
    add: float = 0.5
    revoke: float = 0.2
    profile: float = 0.3
    #: probability that a change is paired with a concurrent one from
    #: another device of the same account on another node
    concurrent: float = 0.1
    #: end-to-end encrypted messages between accounts (simnet/messages.py)
    messages: int = 0
    message_bytes: int = 200
    #: the share of devices whose records advertise wrap scheme 2 (§19.13):
    #: messages to them go over ratchet sessions (simnet/sessions.py)
    scheme2_share: float = 1.0


@dataclass(frozen=True, slots=True)
class MailboxTraffic:
    """Deposits at one mailbox (simnet/mailboxes.py); 0 deposits: none."""

    #: contacts' deposits in total (each with a one-time token)
    deposits: int = 0
    contacts: int = 3
    start: float = 4.0
    end: float = 20.0
    #: an honest stranger deposits without a token this often (0: never)
    stranger_interval: float = 2.0
    message_bytes: int = 200
    #: ``MailboxLimits`` fields to override
    limits: dict[str, Any] = field(default_factory=dict)
    #: what a stranger's share is counted by: "network_group" (§15.17), or
    #: "peer_id" (the defence removed: every fresh id is a new stranger)
    group_by: str = "network_group"


@dataclass(frozen=True, slots=True)
class Partition:
    start: float
    end: float
    #: [low, high) fractions of the node index range; nodes outside every
    #: group form one more group
    groups: tuple[tuple[float, float], ...] = ((0.0, 0.5),)
    #: only frames from a lower-numbered group to a higher one are lost
    asymmetric: bool = False


@dataclass(frozen=True, slots=True)
class Churn:
    fraction: float = 0.1
    start: float = 2.0
    end: float = 20.0
    down_min: float = 1.0
    down_max: float = 8.0
    cycles: int = 1


@dataclass(frozen=True, slots=True)
class Network:
    """Where nodes are (simulated IPv4 addresses: strings, never dialled for
    real), and whom they dial first."""

    #: honest nodes per /16 network group (each group drawn from a seeded
    #: pool of global-looking /16s); adversaries take groups of their own
    #: (their parameter ``groups``, default 1)
    honest_per_group: int = 1
    #: honest nodes (seeded choice) that every node has on its bootstrap
    #: list beside the topology edges it dials; 0: the topology alone
    bootstrap: int = 0


@dataclass(frozen=True, slots=True)
class Defences:
    """Defences a scenario may turn off, to show what each is worth."""

    #: a replayed event the node holds is dropped before its signature is
    #: checked (``Ledger.held_raw``, PROTOCOL.md §8); off: verified again
    dedup_before_verify: bool = True
    #: unsolicited duplicates beyond a per-peer allowance slow the peer,
    #: then cost it its link (§11.5.2); off: an allowance nobody exhausts
    duplicate_allowance: bool = True


@dataclass(frozen=True, slots=True)
class Adversary:
    kind: str
    count: int = 0
    fraction: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def size(self, nodes: int) -> int:
        n = self.count if self.count else round(self.fraction * nodes)
        return max(n, 1)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    seed: int = 1
    nodes: int = 30
    duration: float = 60.0
    sample_interval: float = 1.0
    #: compute state digests every this many samples (they cost the most)
    digest_every: int = 1
    network_id: str = "smu-sim"
    topology: Topology = Topology()
    latency: Distribution = Distribution()
    loss: float = 0.0
    bandwidth: float = 0.0  # bytes per second per link direction; 0: unlimited
    clock_skew: float = 0.0  # each node's clock is off by up to this many seconds
    cpu: Cpu = Cpu()
    defences: Defences = Defences()
    #: fields of ``NetworkParams`` to override (e.g. an event cap)
    params: dict[str, Any] = field(default_factory=dict)
    replication: dict[str, Any] = field(default_factory=dict)
    workload: Workload = Workload()
    mailbox: MailboxTraffic = MailboxTraffic()
    partitions: tuple[Partition, ...] = ()
    churn: Churn | None = None
    adversaries: tuple[Adversary, ...] = ()
    network: Network = Network()
    #: every node's link manager (protocol.links.manager): slots and caps
    link_limits: LinkLimits = field(default_factory=LinkLimits)
    #: also run the scenario without its adversaries (same honest nodes)
    #: and report its delivery and latency beside this run's
    compare_baseline: bool = False

    def with_overrides(self, seed: int | None = None, nodes: int | None = None) -> Scenario:
        s = self
        if seed is not None:
            s = replace(s, seed=seed)
        if nodes is not None:
            s = replace(s, nodes=nodes)
        return s

    def without_attackers(self) -> Scenario:
        """The same scenario with its honest nodes only."""
        honest = self.nodes - sum(a.size(self.nodes) for a in self.adversaries)
        return replace(self, nodes=honest, adversaries=(), compare_baseline=False)


def _section(data: dict[str, Any], key: str, cls: Any) -> Any:
    raw = data.get(key)
    if raw is None:
        return cls()
    try:
        return cls(**raw)
    except TypeError as exc:
        raise UsageError(f"[{key}]: {exc}") from exc


def from_dict(data: dict[str, Any]) -> Scenario:
    try:
        topo_raw = dict(data.get("topology", {}))
        if "edges" in topo_raw:
            topo_raw["edges"] = tuple((int(a), int(b)) for a, b in topo_raw["edges"])
        partitions = tuple(
            Partition(
                start=float(p["start"]),
                end=float(p["end"]),
                groups=tuple((float(a), float(b)) for a, b in p.get("groups", [[0.0, 0.5]])),
                asymmetric=bool(p.get("asymmetric", False)),
            )
            for p in data.get("partitions", [])
        )
        adversaries = tuple(
            Adversary(
                kind=str(a["kind"]),
                count=int(a.get("count", 0)),
                fraction=float(a.get("fraction", 0.0)),
                params={k: v for k, v in a.items() if k not in ("kind", "count", "fraction")},
            )
            for a in data.get("adversaries", [])
        )
        return Scenario(
            name=str(data.get("name", "unnamed")),
            seed=int(data.get("seed", 1)),
            nodes=int(data.get("nodes", 30)),
            duration=float(data.get("duration", 60.0)),
            sample_interval=float(data.get("sample_interval", 1.0)),
            digest_every=int(data.get("digest_every", 1)),
            network_id=str(data.get("network_id", "smu-sim")),
            topology=Topology(**topo_raw),
            latency=_section(data, "latency", Distribution),
            loss=float(data.get("loss", 0.0)),
            bandwidth=float(data.get("bandwidth", 0.0)),
            clock_skew=float(data.get("clock_skew", 0.0)),
            cpu=_section(data, "cpu", Cpu),
            defences=_section(data, "defences", Defences),
            params=dict(data.get("params", {})),
            replication=dict(data.get("replication", {})),
            workload=_section(data, "workload", Workload),
            mailbox=_section(data, "mailbox", MailboxTraffic),
            partitions=partitions,
            churn=Churn(**data["churn"]) if "churn" in data else None,
            adversaries=adversaries,
            network=_section(data, "network", Network),
            link_limits=_section(data, "link_limits", LinkLimits),
            compare_baseline=bool(data.get("compare_baseline", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"bad scenario: {exc!r}") from exc


def load(path: str | Path) -> Scenario:
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: {exc}") from exc
    if "name" not in data:
        data["name"] = Path(path).stem
    return from_dict(data)


SCENARIO_DIR = Path(__file__).parent / "scenarios"


def builtin(name: str) -> Path:
    return SCENARIO_DIR / f"{name}.toml"
