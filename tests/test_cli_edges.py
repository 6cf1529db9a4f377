"""Rough edges a new user hit with real nodes (issue 12, item 5): one daemon
per data directory, a port in use, signals, a bootstrap peer coming back,
joining with the link on standard input, names for accounts, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from node.netdemo import Demo, DemoNode

from .process import smu, start_nodes, wait_for

pytestmark = pytest.mark.process


def _run(node: DemoNode, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``smu node run`` on ``node``'s data directory, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "node.cli", "node", "run", "--data-dir", str(node.dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


def test_one_daemon_per_data_dir_and_a_port_in_use(demo: Demo) -> None:
    first, other = start_nodes(demo, ["first", "other"])
    assert first.proc is not None
    second = _run(first)
    assert second.returncode == 1
    assert f"a node is already running here (pid {first.proc.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    # the first is still reachable: its socket is where it was
    assert first.client.call("node.status")["peer_id"] == first.peer_id

    port = first.addr.split("/tcp/")[1].split("/")[0]
    other.stop()
    taken = _run(other, "--listen", f"/ip4/127.0.0.1/tcp/{port}")
    assert taken.returncode == 1 and f"TCP port {port}" in taken.stderr and "in use" in taken.stderr
    assert taken.stderr.count("\n") == 1


def test_second_interrupt_is_not_a_traceback(demo: Demo) -> None:
    n, peer = start_nodes(demo, ["n", "peer"])
    demo.connect(n, peer)
    assert n.proc is not None
    n.proc.send_signal(signal.SIGINT)
    # the second Ctrl-C comes while it shuts down: its links are closed
    wait_for(lambda: peer.status()["peers"] == 0, what="n closes its link")
    n.proc.send_signal(signal.SIGINT)
    assert n.proc.wait(30) == 0
    log = (n.dir / "node.log").read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log


def test_bootstrap_peer_redialled_when_it_returns(demo: Demo) -> None:
    (boot,) = start_nodes(demo, ["boot"])
    (edge,) = start_nodes(demo, ["edge"], bootstrap=[boot.addr])
    wait_for(lambda: edge.status()["peers"] == 1, what="edge links with its bootstrap peer")
    port = boot.addr.split("/tcp/")[1].split("/")[0]
    boot.stop()
    wait_for(lambda: edge.status()["peers"] == 0, what="edge sees the bootstrap peer gone")
    # edge's redials fail while it is away: once they have (its log says so) ...
    wait_for(
        lambda: "bootstrap peer unreachable" in (edge.dir / "node.log").read_text(),
        what="edge logs the failed dial",
    )
    boot.start_existing(listen=f"/ip4/127.0.0.1/tcp/{port}")
    boot.wait_ready()
    # ... it is back within a few of edge's retries (libp2p alone would hold
    # the peer back for a minute after a failed dial)
    wait_for(lambda: edge.status()["peers"] == 1, timeout=15, what="edge redials its bootstrap")
    log = (edge.dir / "node.log").read_text()
    assert "Failed to open" not in log and "Traceback" not in log
    assert log.count("bootstrap peer unreachable") == 1, log
    assert "connection refused" in log and "reached again" in log


def test_join_from_stdin_without_terminal_keeps_the_link(demo: Demo) -> None:
    phone, fresh = start_nodes(demo, ["phone", "fresh"])
    demo.connect(phone, fresh)
    phone.client.call("account.create", name="bob")
    offer = phone.client.call("device.link")

    def join(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "node.cli", "device", "join", "-", *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SMU_HOME": str(fresh.dir)},
            start_new_session=True,  # no controlling terminal to ask on
        )

    first = join("--name", "laptop")
    _, err = first.communicate(offer["link"] + "\n", timeout=60)
    assert first.returncode == 1 and "no terminal" in err and "--yes" in err, err
    (mine,) = [r for r in phone.client.call("device.pending")["requests"] if r["id"] == offer["id"]]
    assert mine["state"] == "offered" and not mine["awaiting_approval"]

    # the same link still works
    second = join("--name", "laptop", "--yes")
    assert second.stdin is not None
    second.stdin.write(offer["link"] + "\n")
    second.stdin.close()

    def asking() -> Any:
        reqs = phone.client.call("device.pending")["requests"]
        return [r for r in reqs if r["id"] == offer["id"] and r["awaiting_approval"]]

    wait_for(asking, what="the join request reaches the phone")
    phone.client.call("device.approve", id=offer["id"])
    assert second.wait(60) == 0
    assert second.stdout is not None and "joined" in second.stdout.read()


def test_accounts_by_contact_name_and_export(demo: Demo) -> None:
    a, b = start_nodes(demo, ["a", "b"])
    demo.connect(a, b)
    alice = a.client.call("account.create", name="alice")
    bob = b.client.call("account.create", name="bob")
    demo.wait_converged(demo.nodes)

    # a contact's name, the display name of a known account, a handle, an id
    a.client.call("contact.add", ref=bob["handle"], name="bobby")
    for ref in ("bobby", bob["handle"], bob["account_id"]):
        r = smu(a, "account", "show", ref, "--json")
        assert r.returncode == 0, r.stdout
        assert json.loads(r.stdout)["account_id"] == bob["account_id"]

    # a stranger's message is a request; accepting it by the sender's name
    a.client.call("message.send", contact="bobby", text="hello bob")
    wait_for(lambda: b.client.call("message.requests")["requests"], what="b has a request")
    r = smu(b, "requests", "accept", "alice")
    assert r.returncode == 0, r.stderr
    assert "accepted alice" in r.stdout
    b.client.call("message.send", contact="alice", text="hi alice")

    # a device link where an invite belongs: says what it is
    link = a.client.call("device.link")["link"]
    r = smu(b, "contact", "add", link)
    assert r.returncode == 1 and "device link" in r.stderr and "device join" in r.stderr

    # export: JSON Lines, a header, contacts and messages, no secrets
    r = smu(b, "export")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[0]["type"] == "export" and lines[0]["account"] == bob["account_id"]
    contacts = [x for x in lines if x["type"] == "contact"]
    assert [(c["name"], c["account_id"]) for c in contacts] == [("alice", alice["account_id"])]
    texts = [(m["outgoing"], m["text"]) for m in lines if m["type"] == "message"]
    assert texts == [(False, "hello bob"), (True, "hi alice")]
    keys = json.loads((b.dir / "keys.json").read_text())
    for secret in (bob["recovery_key"], link, *[str(v) for v in keys.values()]):
        if len(secret) > 8:
            assert secret not in r.stdout
    out_file = b.dir / "export.jsonl"
    r = smu(b, "export", "--out", str(out_file))
    assert r.returncode == 0 and out_file.stat().st_mode & 0o077 == 0
    assert len(out_file.read_text().splitlines()) == len(lines)


def test_peers_connect_error_is_readable(demo: Demo) -> None:
    a, b = start_nodes(demo, ["a", "b"])
    b.stop()
    r = smu(a, "peers", "connect", b.addr)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "connection refused" in r.stderr.lower()
    for internal in ("Swarm", "MultiError", "Error 1", "Exception"):
        assert internal not in r.stderr
