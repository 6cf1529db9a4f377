"""Attacker behaviours, and the ground truth the safety figures are judged by.

Each adversary owns some nodes and, where it attacks an account, an
``Attack`` record the simulator fills in as the attack unfolds: which keys
the attacker holds or added, and which revocations the owner issued
against them.  The judge (``metrics``) uses only that record and each
honest node's reported active keys, never the account rules themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol.core.errors import InvalidInput, UnknownAccountError
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.log import authoring
from protocol.log.events import AddDeviceBody, Event, EventKind, build_event
from protocol.log.ledger import Ledger
from protocol.log.state import DeviceStatus
from protocol.sync.wire import EventsFrame, decode_frame, encode_frame

from .engine import Engine, SimNode
from .ledgers import FilteringLedger, ForgingLedger
from .scenario import Adversary as Spec
from .workload import Account, Device, Workload, timestamp


@dataclass(slots=True)
class Attack:
    kind: str
    account: Account
    #: keys the attacker holds or added, in the order it got them
    attacker_keys: list[bytes] = field(default_factory=list)
    #: the owner's revocations of those keys; judged once all are at a node
    owner_batch: list[bytes] = field(default_factory=list)
    #: False: the attacker's keys must never be active anywhere (injection)
    need_batch: bool = True
    #: attack events that were valid and so spread (long-range, theft)
    attacker_events: list[bytes] = field(default_factory=list)
    #: eclipse: the victim node and when it got its first honest peer
    victim: int | None = None
    heal_at: float | None = None
    #: eclipse through the link policy: when the attackers rushed the victim
    eclipse_from: float | None = None
    #: the device the owner acts with (a recover replaces it)
    owner_device: Device | None = None
    recovers: int = 0
    #: the thief also revokes the owner's device (a denial of service that
    #: forces a recover, DESIGN.md §3)
    revoke_owner: bool = False


class Base:
    kind = "base"
    #: its nodes are part of the scenario's topology like honest ones
    in_topology = True

    def __init__(self, sim: Any, spec: Spec, nodes: list[int]) -> None:
        self.sim = sim
        self.spec = spec
        self.p = spec.params
        self.nodes = nodes
        self.attack: Attack | None = None

    @property
    def e(self) -> Engine:
        engine: Engine = self.sim.engine
        return engine

    @property
    def w(self) -> Workload:
        workload: Workload = self.sim.workload
        return workload

    def ledger(self) -> Ledger:
        return Ledger(self.e.params, verify=self.e.verify)

    def setup(self) -> None:
        pass

    def protected(self) -> list[int]:
        """Honest nodes the attack depends on (kept out of churn)."""
        return []

    def f(self, key: str, default: float) -> float:
        return float(self.p.get(key, default))

    def collude(self) -> None:
        """The adversary's nodes know each other's addresses and name only
        each other in peer exchange (their PEERS frames never point at an
        honest node)."""
        mine = set(self.nodes)
        for i in self.nodes:
            node = self.e.nodes[i]
            node.shares = mine.__contains__
            for j in self.nodes:
                if j != i:
                    node.rep.note_addresses(self.e.nodes[j].pid, [self.e.nodes[j].addr])

    def honest_choice(self, exclude: list[int], group: int | None = None) -> int:
        cands = [i for i in self.sim.honest if i not in exclude]
        if group is not None:
            in_group = [i for i in cands if self.sim.group_of(i) == group]
            cands = in_group or cands
        return int(self.e.rng.choice(cands))

    # -- shared steps -----------------------------------------------------------

    def victim_account(self, owner: int, extra_homes: list[int], t: float) -> Account:
        acc = self.w.new_account(owner, managed=False)
        self.w.create_genesis(acc, t, extra_homes)
        return acc

    def owner_revokes(self, attack: Attack, owner: int, t: float) -> None:
        """The owner revokes every attacker key its own view shows as active,
        or, once its own device has been revoked, recovers the account."""

        def job(n: SimNode, now: float) -> list[Any]:
            acc = attack.account
            acc_id = acc.account_id
            assert acc_id is not None
            try:
                log = n.ledger.log(acc_id)
            except UnknownAccountError:
                self.e.at(now + 0.5, lambda t2: self.owner_revokes(attack, owner, t2))
                return []
            me = attack.owner_device or acc.devices[0]
            if me.keys.sign_public not in log.state().active_keys:
                return self._recover(attack, n, now)
            outs: list[Any] = []
            for key in list(attack.attacker_keys):
                rec = log.state().device(key)
                if rec is None or rec.status is not DeviceStatus.ACTIVE:
                    continue
                ev = authoring.revoke_device(
                    self.e.params,
                    acc_id,
                    list(log.heads),
                    me.keys,
                    key,
                    timestamp=timestamp(n, now),
                )
                attack.owner_batch.append(ev.id)
                outs += self.w.publish_built(n, ev, now, True)
            return outs

        self.e.call_on(self.e.nodes[owner], job, t)

    def _recover(self, attack: Attack, n: SimNode, now: float) -> list[Any]:
        acc = attack.account
        assert acc.account_id is not None
        new = self.w.new_device(n.idx, f"r{attack.recovers}")
        nxt = RecoveryKey(self.e.rng.randbytes(32))
        ev = authoring.recover(
            self.e.params,
            acc.account_id,
            list(n.ledger.log(acc.account_id).heads),
            acc.recovery,
            new.keys,
            nxt,
            device_name=new.name,
            timestamp=timestamp(n, now),
        )
        acc.recovery = nxt
        acc.devices.append(new)
        new.added_by = ev.id
        attack.owner_device = new
        attack.recovers += 1
        attack.owner_batch.append(ev.id)
        return self.w.publish_built(n, ev, now, True)

    def owner_watches(self, attack: Attack, owner: int, start: float, end: float) -> None:
        """Every second, the owner's client checks its own device is still
        active and recovers the account if it is not."""

        def fire(t: float) -> None:
            if t > end:
                return

            def job(n: SimNode, now: float) -> list[Any]:
                acc_id = attack.account.account_id
                me = attack.owner_device or attack.account.devices[0]
                if acc_id is None or acc_id not in n.ledger.accounts:
                    return []
                if me.keys.sign_public in n.ledger.state(acc_id).active_keys:
                    return []
                return self._recover(attack, n, now)

            self.e.call_on(self.e.nodes[owner], job, t)
            self.e.at(t + 1.0, fire)

        self.e.at(start, fire)

    def thief_adds(self, attack: Attack, thief: int, t: float, old_parents: bool = False) -> None:
        """The attacker adds a device of its own, signed by a key it holds.

        With ``old_parents`` it attaches to the history where the stolen key
        was added (a long-range fork); otherwise to its current heads.
        """

        def job(n: SimNode, now: float) -> list[Any]:
            acc = attack.account
            assert acc.account_id is not None
            try:
                log = n.ledger.log(acc.account_id)
            except UnknownAccountError:
                self.e.at(now + 0.5, lambda t2: self.thief_adds(attack, thief, t2, old_parents))
                return []
            held = [d for d in acc.devices if d.keys.sign_public in attack.attacker_keys]
            if old_parents:
                signer = held[-1]
                assert signer.added_by is not None
                parents = [signer.added_by]
            else:
                active = log.state().active_keys
                usable = [d for d in held if d.keys.sign_public in active]
                if not usable:
                    return []  # the owner's revocation got here first
                signer = usable[-1]
                parents = list(log.heads)
            dev = self.w.new_device(thief, f"x{len(acc.devices)}")
            dev.compromised = True
            acc.devices.append(dev)
            attack.attacker_keys.append(dev.keys.sign_public)
            intro = authoring.introduce(self.e.params, acc.account_id, dev.keys, dev.name)
            ev = authoring.add_device(
                self.e.params,
                acc.account_id,
                parents,
                signer.keys,
                intro,
                timestamp=timestamp(n, now),
            )
            dev.added_by = ev.id
            attack.attacker_events.append(ev.id)
            outs = self.w.publish_built(n, ev, now, False)
            victim = (attack.owner_device or acc.devices[0]).keys.sign_public
            if attack.revoke_owner and not old_parents and victim in log.state().active_keys:
                rv = authoring.revoke_device(
                    self.e.params,
                    acc.account_id,
                    list(log.heads),
                    signer.keys,
                    victim,
                    timestamp=timestamp(n, now),
                )
                attack.attacker_events.append(rv.id)
                outs += self.w.publish_built(n, rv, now, False)
            return outs

        self.e.call_on(self.e.nodes[thief], job, t)

    def steal(self, attack: Attack, device: Device) -> None:
        device.compromised = True
        attack.attacker_keys.append(device.keys.sign_public)


class StolenDevice(Base):
    """A thief holds a device key and adds its own devices while the owner
    revokes it, on the same or the other side of a partition."""

    kind = "stolen_device"

    def setup(self) -> None:
        thief = self.nodes[0]
        side = str(self.p.get("side", "other"))
        tgroup = self.sim.group_of(thief)
        ngroups = self.sim.group_count()
        ogroup = tgroup if side == "same" or ngroups < 2 else (tgroup + 1) % ngroups
        self.owner = self.honest_choice([], group=ogroup)
        self.holder = self.honest_choice([self.owner], group=ogroup)
        t_create = self.f("create_at", 0.5)
        acc = self.victim_account(self.owner, [self.holder], t_create)
        self.attack = attack = Attack(self.kind, acc)
        attack.revoke_owner = bool(self.p.get("revoke_owner", False))
        t_attack = self.f("attack_at", 8.0)
        if attack.revoke_owner:
            self.owner_watches(attack, self.owner, t_attack, self.sim.sc.duration * 0.8)
        self.e.at(self.f("steal_at", t_attack - 0.5), lambda t: self.steal(attack, acc.devices[1]))
        for k in range(int(self.f("repeats", 3))):
            self.e.at(
                t_attack + k * self.f("interval", 1.0), lambda t: self.thief_adds(attack, thief, t)
            )
        self.e.at(
            self.f("revoke_at", t_attack + 0.2), lambda t: self.owner_revokes(attack, self.owner, t)
        )

    def protected(self) -> list[int]:
        return [self.owner, self.holder]


class SeenPaperKey(Base):
    """A thief saw the paper key (and holds no device).  The owner rotates
    the key (PROTOCOL.md §6.8) on its side of a partition; the thief, on the
    other, recovers with the old key at its heads, then at the genesis (a
    long-range use).  Once a node holds the rotation, no thief key may be
    active there: its recovers are concurrent with the rotation, which
    compromises the account rather than hand it over (§7.2)."""

    kind = "seen_paper_key"

    def setup(self) -> None:
        thief = self.nodes[0]
        ngroups = self.sim.group_count()
        tgroup = self.sim.group_of(thief)
        ogroup = tgroup if ngroups < 2 else (tgroup + 1) % ngroups
        self.owner = self.honest_choice([], group=ogroup)
        self.holder = self.honest_choice([self.owner], group=ogroup)
        acc = self.victim_account(self.owner, [self.holder], self.f("create_at", 0.5))
        self.attack = attack = Attack(self.kind, acc)
        self.seen = acc.recovery  # what the thief copied
        self.e.at(self.f("rotate_at", 5.0), lambda t: self.owner_rotates(attack, t))
        t_attack = self.f("attack_at", 6.0)
        for k in range(int(self.f("repeats", 2))):
            self.e.at(
                t_attack + k * self.f("interval", 10.0),
                lambda t: self.thief_recovers(attack, thief, t),
            )

    def owner_rotates(self, attack: Attack, t: float) -> None:
        def job(n: SimNode, now: float) -> list[Any]:
            acc = attack.account
            acc_id = acc.account_id
            if acc_id is None or acc_id not in n.ledger.accounts:
                self.e.at(now + 0.5, lambda t2: self.owner_rotates(attack, t2))
                return []
            nxt = RecoveryKey(self.e.rng.randbytes(32))
            ev = authoring.rotate_recovery(
                self.e.params,
                acc_id,
                list(n.ledger.log(acc_id).heads),
                acc.devices[0].keys,
                acc.recovery,
                nxt,
                timestamp=timestamp(n, now),
            )
            acc.recovery = nxt
            attack.owner_batch.append(ev.id)
            return self.w.publish_built(n, ev, now, True)

        self.e.call_on(self.e.nodes[self.owner], job, t)

    def thief_recovers(self, attack: Attack, thief: int, t: float) -> None:
        def job(n: SimNode, now: float) -> list[Any]:
            acc_id = attack.account.account_id
            if acc_id is None or acc_id not in n.ledger.accounts:
                self.e.at(now + 0.5, lambda t2: self.thief_recovers(attack, thief, t2))
                return []
            log = n.ledger.log(acc_id)
            # Where the old key is still in force: its heads if the rotation
            # has not reached it, else the genesis (a long-range use).
            fresh = log.state().recovery_commitment == self.seen.commitment
            parents = list(log.heads) if fresh else [acc_id]
            dev = self.w.new_device(thief, f"x{len(attack.attacker_keys)}")
            dev.compromised = True
            ev = authoring.recover(
                self.e.params,
                acc_id,
                parents,
                self.seen,
                dev.keys,
                RecoveryKey(self.e.rng.randbytes(32)),
                device_name=dev.name,
                timestamp=timestamp(n, now),
            )
            attack.attacker_keys.append(dev.keys.sign_public)
            attack.attacker_events.append(ev.id)
            return self.w.publish_built(n, ev, now, False)

        self.e.call_on(self.e.nodes[thief], job, t)

    def protected(self) -> list[int]:
        return [self.owner, self.holder]


class LongRangeFork(Base):
    """A key revoked long ago signs events attached to the history before
    its revocation."""

    kind = "long_range"

    def setup(self) -> None:
        thief = self.nodes[0]
        self.owner = self.honest_choice([])
        self.holder = self.honest_choice([self.owner])
        acc = self.victim_account(self.owner, [self.holder], self.f("create_at", 0.5))
        self.attack = attack = Attack(self.kind, acc)
        self.e.at(self.f("steal_at", 2.0), lambda t: self.steal(attack, acc.devices[1]))
        self.e.at(self.f("revoke_at", 2.5), lambda t: self.owner_revokes(attack, self.owner, t))
        t_attack = self.f("attack_at", 10.0)
        for k in range(int(self.f("repeats", 3))):
            self.e.at(
                t_attack + k * self.f("interval", 1.0),
                lambda t: self.thief_adds(attack, thief, t, old_parents=True),
            )

    def protected(self) -> list[int]:
        return [self.owner, self.holder]


class KeyInjection(Base):
    """Forged add-device events for a victim account: unauthorised signers
    and forged signatures in the owner's name."""

    kind = "key_injection"

    def ledger(self) -> Ledger:
        return ForgingLedger(self.e.params, self.e.verify)

    def setup(self) -> None:
        self.owner = self.honest_choice([])
        acc = self.victim_account(self.owner, [], self.f("create_at", 0.5))
        self.attack = Attack(self.kind, acc, need_batch=False)
        t = self.f("attack_at", 3.0)
        for k in range(int(self.f("repeats", 3))):
            for i, node in enumerate(self.nodes):
                self.e.at(t + k * self.f("interval", 1.0) + i * 0.01, self._forge(node))

    def _forge(self, node: int) -> Callable[[float], None]:
        def fire(t: float) -> None:
            self.e.call_on(self.e.nodes[node], self._job, t)

        return fire

    def _job(self, n: SimNode, now: float) -> list[Any]:
        attack = self.attack
        assert attack is not None
        acc = attack.account
        if acc.account_id is None or not n.ledger.has(acc.account_id):
            return []
        params, rng = self.e.params, self.e.rng
        heads = list(n.ledger.log(acc.account_id).heads)
        outs: list[Any] = []
        mallory = DeviceKeys.from_random(rng.randbytes(64))
        owner = acc.devices[0].keys
        for style in ("unauthorised", "forged_signature"):
            new = DeviceKeys.from_random(rng.randbytes(64))
            attack.attacker_keys.append(new.sign_public)
            intro = authoring.introduce(params, acc.account_id, new, "injected")
            claimed = mallory.sign_public if style == "unauthorised" else owner.sign_public
            ev = build_event(
                params,
                account=acc.account_id,
                parents=heads,
                timestamp=timestamp(n, now),
                body=AddDeviceBody(intro),
                signer_public=claimed,
                sign=mallory.sign,
            )
            outs += self.w.publish_built(n, ev, now, False)
        return outs


