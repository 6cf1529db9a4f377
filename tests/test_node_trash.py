"""The account's trash on a node (PROTOCOL.md §15.19, ``trash/`` keys):
a deleted message is hidden, listed in the trash, restorable, and purged
only after ``TRASH_DAYS``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.api.schema import ParamError
from node.control import RpcFailure
from node.services.trash import TRASH_MS, TrashService, trash_key

from .conftest import T0, History
from .messaging_support import Node, Peer


def _shown(node: Node) -> list[str]:
    return [m["text"] for m in node.service._docs(node.service.store.inbox(1, 0))]


@pytest.fixture
def world(tmp_path: Path) -> tuple[Node, TrashService, list[Any], list[int]]:
    alice, bob = History(name="alice"), History(name="bob")
    node = Node(tmp_path, alice, [bob])
    node.contacts.add(bob.account, "bob")
    bob_device = Peer(bob, alice)
    opened = [node.service.receive(bob_device.seal(t).raw) for t in ("one", "two", "three")]
    now = [T0]
    trash = TrashService(node.service.store, node.contacts.sync, clock_ms=lambda: now[0])
    node.service.hidden = trash.hidden
    return node, trash, opened, now


async def test_deleted_messages_are_hidden_restorable_and_purged_after_the_days(
    world: tuple[Node, TrashService, list[Any], list[int]],
) -> None:
    node, trash, (one, two, _), now = world
    assert _shown(node) == ["one", "two", "three"]
    ids = [o.message_id.hex() for o in (one, two)]
    answer = await trash.delete({"ids": ids})
    assert answer["deleted"] == ids and answer["unknown"] == []
    assert _shown(node) == ["three"]
    # the synced state names the sender and the id, valued with the time
    assert node.contacts.sync.value(trash_key(one.sender_account, one.message_id)) == T0

    listed = (await trash.list_trash({}))["trash"]
    assert {x["text"] for x in listed} == {"one", "two"}
    await trash.restore({"ids": [two.message_id.hex()]})
    assert _shown(node) == ["two", "three"]

    # a day short of the limit nothing is purged; at the limit it is
    now[0] = T0 + TRASH_MS - 1
    assert trash.purge_due() == T0 + TRASH_MS
    assert node.service.store.by_id(one.message_id) is not None
    now[0] = T0 + TRASH_MS
    assert trash.purge_due() is None
    assert node.service.store.by_id(one.message_id) is None
    assert node.service.store.by_id(two.message_id) is not None
    (gone,) = (await trash.list_trash({}))["trash"]
    assert gone["text"] is None and gone["message_id"] == one.message_id.hex()
    # restoring what was purged finds nothing to bring back
    assert (await trash.restore({"ids": [one.message_id.hex()]}))["restored"] == [
        one.message_id.hex()
    ]
    assert _shown(node) == ["two", "three"]


async def test_bad_ids_are_refused_and_change_nothing(
    world: tuple[Node, TrashService, list[Any], list[int]],
) -> None:
    node, trash, _, _ = world
    for bad in ({"ids": []}, {"ids": ["zz"]}, {"ids": ["00"] * 501}):
        with pytest.raises(RpcFailure):
            await trash.delete(bad)
    # no ids, or not a list of strings: refused as served, before the method runs (§13)
    for shape in ({}, {"ids": "00"}, {"ids": [0]}):
        with pytest.raises(ParamError):
            await trash.handlers()["message.delete"](shape)
    assert (await trash.delete({"ids": ["00" * 16]}))["unknown"] == ["00" * 16]
    assert _shown(node) == ["one", "two", "three"]
    assert (await trash.list_trash({}))["trash"] == []
