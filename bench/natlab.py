"""NAT lab benchmark (issue: Reachable behind NAT), in one lab, one run.

Topology (tests/lab/netlab.py): three public nodes in distinct /16s (the
relays and mailboxes), two more public nodes with accounts (the baseline
pair, on one segment, no NAT), host0 and host1 each behind its own
port-preserving NAT, host2 behind a symmetric NAT (``masquerade random``).

* ``baseline_p50``: message latency between the two public accounts (from
  ``message.send`` until the recipient has stored it, polled every 5 ms).
* ``direct_p50``: the same between host0 and host1 once hole punching made
  their link direct; ``direct_ratio = direct_p50 / baseline_p50`` (target
  ≤ 1.5).
* ``relayed_p50``, ``relayed_delivery``: host0 to host2 (punching cannot
  work); ``relayed_ratio`` (target ≤ 3), delivery (target 100%).
* ``push_seconds``: host1 stops, host0 sends, host1 comes back: from the
  moment host1's node registered its link with the mailbox holding the
  message (its log line) to the message being stored (target ≤ 0.5 s).
* ``private_syns``: SYNs to private or unroutable destinations counted at
  the lab's routers (target 0).
* ``relay_bytes_per_message``, ``relay_cpu_ms_per_message``: the relaying
  node's interface bytes and CPU time during the relayed phase, per message.

The last line printed is the JSON summary.

    .venv/bin/python bench/natlab.py [--messages 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab.netlab import Host, Lab, available, sh
from tests.lab.scenario import (
    FAST,
    World,
    connection,
    reach,
    send_and_time,
    texts,
    wait,
)


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def iface_bytes(host: Host) -> int:
    total = 0
    for way in ("rx", "tx"):
        path = f"/sys/class/net/eth0/statistics/{way}_bytes"
        total += int(sh("ip", "netns", "exec", host.ns, "cat", path))
    return total


def befriend_all(world: World, named: dict[str, Host]) -> None:
    lab = world.lab
    accounts = {n: h.call("account.create", name=n) for n, h in named.items()}
    invites = {n: h.call("invite.create")["invite"] for n, h in named.items()}
    everyone = [*world.pubs, *named.values()]
    total = len(named)
    wait(
        lab,
        lambda: all(h.call("node.status")["accounts"] == total for h in everyone),
        what="accounts",
    )
    for n, h in named.items():
        for m in named:
            if m != n:
                h.call("contact.add", ref=invites[m], name=m)
    del accounts


def log_time(host: Host, needle: str) -> float | None:
    """The wall time of the last log line of ``host`` containing ``needle``."""
    found = None
    for line in (host.dir / "node.log").read_text(errors="replace").splitlines():
        if needle in line:
            stamp = line[:23]
            try:
                found = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
    return found


def run(messages: int) -> dict[str, object]:
    lab = Lab(Path(tempfile.mkdtemp(prefix="smu-natlab-")))
    try:
        pubs = [lab.public_host(f"pub{i}", i) for i in range(3)]
        base = [lab.public_host(f"base{i}", 3 + i) for i in range(2)]
        for p in [*pubs, *base]:
            p.start(extra=FAST)
        for p in [*pubs, *base]:
            p.wait_ready()
        for p in pubs:
            for q in pubs:
                if p is not q:
                    p.call("peers.connect", addr=q.addr)
        boot = [p.addr for p in pubs]
        routers = [lab.nat("nat0", 0), lab.nat("nat1", 1), lab.nat("nat2", 2, symmetric=True)]
        hosts = [lab.nat_host(r, f"host{i}") for i, r in enumerate(routers)]
        for h in hosts:
            h.start(bootstrap=boot, extra=FAST)
        for b in base:
            b.call("peers.connect", addr=pubs[0].addr)
        for h in hosts:
            h.wait_ready()
        world = World(lab, pubs, hosts)
        named = {"alice": hosts[0], "bob": hosts[1], "carol": hosts[2]}
        named |= {"dave": base[0], "erin": base[1]}
        befriend_all(world, named)
        for h in hosts:
            wait(lab, lambda h=h: len(reach(h)["relays"]) >= 2, what="relay slots")  # type: ignore[misc]
        base[0].call("peers.connect", addr=base[1].addr)

        # baseline: two public nodes, no NAT
        send_and_time(lab, base[0], base[1], "erin", "dave", "warm-up")
        baseline = [
            send_and_time(lab, base[0], base[1], "erin", "dave", f"b{i}") for i in range(messages)
        ]

        # punched: host0 and host1
        a, b, c = hosts
        send_and_time(lab, a, b, "bob", "alice", "hello")
        wait(lab, lambda: connection(a, b.peer_id) == "direct", timeout=90, what="punching")
        wait(lab, lambda: connection(b, a.peer_id) == "direct", what="punching")
        time.sleep(1)
        direct = [send_and_time(lab, a, b, "bob", "alice", f"d{i}") for i in range(messages)]

        # relayed: host0 to host2 (symmetric NAT)
        send_and_time(lab, a, c, "carol", "alice", "hello carol")
        wait(
            lab,
            lambda: (connection(a, c.peer_id) or "").startswith("relayed"),
            what="a relayed link",
        )
        link = connection(a, c.peer_id) or ""
        relay_id = link.removeprefix("relayed via ")
        relay = next(p for p in pubs if p.peer_id == relay_id)
        assert relay.proc is not None
        time.sleep(2)  # let the new link's first exchange settle
        t0, cpu0, bytes0 = time.monotonic(), proc_cpu(relay.proc.pid), iface_bytes(relay)
        relayed: list[float] = []
        delivered = 0
        for i in range(messages):
            try:
                relayed.append(send_and_time(lab, a, c, "carol", "alice", f"r{i}"))
                delivered += 1
            except AssertionError:
                pass
        busy = time.monotonic() - t0
        cpu1, bytes1 = proc_cpu(relay.proc.pid), iface_bytes(relay)
        # the relay's own background (its links, keepalives) over as long
        idle_cpu0, idle_bytes0 = proc_cpu(relay.proc.pid), iface_bytes(relay)
        time.sleep(busy)
        idle_cpu = proc_cpu(relay.proc.pid) - idle_cpu0
        idle_bytes = iface_bytes(relay) - idle_bytes0

        # push to a returning recipient
        b.stop()
        a.call("message.send", contact="bob", text="while you were away")

        def holder() -> Host | None:
            for p in [*pubs, *base]:
                if reach(p)["mailbox_notices"]["waiting"]:
                    return p
            return None

        box = wait(lab, holder, what="a deposit")
        b.start(bootstrap=boot, extra=FAST)
        b.wait_ready()
        wait(lab, lambda: "while you were away" in texts(b, "alice"), timeout=60, step=0.005)
        stored = time.time()
        linked = log_time(b, f"peer {box.peer_id} connected")
        push = round(stored - linked, 3) if linked else None

        bl, di = statistics.median(baseline), statistics.median(direct)
        re = statistics.median(relayed) if relayed else float("nan")
        return {
            "messages": messages,
            "baseline_p50": round(bl, 4),
            "direct_p50": round(di, 4),
            "direct_ratio": round(di / bl, 2),
            "relayed_p50": round(re, 4),
            "relayed_ratio": round(re / bl, 2),
            "relayed_delivery": delivered / messages,
            "push_seconds": push,
            "private_syns": sum(lab.private_syns().values()),
            "private_syns_by_router": lab.private_syns(),
            "relay_bytes_per_message": round((bytes1 - bytes0 - idle_bytes) / messages),
            "relay_cpu_ms_per_message": round(1000 * (cpu1 - cpu0 - idle_cpu) / messages, 2),
            "relayed_link": link,
        }
    finally:
        lab.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10)
    args = parser.parse_args()
    reason = available()
    if reason is not None:
        print(json.dumps({"skipped": reason}))
        return 1
    print(json.dumps(run(args.messages)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