class Eclipse(Base):
    """Every peer of the victim is an attacker that withholds the owner's
    revocation of a stolen device; at ``heal_at`` the victim gets one
    honest peer.

    Made by hand, as if the victim's bootstrap list named only attackers:
    its topology edges go, the attackers go on its bootstrap list (its own
    outbound links, which need only a free slot: the link policy rightly
    does not stand in their way), and they name only each other in peer
    exchange, so the victim learns no honest peer.  At ``heal_at`` an honest
    helper joins its bootstrap list; peer exchange with it does the rest.
    ``eclipse_sybil`` is the eclipse the link policy has to stop."""

    kind = "eclipse"

    def ledger(self) -> Ledger:
        def hide(event: Event) -> bool:
            acc = self.attack.account.account_id if self.attack is not None else None
            return event.kind is EventKind.REVOKE_DEVICE and event.account == acc

        return FilteringLedger(self.e.params, self.e.verify, hide)

    def setup(self) -> None:
        self.victim = self.honest_choice([])
        self.owner = self.honest_choice([self.victim])
        self.holder = self.honest_choice([self.victim, self.owner])
        self.collude()
        for j in self.e.neighbours(self.victim):
            self.e.remove_edge(self.victim, j, 0.0)
        for a in self.nodes:
            self.e.add_edge(self.victim, a, 0.0)
        attack = self._theft(self.f("attack_at", 4.0))
        heal = self.f("heal_at", 20.0)
        attack.heal_at = heal
        helper = self.honest_choice([self.victim])
        self.e.at(heal, lambda t: self.e.add_edge(self.victim, helper, t))

    def _theft(self, t_attack: float) -> Attack:
        """The victim's account; its second device is stolen and the thief
        (the first attacker node) adds devices while the owner revokes it."""
        thief = self.nodes[0]
        acc = self.victim_account(self.owner, [self.holder], self.f("create_at", 0.5))
        self.attack = attack = Attack(self.kind, acc, victim=self.victim)
        self.e.at(t_attack - 0.5, lambda t: self.steal(attack, acc.devices[1]))
        for k in range(int(self.f("repeats", 2))):
            self.e.at(t_attack + k, lambda t: self.thief_adds(attack, thief, t))
        self.e.at(t_attack + 0.2, lambda t: self.owner_revokes(attack, self.owner, t))
        return attack

    def protected(self) -> list[int]:
        return [self.victim, self.owner, self.holder]


