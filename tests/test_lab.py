"""The NAT lab (tests/lab/netlab.py): real nodes in network namespaces
behind nftables NATs (PROTOCOL.md §17.4, §17.5).

The default suite runs the essential scenarios (punching through two
port-preserving NATs and surviving the public nodes; a symmetric NAT that
only the relay crosses; a push to a returning recipient); the rest is
``slow``.  Every scenario counts, at the lab's routers, the SYNs that left
a host for a private or unroutable destination: none may."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.netlab import Lab, available, leftover_namespaces
from tests.lab.scenario import (
    befriend,
    build,
    connection,
    reach,
    send_and_time,
    texts,
    wait,
)

pytestmark = [pytest.mark.lab, pytest.mark.process]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    reason = available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs as root and must run the NAT lab: {reason}")
        pytest.skip(reason)
    built = Lab(tmp_path)
    try:
        yield built
    finally:
        built.close()
        assert leftover_namespaces(built.prefix) == []


def no_private_syns(lab: Lab) -> None:
    counts = lab.private_syns()
    assert all(n == 0 for n in counts.values()), f"SYNs to private destinations: {counts}"
    readable_logs(lab)


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING) [\w.]+: ")


def readable_logs(lab: Lab) -> None:
    """Every node's log so far: one formatted line per record, no traceback,
    nothing at ERROR, nothing that bypassed the node's format."""
    for h in lab.hosts:
        path = h.dir / "node.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        bad = [line for line in lines if not LOG_LINE.match(line)]
        assert not bad, f"{h.name}: {len(bad)} unreadable log lines, first: {bad[:5]}"


