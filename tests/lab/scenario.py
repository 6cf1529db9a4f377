"""Building blocks of NAT lab scenarios, shared by tests/test_lab.py and
bench/natlab.py: a world of public nodes and NATed hosts, accounts that
know each other, and waits that show the nodes' logs when they fail."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.lab.netlab import Host, Lab

T = TypeVar("T")
FAST = ["--reach-fast"]


def wait(
    lab: Lab, fn: Callable[[], T], timeout: float = 60.0, what: str = "", step: float = 0.1
) -> T:
    deadline = time.monotonic() + timeout
    value = fn()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}; last {value!r}\n{lab.logs()}"
            )
        time.sleep(step)
        value = fn()
    return value


@dataclass
class World:
    lab: Lab
    pubs: list[Host]
    hosts: list[Host]

    @property
    def bootstrap(self) -> list[str]:
        return [p.addr for p in self.pubs]


def build(lab: Lab, nats: list[bool], publics: int = 3, extra: tuple[str, ...] = ()) -> World:
    """``publics`` public nodes linked with each other, and one host behind
    its own NAT per entry of ``nats`` (True: symmetric), bootstrapped from
    the public nodes."""
    pubs = [lab.public_host(f"pub{i}", i) for i in range(publics)]
    for p in pubs:
        p.start(extra=[*FAST, *extra])
    for p in pubs:
        p.wait_ready()
    for p in pubs:
        for q in pubs:
            if p is not q:
                p.call("peers.connect", addr=q.addr)
    hosts = []
    for i, symmetric in enumerate(nats):
        router = lab.nat(f"nat{i}", i, symmetric=symmetric)
        hosts.append(lab.nat_host(router, f"host{i}"))
    world = World(lab, pubs, hosts)
    for h in hosts:
        h.start(bootstrap=world.bootstrap, extra=FAST)
    for h in hosts:
        h.wait_ready()
    return world


def reach(host: Host) -> dict[str, Any]:
    doc: dict[str, Any] = host.call("node.status")["reachability"]  # type: ignore[assignment]
    return doc


def befriend(world: World, a: Host, b: Host) -> None:
    """Accounts alice on ``a`` and bob on ``b``, each the other's contact,
    each with relay slots and a published record."""
    lab = world.lab
    alice = a.call("account.create", name="alice")
    b.call("account.create", name="bob")
    inv = b.call("invite.create")
    everyone = [*world.pubs, a, b]
    wait(
        lab, lambda: all(h.call("node.status")["accounts"] == 2 for h in everyone), what="accounts"
    )
    a.call("contact.add", ref=inv["invite"], name="bob")
    b.call("contact.add", ref=alice["account_id"], name="alice")
    for h in (a, b):
        wait(lab, lambda h=h: len(reach(h)["relays"]) >= 2, what=f"{h.name}'s relay slots")  # type: ignore[misc]


def texts(host: Host, contact: str) -> list[str]:
    msgs = host.call("message.conversation", contact=contact)["messages"]
    return [m["text"] for m in msgs]  # type: ignore[attr-defined]


def connection(host: Host, peer: str) -> str | None:
    for p in host.call("peers.list")["peers"]:  # type: ignore[attr-defined]
        if p["peer_id"] == peer:
            return str(p["connection"])
    return None


def send_and_time(lab: Lab, a: Host, b: Host, to: str, back: str, text: str) -> float:
    before = len(texts(b, back))
    t0 = time.monotonic()
    a.call("message.send", contact=to, text=text)
    wait(lab, lambda: len(texts(b, back)) > before, what=f"{text!r} at {b.name}", step=0.005)
    return time.monotonic() - t0
