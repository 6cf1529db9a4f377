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
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from protocol.core.keys import DeviceKeys
from protocol.core.params import TESTNET
from protocol.log.events import Event

from .api.account import ACCOUNT_SHOW, AccountStateDoc
from .api.node import NODE_STATUS, NodeStatus
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

    def start_existing(self, bootstrap: list[str] | None = None, listen: str | None = None) -> None:
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
        if listen is not None:
            cmd += ["--listen", listen]
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

    def status(self) -> NodeStatus:
        return NODE_STATUS.ask(self.client, {})

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
    def __init__(self, base: Path, as_json: bool, quiet: bool = False) -> None:
        self.base = base
        self.as_json = as_json
        self.quiet = quiet
        self.nodes: list[DemoNode] = []

    def say(self, step: str, text: str, **data: object) -> None:
        if self.quiet:
            return
        if self.as_json:
            print(json.dumps({"step": step, "text": text, **data}), flush=True)
        else:
            print(f"\n== {text}", flush=True)
            for k, v in data.items():
                if isinstance(v, list):
                    print(f"   {k}:", flush=True)
                    for item in v:
                        print(f"     - {item}", flush=True)
                else:
                    print(f"   {k}: {v}", flush=True)

    def show(self, node: DemoNode, account: str) -> AccountStateDoc:
        doc = ACCOUNT_SHOW.ask(node.client, {"account": account})
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


def link_devices(
    d: Demo, approver: DemoNode, joiner: DemoNode, name: str, *, approve: bool = True
) -> dict[str, object]:
    """`smu device link` on ``approver``, `smu device join` on ``joiner``; both
    users see the same code, the joiner's user confirms, the approver's user
    approves (or rejects).  Returns the joiner's answer plus ``offer``,
    ``started`` and ``request``; a refusal is in ``error``."""
    offer = approver.client.call("device.link")
    started = joiner.client.call("device.join", link=offer["link"], name=name)
    d.say(
        "join",
        f"{joiner.name} shows: joining {started['account']['handle']}, "
        f"confirmation code {started['code']}; its user confirms",
        active_devices=[x["name"] for x in started["account"]["devices"]],
    )
    result: dict[str, object] = {}

    def confirm() -> None:
        try:
            result.update(
                joiner.client.call("device.join_confirm", join_id=started["join_id"], accept=True)
            )
        except NodeError as exc:
            result["error"] = str(exc)

    waiter = threading.Thread(target=confirm)
    waiter.start()
    deadline = time.monotonic() + 30
    request = None
    while request is None and time.monotonic() < deadline:
        for req in approver.client.call("device.pending")["requests"]:
            if req["id"] == offer["id"] and req["awaiting_approval"]:
                request = req
        time.sleep(0.05)
    if request is None:
        raise NodeError(f"{approver.name} never saw {joiner.name}'s request")
    if request["code"] != started["code"]:
        raise NodeError("the two devices show different confirmation codes")
    verdict = "approves" if approve else "rejects"
    d.say(
        "approve",
        f"{approver.name} asks: approve device {request['device_name']!r}, "
        f"fingerprint {request['fingerprint']}? code {request['code']} — its user {verdict}",
    )
    approver.client.call("device.approve" if approve else "device.reject", id=offer["id"])
    waiter.join(60)
    if approve and not result.get("joined"):
        raise NodeError(f"{joiner.name} did not join: {result.get('error')}")
    return {**result, "offer": offer, "started": started, "request": request}


def texts(node: DemoNode, contact: str) -> list[str]:
    doc = node.client.call("message.conversation", contact=contact)
    return [str(m["text"]) for m in doc["messages"]]


def contact_names(node: DemoNode) -> list[str]:
    return [str(c["name"]) for c in node.client.call("contact.list")["contacts"]]


def has_contact(node: DemoNode, name: str) -> bool:
    return name in contact_names(node)


