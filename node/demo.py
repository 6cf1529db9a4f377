"""`smu demo`: the account story of DESIGN.md §3, told step by step.

Three replicas (each a ``protocol.Ledger``, as every node holds) receive the
events in different orders, including both sides of a partition, and end in
byte-identical states.  The network version of this demo replaces the
in-process replicas with nodes on loopback.
"""

from __future__ import annotations

import json
import os
import sys
import time

from protocol import authoring
from protocol.events import Event
from protocol.keys import DeviceKeys, RecoveryKey, handle
from protocol.ledger import Ledger
from protocol.names import sanitise
from protocol.params import TESTNET, NetworkParams
from protocol.state import AccountState


def _keys() -> DeviceKeys:
    return DeviceKeys.from_random(os.urandom(64))


class Story:
    def __init__(self, params: NetworkParams, as_json: bool) -> None:
        self.params = params
        self.as_json = as_json
        self.replicas = {name: Ledger(params) for name in ("node-a", "node-b", "node-c")}
        self.clock = int(time.time() * 1000)

    def now(self) -> int:
        self.clock += 1000
        return self.clock

    def say(self, step: str, text: str, **data: object) -> None:
        if self.as_json:
            print(json.dumps({"step": step, "text": text, **data}), flush=True)
        else:
            print(f"\n== {text}")

    def deliver(self, events: list[Event], to: list[str] | None = None) -> None:
        for name in to or list(self.replicas):
            for e in events:
                self.replicas[name].ingest(e.raw)

    def show(self, account: bytes, node: str = "node-a") -> AccountState:
        state = self.replicas[node].state(account)
        devices = [
            {
                "name": d.name,
                "fingerprint": d.fingerprint,
                "status": d.status.value,
                "approved_by": self.name_of(state, d.approver),
            }
            for d in state.devices
        ]
        if self.as_json:
            print(
                json.dumps(
                    {
                        "node": node,
                        "account": handle(state.display_name, account),
                        "status": state.status.value,
                        "devices": devices,
                        "state_digest": state.digest.hex(),
                    }
                ),
                flush=True,
            )
        else:
            print(
                f"   {node} sees {sanitise(handle(state.display_name, account))} "
                f"[{state.status.value}]"
            )
            for d in devices:
                print(
                    f"     {d['status']:<20} {sanitise(str(d['name'])):<12} {d['fingerprint']}"
                    f"  approved by {d['approved_by']}"
                )
            for v in state.voided:
                print(f"     void event {v.event_id.hex()[:12]}: {v.explain()}")
        return state

    @staticmethod
    def name_of(state: AccountState, key: bytes) -> str:
        d = state.device(key)
        return sanitise(d.name) if d is not None else "recovery key"

    def converge(self, account: bytes) -> None:
        digests = {n: r.state(account).digest.hex() for n, r in self.replicas.items()}
        same = len(set(digests.values())) == 1
        self.say(
            "converge",
            f"all replicas agree: {same} (state digest {next(iter(digests.values()))[:16]})",
            digests=digests,
            converged=same,
        )
        if not same:
            raise SystemExit("replicas disagree: this is a bug")


def run(as_json: bool = False, params: NetworkParams = TESTNET) -> int:
    s = Story(params, as_json)
    alice_phone, alice_rk = _keys(), RecoveryKey(os.urandom(32))
    g_alice = authoring.genesis(
        params, alice_phone, alice_rk, display_name="alice", device_name="phone", timestamp=s.now()
    )
    bob_phone, bob_rk = _keys(), RecoveryKey(os.urandom(32))
    g_bob = authoring.genesis(
        params, bob_phone, bob_rk, display_name="bob", device_name="phone", timestamp=s.now()
    )
    bob = g_bob.id
    s.say(
        "create",
        "alice and bob create accounts (genesis with proof-of-work)",
        alice=handle("alice", g_alice.id),
        bob=handle("bob", bob),
    )
    s.deliver([g_alice, g_bob])
    s.show(g_alice.id)
    s.show(bob)

    laptop = _keys()
    add_laptop = authoring.add_device(
        params,
        bob,
        [g_bob.id],
        bob_phone,
        authoring.introduce(params, bob, laptop, "laptop"),
        timestamp=s.now(),
    )
    s.say("link", "bob's phone approves his laptop")
    s.deliver([add_laptop])
    tablet = _keys()
    add_tablet = authoring.add_device(
        params,
        bob,
        [add_laptop.id],
        laptop,
        authoring.introduce(params, bob, tablet, "tablet"),
        timestamp=s.now(),
    )
    s.say("link", "bob's laptop approves his tablet")
    s.deliver([add_tablet])
    s.show(bob)

    thief_dev = _keys()
    s.say("partition", "the tablet is stolen; the network splits into {a} and {b, c}")
    theft = authoring.add_device(
        params,
        bob,
        [add_tablet.id],
        tablet,
        authoring.introduce(params, bob, thief_dev, "totally-bob"),
        timestamp=s.now(),
    )
    revoke = authoring.revoke_device(
        params, bob, [add_tablet.id], bob_phone, tablet.sign_public, timestamp=s.now()
    )
    s.deliver([theft], to=["node-a"])
    s.deliver([revoke], to=["node-b", "node-c"])
    s.say(
        "race", "the thief's tablet adds a device on node-a while bob revokes the tablet on node-b"
    )
    s.show(bob, "node-a")
    s.show(bob, "node-b")
    s.say("heal", "the partition heals: every replica gets every event, in its own order")
    s.deliver([revoke], to=["node-a"])
    s.deliver([theft], to=["node-b", "node-c"])
    s.show(bob, "node-a")
    s.converge(bob)

    new_phone, bob_rk2 = _keys(), RecoveryKey(os.urandom(32))
    heads = list(s.replicas["node-a"].state(bob).heads)
    rec = authoring.recover(
        params, bob, heads, bob_rk, new_phone, bob_rk2, device_name="new phone", timestamp=s.now()
    )
    s.say("recover", "bob loses every device and recovers with his paper key")
    s.deliver([rec])
    s.show(bob)
    s.converge(bob)
    return 0


if __name__ == "__main__":
    sys.exit(run("--json" in sys.argv))
