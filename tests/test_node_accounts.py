"""Revoking and recovering on real nodes (issue: Accounts and devices, Tests)."""

from __future__ import annotations

import pytest

from node.errors import RpcError
from node.netdemo import Demo, link_devices

from .process import smu, start_nodes, statuses

pytestmark = pytest.mark.process


def test_mutual_revocation_is_disputed_everywhere_until_recovery(demo: Demo) -> None:
    phone, laptop, watcher, fresh = start_nodes(demo, ["phone", "laptop", "watcher", "fresh"])
    for a, b in ((phone, watcher), (laptop, watcher), (fresh, watcher)):
        demo.connect(a, b)
    bob = phone.client.call("account.create", name="bob")
    link_devices(demo, phone, laptop, "laptop")
    demo.wait_converged(demo.nodes)
    demo.partition([phone], [laptop, watcher, fresh])
    phone.client.call("device.revoke", device="laptop")
    laptop.client.call("device.revoke", device="phone", confirm_last=True)
    demo.heal([phone], [laptop, watcher, fresh])
    demo.wait_converged(demo.nodes)
    docs = [n.client.call("account.show", account=bob["account_id"]) for n in demo.nodes]
    assert {d["status"] for d in docs} == {"disputed"}
    assert len({d["state_digest"] for d in docs}) == 1
    assert statuses(watcher, bob["account_id"]) == {"phone": "revoked", "laptop": "revoked"}

    # A revoked device trying to act gets one clear line.
    r = smu(phone, "device", "link")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not active" in r.stderr

    fresh.client.call(
        "account.recover", account=bob["account_id"], recovery_key=bob["recovery_key"]
    )
    demo.wait_converged(demo.nodes)
    for n in demo.nodes:
        doc = n.client.call("account.show", account=bob["account_id"])
        assert doc["status"] == "ok"
        assert {d["name"]: d["status"] for d in doc["devices"]}["fresh"] == "active"


def test_cascade_last_device_and_cli_errors(demo: Demo) -> None:
    phone, laptop, tablet = start_nodes(demo, ["phone", "laptop", "tablet"])
    demo.connect(phone, laptop)
    demo.connect(laptop, tablet)
    bob = phone.client.call("account.create", name="bob")
    link_devices(demo, phone, laptop, "laptop")
    link_devices(demo, laptop, tablet, "tablet")
    demo.wait_converged(demo.nodes)

    r = smu(phone, "device", "revoke", "no-such-device")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no single device" in r.stderr

    r = smu(phone, "device", "revoke", "laptop", "--cascade", "--json")
    assert r.returncode == 0, r.stderr
    assert statuses(phone, bob["account_id"]) == {
        "phone": "active",
        "laptop": "revoked",
        "tablet": "revoked",
    }

    r = smu(phone, "device", "revoke", "phone")
    assert r.returncode == 1 and "last active device" in r.stderr and r.stderr.count("\n") == 1
    assert statuses(phone, bob["account_id"])["phone"] == "active"
    r = smu(phone, "device", "revoke", "phone", "--yes")
    assert r.returncode == 0
    assert statuses(phone, bob["account_id"])["phone"] == "revoked"

    r = smu(phone, "account", "history", "--json")
    assert r.returncode == 0 and '"revoked by' not in r.stderr

    with pytest.raises(RpcError, match="recovery key"):
        tablet.client.call("account.recover", account=bob["account_id"], recovery_key="0" * 56)
