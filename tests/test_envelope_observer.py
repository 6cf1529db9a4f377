"""The observer test (issue 13; PROTOCOL.md §15.1, §15.22): given every
envelope a mailbox saw and the whole public log (every account's device
and encryption keys) plus every record's signed prekey, nothing in the
clear names the sender's account, for senders with 1, 2 and 5 devices, in
both wrap schemes.  Texts go with a copy for the sender's other devices,
as a node sends them."""

from __future__ import annotations

import pytest

from protocol.messaging.content import SentCopy, Text
from protocol.messaging.envelope import SealedEnvelope, peek

from .conftest import FAST
from .scheme2_support import Dev, World2


def _send_text(w: World2, sender: Dev, to: bytes, text: str) -> list[SealedEnvelope]:
    """The text, and its copy for the sender's other devices if it has any."""
    env = sender.send(to, Text(text))
    out = [env]
    own = w.a if sender.account == w.a.account else w.b
    if len(own.keys) > 1:
        out.append(sender.send(sender.account, SentCopy(to, env.message_id, Text(text))))
    return out


def _identifiers(w: World2, account: bytes) -> list[bytes]:
    """What the public log and the records say of one account."""
    out = [account]
    for d in w.devs.values():
        if d.account == account:
            out += [d.keys.sign_public, d.keys.enc_public, d.spk]
    return out


@pytest.mark.parametrize("scheme", [1, 2])
@pytest.mark.parametrize("sender_devices", [1, 2, 5])
def test_nothing_in_the_clear_names_the_sender(sender_devices: int, scheme: int) -> None:
    w = World2(bob_devices=2, alice_devices=sender_devices)
    if scheme == 1:
        for d in w.devs.values():
            d.reach.clear()
    alice = [d for d in w.devs.values() if d.account == w.a.account]
    bob = [d for d in w.devs.values() if d.account == w.b.account]
    seen: list[tuple[SealedEnvelope, bytes]] = []  # (envelope, true sender account)
    last_round: list[tuple[SealedEnvelope, bytes]] = []
    for rnd in range(3):
        last_round = []
        for d in alice:
            for env in _send_text(w, d, w.b.account, f"from {d.label} #{rnd}"):
                last_round.append((env, w.a.account))
        for d in bob:
            for env in _send_text(w, d, w.a.account, f"from {d.label} #{rnd}"):
                last_round.append((env, w.b.account))
        # every envelope is delivered and opened, so sessions move on
        for env, _ in last_round:
            for dev in w.devs.values():
                if dev.keys.sign_public in env.wrapped_for:
                    dev.open(env.raw)
        seen += last_round

    active = {acc: {d.keys.sign_public for d in w.devs.values() if d.account == acc}
              for acc in (w.a.account, w.b.account)}  # fmt: skip
    others = {w.a.account: w.b.account, w.b.account: w.a.account}
    ephemerals: set[bytes] = set()
    for env, sender in seen:
        header = peek(env.raw, FAST)
        recipient = header.recipient_account
        # the header lists every active device of the recipient account,
        # none missing (an absent device would be the sender's) and no other
        assert set(header.devices) == active[recipient]
        # no identifier of the other account anywhere in the bytes: an
        # envelope to bob is from alice or bob, and nothing says which
        for ident in _identifiers(w, others[recipient]):
            assert ident not in env.raw
        if sender != recipient:  # what the mailbox may not learn: the sender
            for ident in _identifiers(w, sender):
                assert ident not in env.raw
        for wrap in header.wraps:
            ephemerals.add(wrap.data[:32])
    # nothing repeats between envelopes: no pairing of a text and its copy
    assert len({peek(e.raw, FAST).message_id for e, _ in seen}) == len(seen)
    assert len(ephemerals) == sum(len(peek(e.raw, FAST).wraps) for e, _ in seen)

    # sizes: a copy to alice and a text from bob to alice look alike (padded
    # contents, same wraps) once the sessions are past their set-up
    if sender_devices > 1:
        to_alice = [(e, s) for e, s in last_round if e.recipient_account == w.a.account]
        from_bob = {len(e.raw) for e, s in to_alice if s == w.b.account}
        copies = {len(e.raw) for e, s in to_alice if s == w.a.account}
        assert from_bob and copies and from_bob == copies, (from_bob, copies)