class EclipseSybil(Eclipse):
    """Eclipse through the real link policy.  Many attacker nodes in a few
    /16s of their own (``groups``) wait for the victim to restart
    (``restart_at``, down for ``down`` seconds); their connection attempts
    land the moment it listens again, before any dial of its own, and they
    keep dialling every ``redial`` seconds.  They name only each other in
    peer exchange and withhold the owner's revocation of a stolen device.
    The victim keeps its honest topology neighbours and bootstrap list:
    whether it holds honest links is up to its link manager (inbound caps
    per network group, slots kept for its own dials, outbound diversity).

    The Sybils stand outside the scenario's topology (among so many, an
    honest node whose every topology neighbour is a Sybil would be
    eclipsed by accident); each joins the network by dialling ``joins``
    honest nodes other than the victim, which gives them every event to
    relay but the withheld ones."""

    kind = "eclipse_sybil"
    in_topology = False

    def setup(self) -> None:
        self.victim = self.honest_choice([])
        self.owner = self.honest_choice([self.victim])
        self.holder = self.honest_choice([self.victim, self.owner])
        self.collude()
        others = [i for i in self.sim.honest if i != self.victim]
        for a in self.nodes:
            for h in self.e.rng.sample(others, min(len(others), int(self.f("joins", 2)))):
                self.e.add_edge(a, h, 0.0)
        down = self.f("restart_at", 2.0)
        up = down + self.f("down", 1.0)
        self.redial = self.f("redial", 4.0)
        attack = self._theft(self.f("attack_at", 5.0))
        attack.eclipse_from = up
        self.e.at(down, lambda t: self.e.node_down(self.victim, t))
        self.e.at(up, self._rush)

    def _rush(self, t: float) -> None:
        self.e.node_up(self.victim, t)
        for a in self.nodes:  # dialled while it was down: set up already
            self.e.connect(a, self.victim, t, setup=0.0)
        self.e.at(t + self.redial, self._hammer)

    def _hammer(self, t: float) -> None:
        if t >= self.sim.sc.duration:
            return
        for a in self.nodes:
            if self.victim not in self.e.nodes[a].peers:
                self.e.connect(a, self.victim, t)
        self.e.at(t + self.redial, self._hammer)


