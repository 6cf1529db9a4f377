"""A join whose answer never reached the joining device (the approval came
after its own deadline, or the stream broke) may still have added it: once
the add-device event reaches its node, the node takes the account as its
own (PROTOCOL.md §14.6), and only an account whose log shows this device
ACTIVE, which needs this device's proof of possession for that account."""

from __future__ import annotations

from pathlib import Path

from node.daemon import Daemon
from node.datadir import DataDir
from protocol.core.params import TESTNET

from .conftest import History


def _daemon(tmp_path: Path) -> Daemon:
    dd = DataDir(tmp_path / "joiner")
    secrets = dd.init(TESTNET.network_id, "laptop", None)
    return Daemon(dd, secrets, ["/ip4/127.0.0.1/tcp/0"], [])


async def test_a_join_that_completed_without_its_answer_is_taken_from_the_log(
    tmp_path: Path,
) -> None:
    daemon = _daemon(tmp_path)
    try:
        alice = History(TESTNET, name="alice")
        alice.keys["laptop"] = daemon.secrets.device  # the key its JOIN introduced
        other = History(TESTNET, name="mallory")  # an account that never added it
        for h in (alice, other):
            daemon.ledger.ingest(h.genesis.raw)
        daemon._delivered({"account": other.account.hex(), "kind": "genesis"})
        daemon._delivered({"account": alice.account.hex(), "kind": "genesis"})
        assert daemon.account() is None  # not added yet: nothing adopted
        added = alice.add("a1", "d0", "laptop", ["g"])
        daemon.ledger.ingest(added.raw)
        daemon._delivered({"account": alice.account.hex(), "kind": "profile"})
        assert daemon.account() is None  # a profile never adds a device: not looked at
        daemon._delivered({"account": alice.account.hex(), "kind": "add_device"})
        assert daemon.account() == alice.account
        assert daemon.datadir.read_config()["account"] == alice.account.hex()  # durable
        me = daemon.secrets.device.sign_public
        assert daemon.records.get(alice.account, me) is not None  # where to reach it
        # an account of its own is never replaced by another's word
        daemon._delivered({"account": other.account.hex(), "kind": "add_device"})
        assert daemon.account() == alice.account
    finally:
        daemon.db.close()


async def test_additions_of_other_devices_compute_no_state_and_a_revoked_key_is_not_taken(
    tmp_path: Path,
) -> None:
    """Only a key that the account introduces can be ACTIVE in it, so an
    addition of somebody else's device costs a catch-up a lookup, not the
    account's state (bench/catchup.py); an introduced key that is revoked
    again is still not taken (§14.6 needs it ACTIVE)."""
    daemon = _daemon(tmp_path)
    ledger = daemon.ledger
    states: list[bytes] = []
    state = ledger.state

    def counted(account: bytes):  # type: ignore[no-untyped-def]
        states.append(account)
        return state(account)

    ledger.state = counted  # type: ignore[method-assign]
    try:
        bob = History(TESTNET, name="bob")
        ledger.ingest(bob.genesis.raw)
        ledger.ingest(bob.add("a1", "d0", "phone", ["g"]).raw)
        daemon._delivered({"account": bob.account.hex(), "kind": "add_device"})
        assert states == [] and daemon.account() is None
        alice = History(TESTNET, name="alice")
        alice.keys["laptop"] = daemon.secrets.device
        ledger.ingest(alice.genesis.raw)
        ledger.ingest(alice.add("a1", "d0", "laptop", ["g"]).raw)
        ledger.ingest(alice.revoke("r1", "d0", "laptop", ["a1"]).raw)
        daemon._delivered({"account": alice.account.hex(), "kind": "add_device"})
        assert states == [alice.account]  # introduced here: the state decides
        assert daemon.account() is None  # revoked again: not ACTIVE, not taken
    finally:
        daemon.db.close()


async def test_only_events_that_can_end_a_device_end_sessions(tmp_path: Path) -> None:
    """Sessions end with the log (§19.11), checked for the event kinds that
    can revoke or re-key a device; a catch-up's additions and profiles skip
    the check (bench/catchup.py)."""
    daemon = _daemon(tmp_path)
    try:
        checked: list[bytes] = []
        daemon.messages.sessions.log_changed = checked.append  # type: ignore[method-assign]
        account = bytes(32).hex()
        for kind in ("genesis", "add_device", "profile"):
            daemon._delivered({"account": account, "kind": kind})
        assert checked == []
        for kind in ("revoke_device", "recover", "rotate_enc_key", "rotate_recovery", "later"):
            daemon._delivered({"account": account, "kind": kind})
        assert checked == [bytes(32)] * 5
    finally:
        daemon.db.close()