def test_lab_classifier_file_is_refused_on_the_main_network(tmp_path: Path) -> None:
    import subprocess
    import sys

    d = tmp_path / "n"
    subprocess.run(
        [sys.executable, "-m", "node.cli", "init", "--network", "smu-main", "--data-dir", str(d)],
        check=True,
        capture_output=True,
    )
    (tmp_path / "prefixes").write_text("100.64.0.0/11\n")
    run = subprocess.run(
        [
            *(sys.executable, "-m", "node.cli", "node", "run", "--data-dir", str(d)),
            *("--lab-prefixes", str(tmp_path / "prefixes")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "main network" in run.stderr


def test_two_nats_relay_then_punch_then_survive_the_public_nodes(lab: Lab) -> None:
    world = build(lab, [False, False])
    a, b = world.hosts
    for p in world.pubs:
        wait(lab, lambda p=p: reach(p)["reachability"] == "public", what="public verdicts")
    for h in (a, b):
        wait(lab, lambda h=h: reach(h)["reachability"] == "private", what="private verdicts")
        assert reach(h)["advertised"] == []  # nothing private, nothing unconfirmed
    befriend(world, a, b)
    # their records name their relays, and nothing private
    for h in (a, b):
        assert reach(h)["relay"]["offered"] and reach(h)["relay"]["reservations"] == 0
    send_and_time(lab, a, b, "bob", "alice", "hello through the relay")
    # the delivery formed a link; hole punching makes it direct
    wait(lab, lambda: connection(a, b.peer_id) == "direct", timeout=60, what="a direct link")
    wait(lab, lambda: connection(b, a.peer_id) == "direct", what="direct at both ends")
    send_and_time(lab, b, a, "alice", "bob", "hello back, directly")
    for p in world.pubs:
        p.stop()
    for i in range(3):
        send_and_time(lab, a, b, "bob", "alice", f"still here {i}")
    assert texts(b, "alice")[-1] == "still here 2"
    no_private_syns(lab)


def test_symmetric_nat_punching_fails_the_relay_carries(lab: Lab) -> None:
    world = build(lab, [False, True])
    a, b = world.hosts
    befriend(world, a, b)
    took = []
    for i in range(3):
        took.append(send_and_time(lab, a, b, "bob", "alice", f"relayed {i}"))
        took.append(send_and_time(lab, b, a, "alice", "bob", f"relayed back {i}"))
    assert [t for t in texts(b, "alice") if not t.startswith("relayed back")] == [
        "relayed 0",
        "relayed 1",
        "relayed 2",
    ]
    # through a circuit, not a mailbox's poll (30 s)
    assert max(took) < 5, took
    assert sum(reach(p)["relay"]["circuits"] for p in world.pubs) >= 1
    link = connection(a, b.peer_id)
    assert link is not None and link.startswith("relayed"), link
    no_private_syns(lab)


def test_returning_recipient_gets_the_deposit_by_push(lab: Lab) -> None:
    world = build(lab, [False, False])
    a, b = world.hosts
    befriend(world, a, b)
    send_and_time(lab, a, b, "bob", "alice", "first")
    b.stop()
    a.call("message.send", contact="bob", text="while you were away")
    # deposited at one of bob's mailboxes
    wait(
        lab,
        lambda: any(
            p.call("node.status")["reachability"]["mailbox_notices"]["waiting"] for p in world.pubs
        ),
        what="a deposit",
    )
    b.start(bootstrap=world.bootstrap, extra=["--reach-fast"])
    b.wait_ready()
    wait(lab, lambda: "while you were away" in texts(b, "alice"), timeout=30, what="the push")
    pushed = sum(reach(p)["mailbox_notices"]["sent"] for p in world.pubs)
    assert pushed >= 1
    no_private_syns(lab)


@pytest.mark.slow
def test_a_liar_about_our_address_cannot_make_us_advertise_it(lab: Lab) -> None:
    import subprocess
    import sys

    pubs = [lab.public_host(f"pub{i}", i) for i in range(2)]
    for p in pubs:
        p.start(extra=["--reach-fast"])
    for p in pubs:
        p.wait_ready()
    pubs[0].call("peers.connect", addr=pubs[1].addr)
    liar_host = lab.public_host("liar", 2)
    fake = "/ip4/100.70.7.7/tcp/4001"
    liar = subprocess.Popen(
        [
            *("ip", "netns", "exec", liar_host.ns, sys.executable, "-m", "tests.lab.liar"),
            *(f"/ip4/{liar_host.ip}/tcp/4001", fake),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    lab.procs.append(liar)  # type: ignore[arg-type]
    assert liar.stdout is not None
    liar_id = liar.stdout.readline().strip()
    router = lab.nat("nat0", 0)
    host = lab.nat_host(router, "host0")
    boot = [p.addr for p in pubs] + [f"/ip4/{liar_host.ip}/tcp/4001/p2p/{liar_id}"]
    host.start(bootstrap=boot, extra=["--reach-fast"])
    host.wait_ready()
    wait(lab, lambda: reach(host)["stats"]["probes"] >= 3, what="probes of all three")
    wait(lab, lambda: reach(host)["reachability"] == "private", what="a private verdict")
    doc = reach(host)
    assert fake not in doc["advertised"] and doc["confirmed"] == {}
    status = host.call("node.status")
    assert all("100.70.7.7" not in a for a in status["listen"])
    no_private_syns(lab)


@pytest.mark.slow
def test_a_relay_client_over_its_limit_is_cut_off_and_others_go_on(lab: Lab) -> None:
    world = build(lab, [False, True, False], extra=("--relay-circuit-bytes", "400000"))
    a, c, b = world.hosts
    befriend(world, a, c)
    # b also writes to carol (on c) through the relay
    erin = b.call("account.create", name="erin")
    inv = c.call("invite.create")
    wait(lab, lambda: c.call("node.status")["accounts"] == 3, what="erin's account at bob")
    b.call("contact.add", ref=inv["invite"], name="bob")
    c.call("contact.add", ref=erin["account_id"], name="erin")
    wait(lab, lambda: len(reach(b)["relays"]) >= 2, what="erin's relays")
    big = "x" * 60_000
    for i in range(12):  # about 720 kB: over the circuit's 400 kB
        a.call("message.send", contact="bob", text=f"{i} {big}")
    wait(
        lab,
        lambda: sum(reach(p)["relay"]["circuits_cut"] for p in world.pubs) >= 1,
        timeout=120,
        what="a circuit cut at its limit",
    )
    # erin's circuit has a budget of its own
    assert send_and_time(lab, b, c, "bob", "erin", "unaffected") < 10
    # and alice's messages still all arrive, over new circuits
    wait(
        lab,
        lambda: sum(t.endswith(big) for t in texts(c, "alice")) == 12,
        timeout=180,
        what="every large message",
    )
    no_private_syns(lab)