def wait_until(what: str, check: Callable[[], object], timeout: float = CONVERGE_TIMEOUT) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise NodeError(f"timed out waiting until {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def story(d: Demo, n: int) -> None:
    d.say("start", f"starting {n} nodes on loopback, each a separate process")
    names = ["alice-phone", "alice-laptop", "phone", "laptop", "tablet", "thief"]
    names += [f"node{i + 1}" for i in range(len(names), n)]
    d.nodes = [DemoNode(d.base, names[i]) for i in range(n)]
    for node in d.nodes:
        node.start()
    for node in d.nodes:
        node.wait_ready()
    for i in range(len(d.nodes)):
        d.connect(d.nodes[i], d.nodes[(i + 1) % len(d.nodes)])
    d.say("topology", "nodes connected in a ring", peers={x.name: x.peer_id for x in d.nodes})

    alice_phone, alice_laptop, phone, laptop, tablet, thief = d.nodes[:6]
    alice = alice_phone.client.call("account.create", name="alice")
    bob = phone.client.call("account.create", name="bob")
    d.say(
        "accounts",
        "alice creates an account on alice-phone, bob on phone "
        "(genesis with proof-of-work; each is shown a recovery key once)",
        alice=alice["handle"],
        bob=bob["handle"],
    )
    d.wait_converged(d.nodes)

    link_devices(d, phone, laptop, "laptop")
    link_devices(d, alice_phone, alice_laptop, "alice-laptop")
    d.wait_converged(d.nodes)

    invite = phone.client.call("invite.create")
    # contacts are the account's, not the device's (PROTOCOL.md §15.19):
    # each is added on one device, and the other device has it by sync
    alice_phone.client.call("contact.add", ref=invite["invite"], name="bob")
    phone.client.call("contact.add", ref=alice["account_id"], name="alice")
    took = wait_until(
        "the other devices have the contacts",
        lambda: has_contact(alice_laptop, "bob") and has_contact(laptop, "alice"),
    )
    d.say(
        "contacts",
        "alice adds bob on her phone, bob adds alice on his phone; "
        f"{took:.2f}s later their laptops have the contacts too, synced",
        contacts_on_alice_laptop=contact_names(alice_laptop),
        contacts_on_bob_laptop=contact_names(laptop),
    )
    number = alice_phone.client.call("contact.verify", contact="bob", confirm=True)
    theirs = phone.client.call("contact.verify", contact="alice")["safety_number"]
    d.say(
        "verify",
        "alice adds bob with his invite; both phones show the same safety number "
        "and alice marks bob verified",
        safety_number=number["safety_number"],
        same_on_both=number["safety_number"] == theirs,
    )

    hello = "hi bob, it's alice"
    alice_phone.client.call("message.send", contact="bob", text=hello)
    took = wait_until(
        "every device shows alice's message",
        lambda: all(
            hello in texts(x, c)
            for x, c in ((phone, "alice"), (laptop, "alice"), (alice_laptop, "bob"))
        ),
    )
    d.say(
        "message",
        f"alice writes to bob; {took:.2f}s later both of bob's devices and alice's laptop show it",
        shown_on=["phone", "laptop", "alice-laptop"],
    )
    reply = "hello alice! (from my laptop)"
    laptop.client.call("message.send", contact="alice", text=reply)
    wait_until(
        "alice's devices show bob's reply",
        lambda: all(reply in texts(x, "bob") for x in (alice_phone, alice_laptop)),
    )
    d.say(
        "reply",
        "bob replies from his laptop, to the contact his phone added; "
        "alice's phone and laptop show it",
        conversation_on_alice_phone=texts(alice_phone, "bob"),
    )

    link_devices(d, laptop, tablet, "tablet")
    wait_until(
        "the tablet has the contact and the history",
        lambda: has_contact(tablet, "alice") and texts(tablet, "alice")[:2] == [hello, reply],
    )
    d.say(
        "history",
        "bob's laptop approved his tablet; the tablet receives bob's contacts and the "
        "earlier conversation from the laptop, encrypted to its new key",
        conversation_on_tablet=texts(tablet, "alice"),
    )
    d.wait_converged(d.nodes)

    tablet_key = tablet.device().sign_public.hex()

    def tablet_mailboxes() -> list[str]:
        """Where alice's phone can leave a message for the tablet: any
        mailbox its record names except one on the phone's own node."""
        records = alice_phone.client.call("device.records", account=bob["account_id"])
        return [
            mailbox
            for r in records["records"]
            if r["device"] == tablet_key
            for mailbox in r["mailboxes"]
            if mailbox != alice_phone.peer_id
        ]

    wait_until("alice's phone knows a mailbox of the tablet's", tablet_mailboxes, 60)
    tablet.stop()
    d.nodes.remove(tablet)
    away = "are you there, tablet?"
    sent = alice_phone.client.call("message.send", contact="bob", text=away)
    wait_until(
        "the message waits at the tablet's mailbox",
        lambda: (
            alice_phone.client.call("message.status", ids=[sent["message_id"]])["deliveries"][
                sent["message_id"]
            ].get("deposited", 0)
            == 1
        ),
        60,
    )
    alice_phone.stop()  # the sender is gone too: only the mailbox holds it now
    d.nodes.remove(alice_phone)
    tablet.start_existing()
    tablet.wait_ready()
    d.nodes.insert(3, tablet)
    for x in (laptop, thief):
        d.connect(tablet, x)
    took = wait_until("the tablet fetches it", lambda: away in texts(tablet, "alice"), 120)
    d.say(
        "offline",
        f"the tablet was off when alice wrote, and alice's phone went off before "
        f"the tablet came back: {took:.2f}s after it did, the tablet fetched her message "
        "from its mailbox (ciphertext only; fetching needs the tablet's signature)",
        via_mailbox=True,
    )
    alice_phone.start_existing()
    alice_phone.wait_ready()
    d.nodes.insert(0, alice_phone)
    for x in (alice_laptop, thief):
        d.connect(alice_phone, x)
    d.wait_converged(d.nodes)
    d.show(d.nodes[-1], bob["account_id"])

    left, right = d.nodes[:3], d.nodes[3:]
    d.partition(left, right)
    d.say(
        "partition",
        "the tablet is stolen, and the network splits: {alice-phone, alice-laptop, phone} | "
        f"{{laptop, tablet, thief{', ...' if n > 6 else ''}}}",
    )
    link_devices(d, tablet, thief, "totally-bob")
    revoked = phone.client.call("device.revoke", device="tablet")
    d.say(
        "race",
        "on one side the stolen tablet links the thief's own device; on the other, "
        "bob's phone revokes the tablet (`smu device revoke tablet`)",
        revocation=revoked["revoked"][0]["event_id"][:16],
    )
    d.show(alice_phone, bob["account_id"])
    d.show(thief, bob["account_id"])

    healed_at = time.monotonic()
    d.heal(left, right)
    d.wait_converged(d.nodes)
    took = time.monotonic() - healed_at
    d.say("heal", f"the partition heals; all {n} nodes hold the same event set after {took:.2f}s")
    docs = [x.client.call("account.show", account=bob["account_id"]) for x in d.nodes]
    digests = {x.name: doc["state_digest"][:16] for x, doc in zip(d.nodes, docs, strict=True)}
    d.say(
        "converged",
        "every node computes the same state for bob: the thief's device is void",
        state_digests=digests,
        identical=len(set(digests.values())) == 1,
    )
    d.show(alice_phone, bob["account_id"])
    if len(set(digests.values())) != 1:
        raise NodeError("nodes disagree on bob's state")

    secret = "the tablet must not read this"
    sent = alice_phone.client.call("message.send", contact="bob", text=secret)
    wait_until("bob's phone shows it", lambda: secret in texts(phone, "alice"))
    d.say(
        "revoked-cannot-read",
        f"alice writes again: the message is wrapped for "
        f"{sent['devices']} devices (bob's phone and laptop, alice's laptop), not for the "
        "revoked tablet, which never shows it",
        tablet_shows_it=secret in texts(tablet, "alice"),
    )
    if secret in texts(tablet, "alice"):
        raise NodeError("a revoked device read a message")

    late = DemoNode(d.base, "new-phone")
    started_at = time.monotonic()
    late.start(bootstrap=[alice_phone.addr])
    late.wait_ready()
    d.nodes.append(late)
    d.wait_converged(d.nodes)
    took = time.monotonic() - started_at
    d.say(
        "late-joiner",
        f"{late.name} starts late with only a bootstrap address and catches up "
        f"by reconciliation {took:.2f}s after its process started",
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
    d.show(alice_phone, bob["account_id"])
    history = alice_phone.client.call("account.history", account=bob["account_id"])
    changes = alice_phone.client.call("contact.list")["contacts"][0]["changes"]
    d.say(
        "contact-changes",
        "alice's contact list shows what changed, with who approved it, "
        "and asks her to verify bob again after the recovery",
        changes=changes,
    )
    d.say(
        "explained",
        "alice's node explains every change to bob's account",
        lines=[
            e["text"] + (f" — VOID: {e['void']}" if e["void"] else "") for e in history["events"]
        ],
    )


def run(as_json: bool = False, nodes: int = 6, keep: bool = False) -> int:
    """Exit 0 only if every node converged; the last line says so."""
    if nodes < 6:
        raise NodeError("the demo runs at least 6 nodes")
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
