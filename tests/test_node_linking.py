"""Linking devices between separate processes over loopback
(issue: Accounts and devices, Tests)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest

from node.errors import RpcError
from node.netdemo import Demo, link_devices
from protocol.linking.machines import LinkOffer

from .process import start_nodes

pytestmark = pytest.mark.process


def test_link_chain_and_misuse(demo: Demo) -> None:
    phone, laptop, tablet, other = start_nodes(demo, ["phone", "laptop", "tablet", "other"])
    for x in (laptop, tablet, other):
        demo.connect(phone, x)
    bob = phone.client.call("account.create", name="bob")

    r = link_devices(demo, phone, laptop, "laptop")
    assert r["joined"] and r["account"]["account_id"] == bob["account_id"]
    assert r["started"]["account"]["handle"] == bob["handle"]
    # The second device links a third.
    r = link_devices(demo, laptop, tablet, "tablet")
    assert r["joined"]
    demo.wait_converged(demo.nodes)
    doc = other.client.call("account.show", account=bob["account_id"])
    approvers = {d["name"]: (d["status"], d["approved_by"].split(" (")[0]) for d in doc["devices"]}
    assert approvers["laptop"] == ("active", "phone")
    assert approvers["tablet"] == ("active", "laptop")

    # A reused link is refused.
    with pytest.raises(RpcError, match="link"):
        other.client.call("device.join", link=r["offer"]["link"], name="again")

    # A wrong secret (valid checksum) fails; three failures burn the link.
    offer = phone.client.call("device.link")
    real = LinkOffer.parse(offer["link"])
    forged = dataclasses.replace(real, secret=bytes(16)).to_text()
    for _ in range(3):
        with pytest.raises(RpcError, match="link"):
            other.client.call("device.join", link=forged, name="intruder")
    with pytest.raises(RpcError, match="link"):
        other.client.call("device.join", link=offer["link"], name="other")
    assert other.client.call("node.status")["account"] is None

    # A rejected request changes nothing.
    r = link_devices(demo, phone, other, "other", approve=False)
    assert "error" in r and "reject" in r["error"]
    assert other.client.call("node.status")["account"] is None
    doc = phone.client.call("account.show")
    assert "other" not in {d["name"] for d in doc["devices"]}

    # An expired link is refused.
    offer = phone.client.call("device.link", ttl_seconds=1)
    time.sleep(1.2)
    with pytest.raises(RpcError, match="expired"):
        other.client.call("device.join", link=offer["link"], name="late")


def test_cli_link_typo_is_one_line(demo: Demo) -> None:
    (phone,) = start_nodes(demo, ["phone"])
    phone.client.call("account.create", name="bob")
    offer = phone.client.call("device.link")
    typo = offer["link"][:-3] + ("x" if offer["link"][-3] != "x" else "y") + offer["link"][-2:]
    (fresh,) = start_nodes(demo, ["fresh"])
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.cli",
            "device",
            "join",
            typo,
            "--yes",
            "--data-dir",
            str(fresh.dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "typo" in r.stderr
