"""Messaging benchmark (issue: Messaging).

Part 1, over loopback: one sender node, a recipient account with 3 devices
(3 more nodes, linked with approval).  Latency: one message at a time, from
the `message.send` call until all 3 devices have stored it (their ACCEPTED
answers, as the sender's outbox records them); p50 and p99.  Throughput: a
burst of messages, sent as fast as the control API takes them, until all are
delivered to all 3 devices.  For both, per message: the libp2p deliveries
(envelope copies and receipts, on ``/smu/message/1`` streams or per-link
channels, PROTOCOL.md §15.14.1), the streams among them, and the CPU time
of the 4 node processes.

Part 2, in process: the crypto of one message (seal with 3 key wraps, then
open on each of the 3 devices) beside the raw libsodium calls the same
message needs (per wrap an X25519 base and shared multiplication and a small
AEAD; one Ed25519 signature; one content AEAD; per opening one X25519
multiplication, two AEAD decryptions and one Ed25519 verification), timed
in the same run: ``crypto_ratio = raw_libsodium_seconds / envelope_seconds``.

Part 3, in process, back to back in the same run: the crypto of one
message to the same 3-device recipient with wrap scheme 2 (PROTOCOL.md
§19.13) beside scheme 1, ``scheme2_ratio = scheme-2 seconds / scheme-1
seconds`` (target <= 2), once for a one-way stream (each session past its
set-up: the symmetric ratchet only) and once for a conversation (every
timed message follows an untimed reply from each recipient device, so each
timed open starts a new receiving chain: the DH ratchet step, the worst
case of the receiving side).  Separately: the own-account copy of a text
(§15.22: a second seal, to the sender's other device, and its open), and
the set-up of a session (a first message that sets up with each of the 3
devices, per device pair).

    .venv/bin/python bench/messaging.py [--latency 100] [--burst 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nacl.bindings as sodium

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.netdemo import Demo, DemoNode, link_devices
from protocol.messaging.content import ReplayGuard, SentCopy, Text
from protocol.messaging.envelope import ledger_lookup, open_envelope, seal
from protocol.messaging.prekeys import PrekeyStore
from protocol.messaging.ratchet import x25519_public
from protocol.messaging.scheme2 import Reach2, ReceiveSessions, SendSessions
from protocol.messaging.sessions import SessionBook
from tests.conftest import FAST, History


def crypto_part(n: int) -> dict[str, float]:
    alice, bob = History(name="alice"), History(name="bob")
    bob.add("a1", "d0", "d1", ["g"])
    bob.add("a2", "d0", "d2", ["a1"])
    ledger = alice.ledger()
    for label in ("g", "a1", "a2"):
        ledger.ingest(bob.events[label].raw)
    a_state, b_state = ledger.state(alice.account), ledger.state(bob.account)
    devices = [bob.keys[k] for k in ("d0", "d1", "d2")]
    guards = [ReplayGuard() for _ in devices]
    lookup = ledger_lookup(ledger)
    text = Text("x" * 200)
    start = time.perf_counter()
    for i in range(1, n + 1):
        env = seal(
            FAST,
            alice.keys["d0"],
            a_state,
            b_state,
            text,
            counter=i,
            timestamp=1_750_000_000_000,
            seed=os.urandom(32),
        )
        for dev, guard in zip(devices, guards, strict=True):
            open_envelope(FAST, env.raw, bob.account, dev, lookup, guard)
    ours = time.perf_counter() - start

    sk = alice.keys["d0"]
    enc_pub = [d.enc_public for d in devices]
    key32, nonce, content = os.urandom(32), os.urandom(24), os.urandom(420)
    start = time.perf_counter()
    for _ in range(n):
        wraps = []
        for pub in enc_pub:
            eph = os.urandom(32)
            sodium.crypto_scalarmult_base(eph)
            sodium.crypto_scalarmult(eph, pub)
            wraps.append(
                sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(key32, None, nonce, key32)
            )
        sig = sk.sign(content)
        box = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(content, None, nonce, key32)
        for dev, w in zip(devices, wraps, strict=True):
            sodium.crypto_scalarmult(dev.enc_secret, dev.enc_public)
            sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(w, None, nonce, key32)
            sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(box, None, nonce, key32)
            sodium.crypto_sign_open(sig + content, sk.sign_public)
    raw = time.perf_counter() - start
    return {
        "messages": n,
        "envelope_seconds": round(ours, 4),
        "raw_libsodium_seconds": round(raw, 4),
        "envelope_ms_per_message": round(1000 * ours / n, 3),
        "crypto_ratio": round(raw / ours, 3),
    }


class _Scheme2World:
    """alice (d0 sends, d1 gets the copies), bob (d0, d1, d2), every device
    with a signed prekey, a session book and a replay guard."""

    def __init__(self) -> None:
        self.alice, self.bob = History(name="alice"), History(name="bob")
        self.alice.add("a1", "d0", "d1", ["g"])
        self.bob.add("b1", "d0", "d1", ["g"])
        self.bob.add("b2", "d0", "d2", ["b1"])
        self.ledger = self.alice.ledger()
        for label in ("g", "b1", "b2"):
            self.ledger.ingest(self.bob.events[label].raw)
        self.lookup = ledger_lookup(self.ledger)
        self.devs = [(self.alice, "d0"), (self.alice, "d1")]
        self.devs += [(self.bob, k) for k in ("d0", "d1", "d2")]
        self.stores, self.reach = {}, {}
        for i, (h, k) in enumerate(self.devs):
            secret = os.urandom(32)
            self.stores[h.keys[k].sign_public] = PrekeyStore().with_signed(i + 1, secret, 0)
            self.reach[h.keys[k].sign_public] = Reach2(i + 1, x25519_public(secret), True)
        self.reset()

    def reset(self) -> None:
        self.books = {h.keys[k].sign_public: SessionBook() for h, k in self.devs}
        self.guards = {h.keys[k].sign_public: ReplayGuard() for h, k in self.devs}
        self.counter = 0

    def send(self, sender: tuple[History, str], to: History, content: object, s2: bool) -> bytes:
        h, k = sender
        me = h.keys[k]
        self.counter += 1
        env = seal(
            FAST, me, self.ledger.state(h.account), self.ledger.state(to.account),
            content,  # type: ignore[arg-type]
            counter=self.counter, timestamp=1_750_000_000_000, seed=os.urandom(32),
            sessions=SendSessions(self.books[me.sign_public], self.reach if s2 else {}),
        )  # fmt: skip
        assert env.book is not None
        self.books[me.sign_public] = env.book
        for oh, ok in self.devs:
            dev = oh.keys[ok]
            if dev.sign_public in env.wrapped_for:
                self.open(dev, to.account, env.raw)
        return env.raw

    def open(self, dev: object, account: bytes, raw: bytes) -> None:
        key = dev.sign_public  # type: ignore[attr-defined]
        book = self.books[key]
        inputs = ReceiveSessions(lambda sid, who: book, self.stores[key], 1, os.urandom(32))
        opened = open_envelope(
            FAST,
            raw,
            account,
            dev,
            self.lookup,
            self.guards[key],
            inputs,  # type: ignore[arg-type]
        )
        if opened.book is not None:
            self.books[key] = opened.book


def scheme2_part(n: int) -> dict[str, float]:
    w = _Scheme2World()
    a0, bob_devs = (w.alice, "d0"), [(w.bob, k) for k in ("d0", "d1", "d2")]
    text = Text("x" * 200)

    def timed(s2: bool, replies: bool) -> float:
        w.reset()
        w.send(a0, w.bob, text, s2)  # set-ups (scheme 2), untimed
        for d in bob_devs:
            w.send(d, w.alice, text, s2)  # one round trip: past the set-up
        total = 0.0
        for _ in range(n):
            if replies:
                for d in bob_devs:
                    w.send(d, w.alice, text, s2)
            start = time.perf_counter()
            w.send(a0, w.bob, text, s2)
            total += time.perf_counter() - start
        return total

    one1, one2 = timed(False, False), timed(True, False)
    conv1, conv2 = timed(False, True), timed(True, True)
    # the own-account copy: a second seal, to alice's d1, and its open
    copy = SentCopy(w.bob.account, bytes(16), text)
    w.reset()
    w.send(a0, w.alice, copy, True)
    w.send((w.alice, "d1"), w.alice, copy, True)
    start = time.perf_counter()
    for _ in range(n):
        w.send(a0, w.alice, copy, True)
    copies = time.perf_counter() - start
    # set-up: the first message to the 3 devices, from empty books
    setups = 0.0
    rounds = max(1, n // 10)
    for _ in range(rounds):
        w.reset()
        start = time.perf_counter()
        w.send(a0, w.bob, text, True)
        setups += time.perf_counter() - start
    return {
        "scheme2_messages": n,
        "scheme1_ms_per_message": round(1000 * one1 / n, 3),
        "scheme2_ms_per_message": round(1000 * one2 / n, 3),
        "scheme2_ratio": round(one2 / one1, 3),
        "scheme1_conversation_ms_per_message": round(1000 * conv1 / n, 3),
        "scheme2_conversation_ms_per_message": round(1000 * conv2 / n, 3),
        "scheme2_conversation_ratio": round(conv2 / conv1, 3),
        "own_copy_ms_per_message": round(1000 * copies / n, 3),
        "own_copy_ratio_to_scheme1_message": round(copies / one1, 3),
        "setup_first_message_ms": round(1000 * setups / rounds, 3),
        "setup_ms_per_device_pair": round(1000 * (setups / rounds - one2 / n) / 3, 3),
    }


def wait_delivered(sender: DemoNode, ids: list[str], devices: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending:
        r = sender.client.call("message.status", ids=sorted(pending))["deliveries"]
        pending = {m for m in pending if r[m].get("delivered", 0) < devices}
        if pending and time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} messages not delivered in {timeout}s")
        if pending:
            time.sleep(0.01)
    return time.monotonic()


def wire_counts(nodes: list[DemoNode]) -> tuple[int, int]:
    """Over all nodes: ``/smu/message/1`` streams admitted, and envelopes
    received on per-link channels (PROTOCOL.md §15.14.1; 0 where a node has
    no such counter)."""
    streams = channel = 0
    for node in nodes:
        status = node.status()
        streams += int(status["gate"]["admitted"].get("/smu/message/1", 0))
        deliveries: dict[str, int] = dict(status["channels"].get("deliveries", {}))
        channel += deliveries.get("received", 0)
    return streams, channel


def cpu_seconds(nodes: list[DemoNode]) -> float:
    """User plus system CPU of the node processes so far (Linux /proc): a
    figure the other load on a shared machine moves less than wall time."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for node in nodes:
        assert node.proc is not None
        fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def per_message(
    before: tuple[int, int, float], after: tuple[int, int, float], n: int
) -> dict[str, float]:
    streams, channel, cpu = (after[i] - before[i] for i in range(3))
    return {
        "deliveries_per_message": round((streams + channel) / n, 2),
        "message_streams_per_message": round(streams / n, 2),
        "node_cpu_ms_per_message": round(1000 * cpu / n, 2),
    }