class Censor(Base):
    """Attackers that never forward: 'blackhole' ones refuse every event,
    'silent' ones send nothing at all."""

    kind = "censorship"

    def ledger(self) -> Ledger:
        if str(self.p.get("mode", "blackhole")) == "blackhole":
            return FilteringLedger(self.e.params, self.e.verify, lambda ev: True)
        return super().ledger()

    def setup(self) -> None:
        if str(self.p.get("mode", "blackhole")) != "blackhole":
            for i in self.nodes:
                self.e.nodes[i].send_filter = lambda dst, frame: False


class SybilFlood(Base):
    """Many attacker nodes sending junk frames and invalid events."""

    kind = "sybil_flood"

    def ledger(self) -> Ledger:
        return ForgingLedger(self.e.params, self.e.verify)

    def setup(self) -> None:
        start, interval = self.f("start", 1.0), self.f("interval", 1.0)
        end = self.f("end", self.sim.sc.duration * 0.8)
        for i in self.nodes:
            self.e.at(start + self.e.rng.uniform(0, interval), self._loop(i, interval, end))

    def _loop(self, i: int, interval: float, end: float) -> Callable[[float], None]:
        def fire(t: float) -> None:
            if t > end:
                return
            node = self.e.nodes[i]
            rng = self.e.rng
            for j in self.e.connected_peers(i):
                self.e.transmit(node, j, rng.randbytes(rng.randint(1, 512)), t)
            self.e.call_on(node, self._invalid_event, t)
            self.e.at(t + interval, fire)

        return fire

    def _invalid_event(self, n: SimNode, now: float) -> list[Any]:
        rng, params = self.e.rng, self.e.params
        known = sorted(n.ledger.accounts)
        mallory = DeviceKeys.from_random(rng.randbytes(64))
        new = DeviceKeys.from_random(rng.randbytes(64))
        if known and rng.random() < 0.5:
            account = rng.choice(known)
            parents = list(n.ledger.log(account).heads)
        else:  # an account nobody has: parents missing, fills escrow
            account, parents = rng.randbytes(32), [rng.randbytes(32)]
        intro = authoring.introduce(params, account, new, "sybil")
        ev = build_event(
            params,
            account=account,
            parents=parents,
            timestamp=timestamp(n, now),
            body=AddDeviceBody(intro),
            signer_public=mallory.sign_public,
            sign=mallory.sign,
        )
        outs: list[Any] = n.rep.publish(ev.raw, n.now(now))
        return outs


