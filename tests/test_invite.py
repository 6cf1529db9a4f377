"""Invites: round trip, typos caught, wrong network refused."""

from __future__ import annotations

import pytest

from protocol.core.errors import ChecksumError, DecodeError, WrongNetworkError
from protocol.core.invite import Invite
from protocol.core.params import TESTNET

from .conftest import FAST


def test_round_trip_text_and_uri() -> None:
    inv = Invite(
        FAST.network_id, bytes(range(32)), "Alice", ("/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo",)
    )
    assert Invite.parse(inv.to_text(), FAST) == inv
    assert Invite.parse(inv.to_uri().upper(), FAST) == inv
    spaced = " ".join(inv.to_text()[i : i + 5] for i in range(0, len(inv.to_text()), 5))
    assert Invite.parse(spaced, FAST) == inv


def test_typos_are_caught() -> None:
    text = Invite(FAST.network_id, bytes(32), "Bob", ()).to_text()
    for i in range(len("smu1inv"), len(text)):
        ch = "0" if text[i] != "0" else "1"
        with pytest.raises((ChecksumError, DecodeError)):
            Invite.parse(text[:i] + ch + text[i + 1 :], FAST)


def test_wrong_network() -> None:
    text = Invite(FAST.network_id, bytes(32), "Bob", ()).to_text()
    with pytest.raises(WrongNetworkError):
        Invite.parse(text, TESTNET)
