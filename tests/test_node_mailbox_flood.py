"""Mailboxes that strangers cannot fill, between real nodes (PROTOCOL.md
§15.16-§15.18; issue "Survive a hostile network").

100 fresh peer ids (raw libp2p hosts in this process, in ten networks)
flood one device's mailbox while the device is offline.  Meanwhile the
device's contact deposits with the tokens the device handed it, and a
stranger from an eleventh network deposits now and then.  On loopback every
peer would be one network group, so the mailbox node is a ``LabNode``,
whose test-only group mapping tells 127.a.b.* apart by /24.  Then the
mailbox restarts and the device, back online, gets its contact's messages
from it."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import trio

from node.netdemo import Demo
from protocol.core.params import TESTNET
from protocol.messaging.mailbox import Deposited, MailboxLimits, deposit_request

from .mailbox_support import junk_envelope
from .process import (
    contacts_through_a_mailbox,
    delivered,
    mailbox_peer,
    texts,
    wait_for,
)

pytestmark = pytest.mark.process

ATTACKERS = 100
ATTACKER_NETWORKS = 10
DEPOSITS_EACH = 20
STRANGER_TRIES = 10
CONTACT_MESSAGES = 5


async def _flood(addr: str, device: bytes, out: dict[str, Any], send: Any) -> None:
    answers: Counter[str] = Counter()
    stranger: list[str] = []
    started = trio.Event()
    ready = 0

    def code(answer: Any) -> str:
        return "deposited" if isinstance(answer, Deposited) else getattr(answer, "code", "?")

    def connected() -> None:
        nonlocal ready
        ready += 1
        if ready == ATTACKERS:
            started.set()

    async def attacker(i: int) -> None:
        source = f"127.0.{10 + i % ATTACKER_NETWORKS}.{1 + i // ATTACKER_NETWORKS}"
        try:
            async with mailbox_peer(addr, source) as peer:
                connected()
                for k in range(DEPOSITS_EACH):
                    env = junk_envelope(TESTNET, device, f"flood {i} {k}", 1000)
                    try:
                        answers[code(await peer.ask(deposit_request(device, env)))] += 1
                    except Exception as exc:  # a reset stream is an answer too
                        answers[type(exc).__name__] += 1
        except Exception as exc:  # a busy node may refuse a connection: count it
            answers[f"connect: {type(exc).__name__}"] += 1
            if not started.is_set():
                connected()

    async def honest_stranger() -> None:
        await started.wait()
        async with mailbox_peer(addr, "127.0.200.1") as peer:
            for k in range(STRANGER_TRIES):
                env = junk_envelope(TESTNET, device, f"stranger {k}", 1000)
                try:
                    stranger.append(code(await peer.ask(deposit_request(device, env))))
                except Exception as exc:  # counted as not taken
                    stranger.append(type(exc).__name__)
                await trio.sleep(0.3)

    async def contact() -> None:
        await started.wait()
        for k in range(CONTACT_MESSAGES):
            out["sent"].append(await trio.to_thread.run_sync(send, f"during the flood {k}"))
            await trio.sleep(0.3)

    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(ATTACKERS):
            nursery.start_soon(attacker, i)
        nursery.start_soon(honest_stranger)
        nursery.start_soon(contact)
    out.update(answers=dict(answers), stranger=stranger, seconds=time.monotonic() - t0)


def test_a_flood_of_fresh_peer_ids_keeps_neither_contacts_nor_strangers_out(demo: Demo) -> None:
    m, a, b, _, bob = contacts_through_a_mailbox(demo)
    bob_device = b.device().sign_public

    # bob's record names the mailbox with his token key, and alice holds a
    # batch of his tokens for it
    def bob_names_m() -> bool:
        records = a.client.call("device.records", account=bob["account_id"])["records"]
        return any(m.peer_id in r["mailboxes"] for r in records)

    wait_for(bob_names_m, timeout=60)
    # (a batch for m, and one for bob's own node, which pays prekey fetches, §19.16)
    wait_for(lambda: a.client.call("mailbox.status")["tokens_held"] >= 32, timeout=60)

    b.stop()  # bob is away: everything for him waits at mailboxes
    out: dict[str, Any] = {"sent": []}

    def send(text: str) -> str:
        return str(a.client.call("message.send", contact="bob", text=text)["message_id"])

    trio.run(_flood, m.addr, bob_device, out, send)

    # the contact: every message deposited (with a token: it never waited
    # in the strangers' pool, which the flood keeps full)
    for mid in out["sent"]:
        wait_for(lambda mid=mid: delivered(a, mid).get("deposited") == 1, timeout=30)
    status = m.client.call("mailbox.status")
    mine = status["devices"][bob_device.hex()]
    contact_items = mine["items"] - mine["stranger_items"]
    assert contact_items >= CONTACT_MESSAGES  # deposited as a contact's: each spent a token
    # the strangers' pool stayed within its caps, whatever the peer ids
    lim = MailboxLimits()
    assert mine["stranger_items"] <= lim.stranger_count
    assert mine["stranger_bytes"] <= lim.stranger_bytes
    # the low-rate stranger from another network got in at least half the time
    accepted = out["stranger"].count("deposited")
    assert accepted * 2 >= STRANGER_TRIES, out
    print(
        "\nflood figures:",
        {
            "attackers": ATTACKERS,
            "attacker_networks": ATTACKER_NETWORKS,
            "attacker_answers": out["answers"],
            "stranger_accepted": f"{accepted}/{STRANGER_TRIES}",
            "stranger_answers": out["stranger"],
            "contact_messages_deposited": len(out["sent"]),
            "contact_items_held": contact_items,
            "stranger_items_held": mine["stranger_items"],
            "stranger_bytes_held": mine["stranger_bytes"],
            "mailbox_bytes": status["bytes"],
            "flood_seconds": round(out["seconds"], 1),
        },
    )

    # a restart keeps the deposits; bob, back, gets alice's messages from it
    a.stop()
    m.stop()
    m.start_existing()
    m.wait_ready()
    again = m.client.call("mailbox.status")["devices"][bob_device.hex()]
    assert again["items"] == mine["items"] and again["bytes"] == mine["bytes"]
    b.start_existing([m.addr])  # m listens on a new port now; bob's saved grant names it
    b.wait_ready()
    wanted = {f"during the flood {k}" for k in range(CONTACT_MESSAGES)}
    wait_for(lambda: wanted <= set(texts(b, "alice")), timeout=60)
    # what bob fetched (the flood's junk too, which he could not open) is gone
    wait_for(
        lambda: m.client.call("mailbox.status")["devices"][bob_device.hex()]["items"] == 0,
        timeout=60,
    )