class Replay(Base):
    """Attackers that record frames and events and replay them later.

    ``mode = "frames"`` (the default) replays whole frames as received;
    ``mode = "events"`` keeps the valid events it received and replays them
    in EVENTS frames of ``per_frame`` each (a replay flood: every one a
    real event with a good signature, which a node that verified before its
    duplicate check would pay for each time)."""

    kind = "replay"

    def setup(self) -> None:
        self.recorded: dict[int, list[bytes]] = {}
        start, interval = self.f("start", 3.0), self.f("interval", 1.0)
        self.events_mode = str(self.p.get("mode", "frames")) == "events"
        self.per_frame = int(self.f("per_frame", 50))
        self.replayed_events = 0
        for i in self.nodes:
            rec: list[bytes] = []
            self.recorded[i] = rec
            self.e.nodes[i].on_frame = self._recorder(rec)
            self.e.at(start + self.e.rng.uniform(0, interval), self._loop(i, interval))

    def _recorder(self, rec: list[bytes]) -> Callable[[int, bytes, float], None]:
        def record(src: int, frame: bytes, t: float) -> None:
            if len(rec) >= 5000:
                return
            if not self.events_mode:
                rec.append(frame)
                return
            try:
                f = decode_frame(frame)
            except InvalidInput:
                return
            if isinstance(f, EventsFrame):
                rec.extend(f.events[: 5000 - len(rec)])

        return record

    def _replay_frame(self, rec: list[bytes]) -> bytes:
        if not self.events_mode:
            return self.e.rng.choice(rec)
        batch = tuple(self.e.rng.choice(rec) for _ in range(self.per_frame))
        self.replayed_events += len(batch)
        return encode_frame(EventsFrame(batch))

    def figures(self) -> dict[str, Any]:
        return {"replayed_events": self.replayed_events}

    def _loop(self, i: int, interval: float) -> Callable[[float], None]:
        burst = int(self.f("burst", 5))
        end = self.f("end", self.sim.sc.duration * 0.8)

        def fire(t: float) -> None:
            if t > end:
                return
            rec = self.recorded[i]
            node = self.e.nodes[i]
            if rec:
                for j in self.e.connected_peers(i):
                    for _ in range(burst):
                        self.e.transmit(node, j, self._replay_frame(rec), t)
            self.e.at(t + interval, fire)

        return fire


KINDS: dict[str, type[Base]] = {
    cls.kind: cls
    for cls in (
        StolenDevice,
        SeenPaperKey,
        LongRangeFork,
        KeyInjection,
        Eclipse,
        EclipseSybil,
        Censor,
        SybilFlood,
        Replay,
    )
}