def counts_now(nodes: list[DemoNode]) -> tuple[int, int, float]:
    return (*wire_counts(nodes), cpu_seconds(nodes))


def network_part(latency_n: int, burst_n: int) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="smu-bench-msg-"))
    d = Demo(base, as_json=True, quiet=True)
    try:
        names = ["alice", "bob1", "bob2", "bob3"]
        d.nodes = [DemoNode(base, n) for n in names]
        for node in d.nodes:
            node.start()
        for node in d.nodes:
            node.wait_ready()
        alice, b1, b2, b3 = d.nodes
        for x in (b1, b2, b3):
            d.connect(alice, x)
        me = alice.client.call("account.create", name="alice")
        bob = b1.client.call("account.create", name="bob")
        link_devices(d, b1, b2, "bob2")
        link_devices(d, b1, b3, "bob3")
        d.wait_converged(d.nodes)
        alice.client.call("contact.add", ref=bob["account_id"], name="bob")
        # bob's devices take alice as a contact: otherwise her texts are
        # message requests, capped at 10 per sender (PROTOCOL.md §15.14)
        for x in (b1, b2, b3):
            x.client.call("contact.add", ref=me["account_id"], name="alice")
        first = alice.client.call("message.send", contact="bob", text="warm-up")
        wait_delivered(alice, [first["message_id"]], 3, 60)  # device records have spread
        latencies = []
        counts = counts_now(d.nodes)
        for i in range(latency_n):
            t0 = time.monotonic()
            m = alice.client.call("message.send", contact="bob", text=f"latency {i}")
            latencies.append(wait_delivered(alice, [m["message_id"]], 3, 30) - t0)
        after_latency = counts_now(d.nodes)
        isolated = per_message(counts, after_latency, latency_n)
        t0 = time.monotonic()
        ids = [
            alice.client.call("message.send", contact="bob", text=f"burst {i}")["message_id"]
            for i in range(burst_n)
        ]
        done = wait_delivered(alice, ids, 3, 300)
        time.sleep(0.5)  # the last receipts are still on their way
        burst = per_message(after_latency, counts_now(d.nodes), burst_n)
        latencies.sort()
        return {
            "latency_messages": latency_n,
            "latency_p50_ms": round(1000 * statistics.median(latencies), 2),
            "latency_p99_ms": round(
                1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2
            ),
            "burst_messages": burst_n,
            "burst_seconds": round(done - t0, 3),
            "messages_per_second": round(burst_n / (done - t0), 1),
            "deliveries_per_second": round(3 * burst_n / (done - t0), 1),
            **{f"isolated_{k}": v for k, v in isolated.items()},
            **{f"burst_{k}": v for k, v in burst.items()},
        }
    finally:
        for node in d.nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=int, default=100)
    ap.add_argument("--burst", type=int, default=300)
    ap.add_argument("--crypto", type=int, default=500)
    args = ap.parse_args()
    c = crypto_part(args.crypto)
    print(
        f"crypto: {c['envelope_ms_per_message']} ms per message (seal + 3 opens); raw "
        f"libsodium ÷ ours = {c['crypto_ratio']}",
        flush=True,
    )
    s2 = scheme2_part(args.crypto)
    print(
        f"scheme 2 ÷ scheme 1, 3 devices: {s2['scheme2_ratio']} one-way, "
        f"{s2['scheme2_conversation_ratio']} in a conversation; own copy "
        f"{s2['own_copy_ms_per_message']} ms; set-up {s2['setup_ms_per_device_pair']} ms "
        "per device pair",
        flush=True,
    )
    n = network_part(args.latency, args.burst)
    print(
        f"loopback, 3 recipient devices: p50 {n['latency_p50_ms']} ms, p99 "
        f"{n['latency_p99_ms']} ms; burst {n['messages_per_second']} messages/s",
        flush=True,
    )
    print(
        json.dumps(
            {
                "benchmark": "messaging",
                **c,
                **s2,
                **n,
                "recipient_devices": 3,
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
