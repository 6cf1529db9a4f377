"""`smu demo`: a local network of real nodes on loopback (issue: Node, Demo).

Starts N ``smu node run`` processes, each with its own data directory,
creates accounts, builds a multi-device history with already-signed events
(device linking is a later step), partitions the network into two groups
with concurrent changes to the same account on both sides, heals it, and
shows every node reaching the same event set and the same account states.
A node started late then catches up by reconciliation alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from protocol import authoring
from protocol.events import Event
from protocol.keys import DeviceKeys
from protocol.params import TESTNET

from .control import ControlClient
from .datadir import DataDir
from .errors import NodeError
from .render import state_text

CONVERGE_TIMEOUT = 30.0


class DemoNode:
    def __init__(self, base: Path, name: str) -> None:
        self.name = name
        self.dir = base / name
        self.client = ControlClient(self.dir / "control.sock", timeout=120)
        self.proc: subprocess.Popen[bytes] | None = None
        self.peer_id = ""
        self.addr = ""

    def smu(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "node.cli", *args, "--data-dir", str(self.dir)],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self, bootstrap: list[str] | None = None) -> None:
        self.smu("init", "--network", TESTNET.network_id, "--name", self.name)
        self.start_existing(bootstrap)

    def start_existing(self, bootstrap: list[str] | None = None) -> None:
        cmd = [
            sys.executable,
            "-m",
            "node.cli",
            "node",
            "run",
            "--data-dir",
            str(self.dir),
            "--log-level",
            "warning",
        ]
        for b in bootstrap or []:
            cmd += ["--bootstrap", b]
        log = open(self.dir / "node.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise NodeError(f"{self.name} exited: see {self.dir / 'node.log'}")
            try:
                status = self.client.call("node.status")
            except NodeError:
                time.sleep(0.1)
                continue
            self.peer_id = status["peer_id"]
            self.addr = status["listen"][0]
            if "/p2p/" not in self.addr:
                self.addr += "/p2p/" + self.peer_id
            return
        raise NodeError(f"{self.name} did not start within {timeout:.0f}s")

    def device(self) -> DeviceKeys:
        return DataDir(self.dir).load_secrets().device

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("node.status")
        return result

    def submit(self, event: Event) -> None:
        self.client.call("event.submit", event=event.raw.hex())

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.client.call("node.stop")
            self.proc.wait(timeout=10)
        except (NodeError, subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait()


class Demo:
    def __init__(self, base: Path, as_json: bool) -> None:
        self.base = base
        self.as_json = as_json
        self.nodes: list[DemoNode] = []

    def say(self, step: str, text: str, **data: object) -> None:
        if self.as_json:
            print(json.dumps({"step": step, "text": text, **data}), flush=True)
        else:
            print(f"\n== {text}", flush=True)
            for k, v in data.items():
                print(f"   {k}: {v}", flush=True)

    def show(self, node: DemoNode, account: str) -> dict[str, Any]:
        doc: dict[str, Any] = node.client.call("account.show", account=account)
        if self.as_json:
            print(json.dumps({"step": "show", "node": node.name, "account": doc}), flush=True)
        else:
            print(f"-- as seen by {node.name}:")
            print("   " + state_text(doc).replace("\n", "\n   "), flush=True)
        return doc

    def connect(self, a: DemoNode, b: DemoNode) -> None:
        a.client.call("peers.connect", addr=b.addr)

    def partition(self, left: list[DemoNode], right: list[DemoNode]) -> None:
        for a in left:
            for b in right:
                a.client.call("peers.refuse", peer=b.peer_id)
                b.client.call("peers.refuse", peer=a.peer_id)

    def heal(self, left: list[DemoNode], right: list[DemoNode]) -> None:
        for a in left:
            for b in right:
                a.client.call("peers.unrefuse", peer=b.peer_id)
                b.client.call("peers.unrefuse", peer=a.peer_id)
        self.connect(left[-1], right[0])
        self.connect(right[-1], left[0])

    def wait_converged(self, nodes: list[DemoNode], timeout: float = CONVERGE_TIMEOUT) -> float:
        start = time.monotonic()
        while True:
            digests = {n.name: n.status()["event_set_digest"] for n in nodes}
            if len(set(digests.values())) == 1:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise NodeError(f"nodes did not converge within {timeout:.0f}s: {digests}")
            time.sleep(0.05)


def _now() -> int:
    return int(time.time() * 1000)


def story(d: Demo, n: int) -> None:
    params = TESTNET
    d.say("start", f"starting {n} nodes on loopback, each a separate process")
    names = ["alice-phone", "phone", "laptop", "tablet"] + [f"node{i + 1}" for i in range(4, n)]
    d.nodes = [DemoNode(d.base, names[i]) for i in range(n)]
    for node in d.nodes:
        node.start()
    for node in d.nodes:
        node.wait_ready()
    ring = d.nodes
    for i in range(len(ring)):
        d.connect(ring[i], ring[(i + 1) % len(ring)])
    d.say("topology", "nodes connected in a ring", peers={x.name: x.peer_id for x in d.nodes})

    n1, n2, n3, n4 = d.nodes[0], d.nodes[1], d.nodes[2], d.nodes[3]
    alice = n1.client.call("account.create", name="alice")
    bob = n2.client.call("account.create", name="bob")
    d.say(
        "accounts",
        "alice creates an account on alice-phone, bob on phone (genesis with proof-of-work)",
        alice=alice["handle"],
        bob=bob["handle"],
    )
    bob_id = bytes.fromhex(bob["account_id"])
    d.wait_converged(d.nodes)

    # Bob's other devices are the device keys of the nodes laptop and tablet.
    phone, laptop, tablet = n2.device(), n3.device(), n4.device()
    g = bytes.fromhex(n2.client.call("account.show", account=bob["account_id"])["heads"][0])
    add_laptop = authoring.add_device(
        params,
        bob_id,
        [g],
        phone,
        authoring.introduce(params, bob_id, laptop, "laptop"),
        timestamp=_now(),
    )
    n2.submit(add_laptop)
    add_tablet = authoring.add_device(
        params,
        bob_id,
        [add_laptop.id],
        laptop,
        authoring.introduce(params, bob_id, tablet, "tablet"),
        timestamp=_now(),
    )
    n3.submit(add_tablet)
    d.wait_converged(d.nodes)
    d.say("devices", "bob's phone approved his laptop; the laptop approved his tablet")
    d.show(n5 := d.nodes[-1], bob["account_id"])

    left, right = d.nodes[:2], d.nodes[2:]
    d.partition(left, right)
    d.say(
        "partition",
        f"the network splits: {{alice-phone, phone}} | {{laptop, tablet, ...{n - 4} more}}",
    )
    thief = DeviceKeys.from_random(os.urandom(64))
    theft = authoring.add_device(
        params,
        bob_id,
        [add_tablet.id],
        tablet,
        authoring.introduce(params, bob_id, thief, "totally-bob"),
        timestamp=_now(),
    )
    n4.submit(theft)
    revoke = authoring.revoke_device(
        params, bob_id, [add_tablet.id], phone, tablet.sign_public, timestamp=_now()
    )
    n2.submit(revoke)
    d.say(
        "race",
        "the tablet is stolen: on one side the thief's tablet adds a device; on the "
        "other, bob's phone revokes the tablet",
    )
    d.show(n1, bob["account_id"])
    d.show(n5, bob["account_id"])

    healed_at = time.monotonic()
    d.heal(left, right)
    d.wait_converged(d.nodes)
    took = time.monotonic() - healed_at
    d.say("heal", f"the partition heals; all {n} nodes hold the same event set after {took:.2f}s")
    docs = [n.client.call("account.show", account=bob["account_id"]) for n in d.nodes]
    digests = {x.name: doc["state_digest"][:16] for x, doc in zip(d.nodes, docs, strict=True)}
    d.say(
        "converged",
        "every node computes the same state for bob: the thief's device is void",
        state_digests=digests,
        identical=len(set(digests.values())) == 1,
    )
    d.show(n1, bob["account_id"])
    if len(set(digests.values())) != 1:
        raise NodeError("nodes disagree on bob's state")

    late = DemoNode(d.base, "new-phone")
    started_at = time.monotonic()
    late.start(bootstrap=[n1.addr])
    late.wait_ready()
    d.nodes.append(late)
    d.wait_converged(d.nodes)
    took = time.monotonic() - started_at
    d.say(
        "late-joiner",
        f"{late.name} starts late with only a bootstrap address and catches up "
        f"by reconciliation in {took:.2f}s",
        events=late.status()["events"],
    )

    rec = late.client.call(
        "account.recover", account=bob["account_id"], recovery_key=bob["recovery_key"]
    )
    d.wait_converged(d.nodes)
    d.say(
        "recover",
        f"bob loses every device and recovers with his paper key on {late.name}, "
        "a fresh node; it shows a new recovery key once",
        event=rec["event_id"][:16],
    )
    d.show(n1, bob["account_id"])


def run(as_json: bool = False, nodes: int = 5, keep: bool = False) -> int:
    """Exit 0 only if every node converged; the last line says so."""
    if nodes < 5:
        raise NodeError("the demo runs at least 5 nodes")
    base = Path(tempfile.mkdtemp(prefix="smu-demo-"))
    d = Demo(base, as_json)
    converged = False
    failure = ""
    try:
        story(d, nodes)
        digests = {n.status()["event_set_digest"] for n in d.nodes}
        converged = len(digests) == 1
    except NodeError as exc:
        failure = str(exc)
    finally:
        for node in d.nodes:
            node.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    d.say(
        "done",
        "every node holds the same events and states"
        if converged
        else f"the nodes did not converge: {failure}",
        converged=converged,
        nodes=len(d.nodes),
        data_dirs=str(base) if keep else "removed",
    )
    return 0 if converged else 1
