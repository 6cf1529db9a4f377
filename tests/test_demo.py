"""The main job: `smu demo --json` on real processes (issue: Node, Demo)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.process


def test_demo_converges_and_says_so() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "node.cli", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    last = lines[-1]
    assert last["converged"] is True and last["nodes"] >= 5
    steps = [x["step"] for x in lines]
    for step in (
        "verify",
        "message",
        "reply",
        "history",
        "offline",
        "partition",
        "race",
        "heal",
        "converged",
        "revoked-cannot-read",
        "late-joiner",
        "recover",
        "contact-changes",
    ):
        assert step in steps, step
    by_step = {x["step"]: x for x in lines}
    assert by_step["verify"]["same_on_both"] is True
    assert by_step["reply"]["conversation_on_alice_phone"] == [
        "hi bob, it's alice",
        "hello alice! (from my laptop)",
    ]
    assert by_step["history"]["conversation_on_tablet"][:2] == [
        "hi bob, it's alice",
        "hello alice! (from my laptop)",
    ]
    assert by_step["revoked-cannot-read"]["tablet_shows_it"] is False
    assert any("verify the safety number again" in c for c in by_step["contact-changes"]["changes"])
    converged = next(x for x in lines if x["step"] == "converged")
    assert converged["identical"] is True
    shown = [x["account"] for x in lines if x["step"] == "show"]
    final = {d["name"]: d["status"] for d in shown[-1]["devices"]}
    assert final["totally-bob"] == "void" and final["tablet"] == "revoked"
    assert final["new-phone"] == "active"
    # The recovery key never appears in the demo's JSON output.
    assert "recovery_key" not in r.stdout
